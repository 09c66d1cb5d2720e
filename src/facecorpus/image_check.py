"""Decode and check the input image: the first stage every input passes.

Turns raw bytes into an RGB image (EXIF orientation applied; CMYK, grayscale, palette, 16-bit and
alpha converted), refuses what cannot or should not be decoded (empty, truncated, corrupt, not an
image, decompression bombs, too small), and computes the facts the record keeps: sha256 of the
input bytes and a 64-bit DCT perceptual hash.

Each input's pixels are decoded in full at most once, and its JPEG re-encoded only when its bytes
must change:

- `CheckImage` (stage 'image', before dedup) reads a JPEG's header and decodes it at 1/2–1/8 scale
  (the decoder's DCT scaling: every coefficient is still read, so truncated or corrupt data is still
  refused) for the pHash. An RGB JPEG that needs no turn and no shrink is stored as it came, its
  metadata segments dropped (jpeg_segments.py); other JPEGs keep their bytes for later. Other formats
  are decoded in full here (they have no cheap small decode) and re-encoded at once.
- `FinishImage` (after dedup, so duplicates are never decoded) re-encodes the JPEGs that must change
  (decoded in full, turned, shrunk to `max_side`) and, when the face stage runs, gives each item its
  pixels, decoding the stored JPEG unless the pixels are there already.
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
from .jpeg_segments import strip_metadata
from .records import PHASH_VERSION, ImageInfo
from .rejection import Rejected
from .stage import Progress, Stage, WorkItem

__all__ = ["PHASH_VERSION", "CheckImage", "FinishImage", "check_image", "decode_image", "hamming", "perceptual_hash"]

# We bound pixel counts ourselves (cfg.max_pixels) and want truncated files to fail, not half-load.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False


# leading bytes of the formats we accept: JPEG, PNG, GIF, BMP, TIFF (both byte orders), WebP's RIFF container
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")

#: the small image a pHash reads has its shorter side between HASH_SIDE and 2 × HASH_SIDE px (or the
#: image's own, when smaller)
HASH_SIDE = 64


@dataclass
class DecodedImage:
    rgb: Image.Image
    info: ImageInfo


def perceptual_hash(img: Image.Image) -> str:
    """64-bit pHash (version 2): the image reduced by box averaging to a shorter side of HASH_SIDE to
    2 × HASH_SIDE px, gray, 32×32 LANCZOS, DCT; the 8×8 lowest frequencies against their median.

    The reduction is what makes it cheap (version 1 filtered the whole image down to 32×32: more work
    than decoding it); the 32×32 LANCZOS step still low-passes what the box average leaves. A JPEG
    input comes here already reduced by its decoder (`_small_jpeg`)."""
    factor = min(img.size) // HASH_SIDE
    small = img.reduce(factor) if factor >= 2 else img
    gray = np.asarray(small.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
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


def _open(data: bytes | None, cfg: ImageConfig) -> Image.Image:
    """The image's header, opened and checked (size limits); its pixels are not decoded yet."""
    if not data:
        raise Rejected("empty_file", "the input has no bytes")
    if len(data) > cfg.max_input_bytes:
        raise Rejected("too_large", f"the input has {len(data)} bytes, over the limit of {cfg.max_input_bytes}")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if data.startswith(_IMAGE_MAGIC):
            raise Rejected("corrupt_image", "the bytes start like an image but the header is broken") from None
        raise Rejected("not_image", "the bytes are not an image format the decoder knows") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure on open means a broken file
        raise Rejected("corrupt_image", f"the image header cannot be read ({type(e).__name__}: {e})") from None
    w0, h0 = img.size
    if w0 * h0 > cfg.max_pixels:
        raise Rejected("too_many_pixels", f"{w0}x{h0} pixels exceeds the limit of {cfg.max_pixels} (decompression bomb guard)")
    if min(w0, h0) < cfg.min_side:  # a turn by EXIF swaps the sides, never the shorter one's length
        raise Rejected("too_small", f"{w0}x{h0} is below the minimum side of {cfg.min_side} px")
    return img


def _load(img: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Exception as e:  # noqa: BLE001 - truncated or corrupt pixel data
        raise Rejected("corrupt_image", f"the pixel data cannot be decoded ({type(e).__name__}: {e})") from None


def _small_jpeg(img: Image.Image) -> Image.Image:
    """A JPEG decoded by DCT scaling (1/2, 1/4 or 1/8) toward HASH_SIDE px, turned upright; its luma
    when the file is YCbCr or gray. Reads every coefficient: truncated data is refused here."""
    w, h = img.size
    factor = min(w, h) // HASH_SIDE
    if factor >= 2:
        img.draft("L" if img.mode in ("RGB", "L") else None, (-(-w // factor), -(-h // factor)))
    _load(img)
    return ImageOps.exif_transpose(img) if _has_orientation(img) else img


def jpeg_hash(data: bytes) -> str:
    """The pHash of a JPEG's bytes, as the image stage computes it (from its small decode)."""
    return perceptual_hash(_to_rgb_or_gray(_small_jpeg(Image.open(io.BytesIO(data)))))


def _to_rgb_or_gray(img: Image.Image) -> Image.Image:
    return img if img.mode in ("L", "RGB") else _to_rgb(img)


def _info(img: Image.Image, data: bytes, size: tuple[int, int], phash: str, transposed: bool) -> ImageInfo:
    return ImageInfo(
        width=size[0],
        height=size[1],
        original_format=img.format,
        original_mode=img.mode,
        original_width=img.size[0],
        original_height=img.size[1],
        exif_transposed=transposed,
        sha256=hashlib.sha256(data).hexdigest(),
        phash=phash,
        bytes=len(data),
    )


def decode_image(data: bytes | None, cfg: ImageConfig) -> DecodedImage:
    """Decode and normalise input bytes in full; raises Rejected with the reason when the input is
    unusable. The pHash is the image stage's (a JPEG's from its small decode)."""
    img = _open(data, cfg)
    assert data is not None
    header = _info(img, data, img.size, "0" * 16, False)  # the input's format, mode and size, read before decoding
    _load(img)
    was_transposed = _has_orientation(img)
    rgb = _to_rgb(ImageOps.exif_transpose(img) if was_transposed else img)
    phash = jpeg_hash(data) if header.original_format == "JPEG" else perceptual_hash(rgb)
    if cfg.max_side and max(rgb.size) > cfg.max_side:
        rgb = rgb.copy()
        rgb.thumbnail((cfg.max_side, cfg.max_side), Image.Resampling.LANCZOS)
    info = header.model_copy(update={"width": rgb.width, "height": rgb.height, "phash": phash,
                                     "exif_transposed": bool(was_transposed)})
    return DecodedImage(rgb=rgb, info=info)


@dataclass
class CheckedImage:
    """What the image stage learns before dedup: the facts, and the bytes to store when they can stay
    as they came (`keep`), or the decoded image when this format had to be decoded in full (`rgb`)."""

    info: ImageInfo
    keep: bytes | None = None
    rgb: Image.Image | None = None


def check_image(data: bytes | None, cfg: ImageConfig) -> CheckedImage:
    """The image stage's check (see the module docstring). A JPEG comes back with `keep` (stored as it
    came, metadata stripped) or neither field (it must be decoded and re-encoded later); other formats
    with `rgb`. Raises Rejected as `decode_image` does."""
    img = _open(data, cfg)
    assert data is not None
    if img.format != "JPEG":
        decoded = decode_image(data, cfg)
        return CheckedImage(info=decoded.info, rgb=decoded.rgb)
    header = _info(img, data, img.size, "0" * 16, False)
    small = _small_jpeg(img)
    transposed = _has_orientation(img)
    phash = perceptual_hash(_to_rgb_or_gray(small))
    w0, h0 = header.original_width or 0, header.original_height or 0
    # the stored size until FinishImage decodes it (a turn by EXIF may swap the sides; a shrink comes there)
    turned = (h0, w0) if _orientation(img) in (5, 6, 7, 8) else (w0, h0)
    fits = not cfg.max_side or max(w0, h0) <= cfg.max_side
    keep = strip_metadata(data) if header.original_mode == "RGB" and not transposed and fits else None
    info = header.model_copy(update={"phash": phash, "exif_transposed": transposed, "width": turned[0], "height": turned[1]})
    return CheckedImage(info=info, keep=keep)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1: upright; 5–8 turn by a quarter), 1 when absent or unreadable."""
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF means no orientation to apply
        return 1


def _has_orientation(img: Image.Image) -> bool:
    return _orientation(img) != 1


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


class CheckImage(Stage):
    """Stage 'image': bytes → ImageInfo (sha256, pHash, sizes) and what to store (module docstring).

    Leaves `item.jpeg` set when the stored JPEG is known (kept as it came, or re-encoded from a format
    decoded in full, whose pixels stay on the item), else keeps `item.data` for `FinishImage`."""

    name = "image"

    def __init__(self, cfg: ImageConfig, keep_source_jpeg: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.keep_source_jpeg = keep_source_jpeg
        self._progress: Progress | None = None

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        if self._progress is None:
            self._progress = Progress("images checked")
        self._progress.tick()
        checked = check_image(item.data, self.cfg)
        item.image = checked.info
        if self.keep_source_jpeg and checked.info.original_format == "JPEG":
            item.source_jpeg = item.data  # generation sends these bytes as they are (image.reencode: false)
        if checked.rgb is not None:
            item.jpeg = encode_jpeg(checked.rgb, self.cfg.jpeg_quality)
            item.pixels = np.asarray(checked.rgb)
        elif checked.keep is not None:
            item.jpeg = checked.keep
        if item.jpeg is not None:
            item.data = None  # the raw bytes are not needed past this point
        yield item


class FinishImage(Stage):
    """Stage 'finish_image', the image check's second half (after dedup): the stored JPEG of every item,
    and its pixels when the face stage will read them (`pixels`). A JPEG that must change is decoded
    here, in full, once; its rejects and counters carry `finish_image`, its Beam label."""

    name = "finish_image"

    def __init__(self, cfg: ImageConfig, pixels: bool) -> None:
        super().__init__()
        self.cfg = cfg
        self.pixels = pixels

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        if item.jpeg is None:
            decoded = decode_image(item.data, self.cfg)
            item.jpeg = encode_jpeg(decoded.rgb, self.cfg.jpeg_quality)
            assert item.image is not None
            item.image = item.image.model_copy(update={"width": decoded.rgb.width, "height": decoded.rgb.height})
            item.pixels = np.asarray(decoded.rgb) if self.pixels else None
        elif self.pixels and item.pixels is None:
            item.pixels = decode_stored(item.jpeg)
        item.data = None
        yield item


def decode_stored(jpeg: bytes) -> np.ndarray:
    """The pixels of a stored JPEG (RGB uint8)."""
    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("RGB"))
