"""Downloaded bytes → an image we keep, through img2dataset's own Resizer.

The Resizer decodes with OpenCV (so `not_image` means the same thing as in img2dataset), optionally
downscales (`keep_ratio_largest` to the recipe's size by default, only when bigger) and re-encodes
only when it changed the pixels (`skip_reencode`), so a small JPEG passes through byte for byte.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_resizers: dict[tuple, Any] = {}


@dataclass(frozen=True)
class ResizeSettings:
    mode: str = "keep_ratio_largest"  # img2dataset ResizeMode: no, keep_ratio, keep_ratio_largest, center_crop, border
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


def _resizer(settings: ResizeSettings) -> Any:
    key = (settings.mode, settings.size, settings.only_if_bigger, settings.encode_quality)
    with _lock:
        r = _resizers.get(key)
        if r is None:
            # albumentations (imported by img2dataset) otherwise asks PyPI for a newer version on import
            os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
            import img2dataset.resizer as resizer_module
            from img2dataset.resizer import Resizer

            # The Resizer silences libjpeg by dup2-ing the process's fds 1 and 2 to /dev/null and back.
            # img2dataset calls it from one thread; we call it from many, where interleaved save/restore
            # leaves stdout/stderr pointing at /dev/null for good (and closes fds other threads hold).
            # Decoding warnings are harmless to let through, so the fd juggling is switched off here.
            resizer_module.SuppressStdoutStderr = contextlib.nullcontext

            r = _resizers[key] = Resizer(
                image_size=settings.size,
                resize_mode=settings.mode,
                resize_only_if_bigger=settings.only_if_bigger,
                encode_quality=settings.encode_quality,
                encode_format="jpg",
                skip_reencode=True,
            )
        return r


def check_image(data: bytes, settings: ResizeSettings) -> CheckedImage:
    """Decode (and maybe downscale) `data`; raises NotAnImage with img2dataset's message when it is not one."""
    if not data:
        raise NotAnImage("the response body is empty")
    img, width, height, orig_w, orig_h, err = _resizer(settings)(io.BytesIO(data))
    if err is not None or img is None:
        raise NotAnImage(f"the body does not decode as an image ({err or 'no pixels'})")
    return CheckedImage(data=img, width=width, height=height, original_width=orig_w, original_height=orig_h)


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
