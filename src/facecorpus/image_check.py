"""Decode and check the input image: the first stage every input passes.

Turns raw bytes into an RGB image (EXIF orientation applied; CMYK, grayscale, palette, 16-bit and
alpha converted), refuses what cannot or should not be decoded (empty, truncated, corrupt, not an
image, decompression bombs, too small), and computes the facts the record keeps: sha256 of the
input bytes and a 64-bit DCT perceptual hash.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from scipy.fft import dctn

from .image_config import ImageConfig
from .records import ImageInfo
from .rejection import Rejected
from .stage import Progress, Stage, WorkItem

# We bound pixel counts ourselves (cfg.max_pixels) and want truncated files to fail, not half-load.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False


# leading bytes of the formats we accept: JPEG, PNG, GIF, BMP, TIFF (both byte orders), WebP's RIFF container
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


@dataclass
class DecodedImage:
    rgb: Image.Image
    info: ImageInfo


def perceptual_hash(img: Image.Image) -> str:
    """64-bit pHash: DCT of the 32×32 grayscale image, the 8×8 lowest frequencies against their median."""
    gray = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(gray, norm="ortho")[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """Hamming distance between two hex perceptual hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def decode_image(data: bytes | None, cfg: ImageConfig) -> DecodedImage:
    """Decode and normalise input bytes; raises Rejected with the reason when the input is unusable."""
    if not data:
        raise Rejected("empty_file", "the input has no bytes")
    if len(data) > cfg.max_input_bytes:
        raise Rejected("too_large", f"the input has {len(data)} bytes, over the limit of {cfg.max_input_bytes}")
    sha = hashlib.sha256(data).hexdigest()
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if data.startswith(_IMAGE_MAGIC):
            raise Rejected("corrupt_image", "the bytes start like an image but the header is broken") from None
        raise Rejected("not_image", "the bytes are not an image format the decoder knows") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure on open means a broken file
        raise Rejected("corrupt_image", f"the image header cannot be read ({type(e).__name__}: {e})") from None
    fmt, mode_in = img.format, img.mode
    w0, h0 = img.size
    if w0 * h0 > cfg.max_pixels:
        raise Rejected("too_many_pixels", f"{w0}x{h0} pixels exceeds the limit of {cfg.max_pixels} (decompression bomb guard)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Exception as e:  # noqa: BLE001 - truncated or corrupt pixel data
        raise Rejected("corrupt_image", f"the pixel data cannot be decoded ({type(e).__name__}: {e})") from None
    was_transposed = _has_orientation(img)
    img = _to_rgb(ImageOps.exif_transpose(img) if was_transposed else img)
    w, h = img.size
    if min(w, h) < cfg.min_side:
        raise Rejected("too_small", f"{w}x{h} is below the minimum side of {cfg.min_side} px")
    if cfg.max_side and max(w, h) > cfg.max_side:
        img = img.copy()
        img.thumbnail((cfg.max_side, cfg.max_side), Image.Resampling.LANCZOS)
    info = ImageInfo(
        width=img.width,
        height=img.height,
        original_format=fmt,
        original_mode=mode_in,
        original_width=w0,
        original_height=h0,
        exif_transposed=bool(was_transposed),
        sha256=sha,
        phash=perceptual_hash(img),
        bytes=len(data),
    )
    return DecodedImage(rgb=img, info=info)


def _has_orientation(img: Image.Image) -> bool:
    try:
        return img.getexif().get(0x0112, 1) not in (1, None)
    except Exception:  # noqa: BLE001 - unreadable EXIF means no orientation to apply
        return False


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


class CheckImage(Stage):
    """Stage 'image': bytes → RGB image, ImageInfo, stored JPEG, pixels for the face stage."""

    name = "image"

    def __init__(self, cfg: ImageConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._progress: Progress | None = None

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        if self._progress is None:
            self._progress = Progress("images checked")
        self._progress.tick()
        decoded = decode_image(item.data, self.cfg)
        item.image = decoded.info
        item.jpeg = encode_jpeg(decoded.rgb, self.cfg.jpeg_quality)
        item.pixels = np.asarray(decoded.rgb)
        item.data = None  # the raw bytes are not needed past this point
        yield item
