"""Downloaded bytes → an image we keep: decoded with OpenCV, optionally downscaled, re-encoded only when
the pixels changed.

The resize modes and their arithmetic are img2dataset's (`no`, `keep_ratio`, `keep_ratio_largest`,
`center_crop`, `border`; area filter to shrink, Lanczos to enlarge; transparency flattened on white), so a
recipe means what it means to img2dataset users, and tests/sources/test_download_resize.py compares the two
byte for byte. Three differences, on purpose: any JPEG that is not resized passes through byte for byte
(img2dataset re-encodes JPEGs whose first segment is not JFIF or Exif) and is not decoded here: its
header gives its size, and the image stage, which every input passes next, decodes it once and refuses
corrupt pixel data there (`corrupt_image`; img2dataset decodes every image in full). 16-bit images are scaled to
8 bits instead of saturated to white, and nothing touches the process's stdout/stderr file descriptors
or OpenCV's thread count (img2dataset's Resizer does both, which breaks under many threads).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

RESIZE_MODES = ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border")


@dataclass(frozen=True)
class ResizeSettings:
    mode: str = "keep_ratio_largest"  # one of RESIZE_MODES
    size: int = 1024
    only_if_bigger: bool = True
    encode_quality: int = 95


@dataclass
class CheckedImage:
    data: bytes
    width: int
    height: int
    original_width: int
    original_height: int

    @property
    def resized(self) -> bool:
        return (self.width, self.height) != (self.original_width, self.original_height)


class NotAnImage(Exception):
    """The bytes do not decode as an image (HTML error page, truncated file, …)."""


def is_jpeg(data: bytes) -> bool:
    """JPEG start-of-image marker followed by a segment marker."""
    return data[:3] == b"\xff\xd8\xff"


def _to_8bit_opaque(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """(BGR or grey uint8 pixels, whether they differ from the decoded ones)."""
    changed = False
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
        changed = True
    elif img.dtype != np.uint8:  # float TIFF/EXR: 0..1
        img = np.rint(np.clip(img.astype(np.float64) * 255.0, 0, 255)).astype(np.uint8)
        changed = True
    if img.ndim == 3 and img.shape[2] == 4:  # flatten on white: c*a + 255*(1-a), a in 0..1
        alpha = img[:, :, 3:4].astype(np.float64)
        flat = alpha / 255.0 * img[:, :, :3] + 255.0 - alpha
        img = np.rint(np.clip(flat, 0, 255)).astype(np.uint8)
        changed = True
    return img, changed


def _scaled_size(width: int, height: int, settings: ResizeSettings) -> tuple[int, int] | None:
    """The size to resize to, or None to keep the pixels as they are."""
    if settings.mode == "no":
        return None
    by_short_side = settings.mode in ("keep_ratio", "center_crop")
    side = min(width, height) if by_short_side else max(width, height)
    if settings.only_if_bigger and side <= settings.size:
        return None
    scale = settings.size / side
    return round(width * scale), round(height * scale)


def _resize(img: np.ndarray, settings: ResizeSettings) -> np.ndarray | None:
    import cv2

    height, width = img.shape[:2]
    target = _scaled_size(width, height, settings)
    if target is None:
        return None
    side = min(width, height) if settings.mode in ("keep_ratio", "center_crop") else max(width, height)
    shrink = side > settings.size
    img = cv2.resize(img, target, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)
    n = settings.size
    if settings.mode == "center_crop":
        h, w = img.shape[:2]
        top, left = (h - n) // 2, (w - n) // 2
        img = img[top:top + n, left:left + n]
    elif settings.mode == "border":
        h, w = img.shape[:2]
        top, left = max(0, (n - h) // 2), max(0, (n - w) // 2)
        white = 255 if img.ndim == 2 else (255, 255, 255)
        img = cv2.copyMakeBorder(img, top, max(0, n - h - top), left, max(0, n - w - left),
                                 cv2.BORDER_CONSTANT, value=white)
    return img


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's header (no pixels decoded); None when the header is unreadable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size if im.format == "JPEG" and min(im.size) > 0 else None
    except Exception:  # noqa: BLE001 - a broken header: the full decode below decides
        return None


def check_image(data: bytes, settings: ResizeSettings) -> CheckedImage:
    """Decode (and maybe downscale) `data`; raises NotAnImage when OpenCV cannot read it. A JPEG whose
    header is readable and whose size needs no resize comes back as it came, undecoded (module docstring)."""
    import cv2

    if settings.mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {settings.mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    if not data:
        raise NotAnImage("the response body is empty")
    if is_jpeg(data):
        size = _jpeg_size(data)
        if size is not None and _scaled_size(size[0], size[1], settings) is None:  # kept as it came: no decode here
            return CheckedImage(data=data, width=size[0], height=size[1], original_width=size[0], original_height=size[1])
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise NotAnImage("the body does not decode as an image (OpenCV cannot read it)")
    original_height, original_width = img.shape[:2]
    img, changed = _to_8bit_opaque(img)
    resized = _resize(img, settings)
    if resized is not None:
        img, changed = resized, True
    height, width = img.shape[:2]
    if changed or not is_jpeg(data):
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), settings.encode_quality])
        if not ok:
            raise NotAnImage("the image decodes but cannot be encoded as JPEG")
        data = buf.tobytes()
    return CheckedImage(data=data, width=width, height=height, original_width=original_width,
                        original_height=original_height)


# ------------------------------------------------------------------------------------ EXIF orientation
# OpenCV's IMREAD_UNCHANGED (what the Resizer uses) ignores EXIF orientation and a re-encode drops the
# tag, so a rotated phone photo would come out sideways. We turn such images upright first (only those
# that carry an orientation other than 1) and map given face boxes the same way.

_MIRRORED = {2, 4, 5, 7}


def exif_orientation(data: bytes) -> tuple[int, tuple[int, int] | None]:
    """(EXIF orientation 1-8, stored (width, height)) of an image; (1, None) when unreadable. Header only."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            value, size = im.getexif().get(0x0112, 1), im.size
    except Exception:  # noqa: BLE001 - not an image or broken EXIF: nothing to turn
        return 1, None
    return (value if isinstance(value, int) and 1 <= value <= 8 else 1), size


def make_upright(data: bytes, quality: int = 95) -> bytes:
    """Apply the EXIF orientation to the pixels and re-encode (JPEG, or PNG when there is alpha)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        turned = ImageOps.exif_transpose(im)
        buf = io.BytesIO()
        if turned.mode in ("RGBA", "LA", "P"):
            turned.save(buf, format="PNG")
        else:
            turned.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def orient_point(x: float, y: float, orientation: int, width: int, height: int) -> tuple[float, float]:
    """Where pixel coordinate (x, y) of the stored (raw) frame `width`×`height` lands once the EXIF
    orientation is applied (the transforms PIL's `exif_transpose` performs)."""
    if orientation == 2:
        return width - x, y
    if orientation == 3:
        return width - x, height - y
    if orientation == 4:
        return x, height - y
    if orientation == 5:
        return y, x
    if orientation == 6:
        return height - y, x
    if orientation == 7:
        return height - y, width - x
    if orientation == 8:
        return y, width - x
    return x, y


def map_faces(faces: list[dict], orientation: int, raw_size: tuple[int, int], final_size: tuple[int, int]) -> list[dict]:
    """Move given face boxes/landmarks from the raw stored frame to the frame of the kept image.

    `raw_size` is the (width, height) the boxes refer to; orientation is applied first, then the
    scale to `final_size`. Mirroring orientations swap the left/right landmark pairs so that the
    first eye stays the one on the image's left.
    """
    w0, h0 = raw_size
    upright = (h0, w0) if orientation in (5, 6, 7, 8) else (w0, h0)
    sx, sy = final_size[0] / upright[0], final_size[1] / upright[1]
    out = []
    for face in faces:
        x1, y1, x2, y2 = face["box"]
        (ax, ay), (bx, by) = (orient_point(x1, y1, orientation, w0, h0), orient_point(x2, y2, orientation, w0, h0))
        box = [min(ax, bx) * sx, min(ay, by) * sy, max(ax, bx) * sx, max(ay, by) * sy]
        marks = face.get("landmarks5")
        if marks is not None:
            marks = [list(orient_point(px, py, orientation, w0, h0)) for px, py in marks]
            marks = [[px * sx, py * sy] for px, py in marks]
            if orientation in _MIRRORED:
                marks = [marks[1], marks[0], marks[2], marks[4], marks[3]]
        out.append({**face, "box": box, "landmarks5": marks})
    return out
