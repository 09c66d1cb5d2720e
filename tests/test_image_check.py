"""The image stage on every kind of input bytes the web and datasets hand us."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facecorpus.demo import photo_paths
from facecorpus.image_check import decode_image, hamming, perceptual_hash
from facecorpus.image_config import ImageConfig
from facecorpus.rejection import Rejected

CFG = ImageConfig(max_side=None)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.open(photo_paths()["astronaut"]).convert("RGB")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgb_jpeg_facts(astronaut):
    data = _save(astronaut, "JPEG")
    d = decode_image(data, CFG)
    assert d.rgb.mode == "RGB" and d.rgb.size == (512, 512)
    assert d.info.original_format == "JPEG" and d.info.bytes == len(data)
    assert len(d.info.sha256) == 64 and len(d.info.phash) == 16


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "RGBA", "LA", "1"])
def test_modes_become_rgb(astronaut, mode):
    img = astronaut.convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    d = decode_image(_save(img, fmt), CFG)
    assert d.rgb.mode == "RGB"
    assert d.info.original_mode == mode


def test_16bit_is_scaled_not_clipped(astronaut):
    arr = (np.asarray(astronaut.convert("L"), dtype=np.uint16) * 257)
    d = decode_image(_save(Image.fromarray(arr), "PNG"), CFG)
    px = np.asarray(d.rgb)
    assert px.max() > 200 and px.min() < 60  # full range survived


def test_alpha_composites_on_white():
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = decode_image(_save(img, "PNG"), CFG)
    assert np.asarray(d.rgb).min() == 255


def test_exif_orientation_is_applied(astronaut):
    wide = astronaut.resize((400, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    d = decode_image(_save(wide, "JPEG", exif=exif.tobytes()), CFG)
    assert d.rgb.size == (200, 400)
    assert d.info.exif_transposed is True


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty_file"),
        (b"hello, I am text", "not_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt_image"),
    ],
)
def test_bad_bytes_are_rejected_with_reason(data, reason):
    with pytest.raises(Rejected) as e:
        decode_image(data, CFG)
    assert e.value.reason == reason


def test_truncated_jpeg_is_rejected(astronaut):
    data = _save(astronaut, "JPEG")
    with pytest.raises(Rejected) as e:
        decode_image(data[: len(data) // 2], CFG)
    assert e.value.reason == "corrupt_image"


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _save(Image.new("L", (9000, 9000)), "PNG")  # tiny file, 81 Mpx
    assert len(bomb) < 200_000
    with pytest.raises(Rejected) as e:
        decode_image(bomb, ImageConfig(max_pixels=50_000_000))
    assert e.value.reason == "too_many_pixels"


def test_too_small_and_too_large():
    with pytest.raises(Rejected) as e:
        decode_image(_save(Image.new("RGB", (20, 100)), "PNG"), CFG)
    assert e.value.reason == "too_small"
    with pytest.raises(Rejected) as e:
        decode_image(b"x" * 2000, ImageConfig(max_input_bytes=1000))
    assert e.value.reason == "too_large"


def test_max_side_downscales(astronaut):
    d = decode_image(_save(astronaut, "PNG"), ImageConfig(max_side=256))
    assert d.rgb.size == (256, 256) and d.info.original_width == 512


def test_phash_survives_reencoding_and_separates_images(astronaut):
    cat = Image.open(photo_paths()["cat"]).convert("RGB")
    a = perceptual_hash(astronaut)
    a2 = perceptual_hash(Image.open(io.BytesIO(_save(astronaut.resize((300, 300)), "JPEG", quality=60))))
    c = perceptual_hash(cat)
    assert hamming(a, a2) <= 6
    assert hamming(a, c) >= 16
