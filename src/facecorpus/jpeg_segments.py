"""JPEG files without their metadata, byte for byte otherwise: the image stage stores a JPEG input as it
came when its pixels need no change, and this drops what it must not carry along.

A JPEG is a sequence of marker segments (0xFF, a marker byte, mostly a 2-byte length) up to the first
start-of-scan; the entropy-coded data follows. Kept: the tables and frame headers a decoder needs
(DQT, DHT, DAC, DRI, SOFn), the JFIF APP0 header, Adobe's APP14 (it tells decoders whether the
channels are YCbCr) and everything from the first SOS on, unchanged. Dropped: every other APPn (EXIF
with GPS position, camera serials and thumbnails, XMP, ICC profiles, maker notes) and comments. The
decoded pixels are the same (decoders ignore those segments; EXIF orientation is never relied on: an
input with a turned orientation is re-encoded upright instead). The image stage's re-encode drops the
same metadata, so both kinds of stored JPEG carry none.
"""

from __future__ import annotations

SOI, EOI, SOS, COM = 0xD8, 0xD9, 0xDA, 0xFE
APP0, APP14, APP15 = 0xE0, 0xEE, 0xEF
#: markers that stand alone (no length): TEM and the restart markers
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _keep(marker: int, body: bytes) -> bool:
    if marker == APP0:
        return body.startswith(b"JFIF\x00")
    if marker == APP14:
        return body.startswith(b"Adobe")
    return not (APP0 <= marker <= APP15 or marker == COM)


def strip_metadata(data: bytes) -> bytes | None:
    """`data` without metadata segments, or None when it is not a JPEG whose header parses cleanly
    (the caller then re-encodes from the decoded pixels instead)."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != SOI:
        return None
    out = [data[:2]]
    pos = 2
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            return None  # garbage between segments
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            return None
        marker = data[pos]
        start = pos - 1
        pos += 1
        if marker in _STANDALONE:
            out.append(data[start:pos])
            continue
        if marker == EOI:
            return None  # an image with no scan
        if pos + 2 > n:
            return None
        length = (data[pos] << 8) | data[pos + 1]
        end = pos + length
        if length < 2 or end > n:
            return None
        if marker == SOS:
            out.append(data[start:])  # the scans and everything after them, untouched
            return b"".join(out)
        if _keep(marker, data[pos + 2 : end]):
            out.append(data[start:end])
        pos = end
    return None
