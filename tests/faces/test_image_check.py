"""The image stage on every kind of input bytes the web and datasets hand us."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from facecorpus.demo import photo_paths
from facecorpus.image_check import (
    CheckImage,
    FinishImage,
    check_image,
    decode_image,
    hamming,
    perceptual_hash,
)
from facecorpus.image_config import ImageConfig
from facecorpus.jpeg_segments import strip_metadata
from facecorpus.records import SourceInfo
from facecorpus.rejection import Rejected
from facecorpus.stage import WorkItem

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
    for check in (decode_image, check_image):  # the stage's small (DCT-scaled) decode reads every coefficient too
        for cut in (len(data) // 2, len(data) - 2):
            with pytest.raises(Rejected) as e:
                check(data[:cut], CFG)
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


def _with_metadata(img: Image.Image, **kw) -> bytes:
    """A JPEG carrying what cameras and editors leave in one: EXIF with a GPS position, a comment, an ICC profile."""
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    for k, v in kw.pop("exif_tags", {}).items():
        exif[k] = v
    return _save(img, "JPEG", exif=exif.tobytes(), comment=b"taken at home", icc_profile=b"\0" * 128, **kw)


def _stage(stage, item: WorkItem) -> WorkItem:
    (out,) = list(stage.run(item))
    return out


def test_an_rgb_jpeg_is_stored_as_it_came_without_its_metadata(astronaut):
    data = _with_metadata(astronaut, quality=85)
    item = _stage(CheckImage(ImageConfig()), WorkItem(key="k", source=SourceInfo(dataset="d", id="a.jpg"), data=data))
    assert item.pixels is None and item.data is None  # nothing decoded in full yet, nothing re-encoded
    stored = item.jpeg
    assert stored is not None and len(stored) < len(data)
    assert b"CameraMaker" not in stored and b"taken at home" not in stored and b"ICC_PROFILE" not in stored
    assert b"CameraMaker" in data and b"ICC_PROFILE" in data
    kept = Image.open(io.BytesIO(stored))
    assert not kept.getexif() and "icc_profile" not in kept.info
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(kept.convert("RGB")), original)  # the very same pixels
    assert item.image.sha256 == hashlib.sha256(data).hexdigest() and item.image.bytes == len(data)
    done = _stage(FinishImage(ImageConfig(), pixels=True), item)
    assert done.jpeg == stored and np.array_equal(done.pixels, original)  # decoded once, for the face stage


@pytest.mark.parametrize("case", ["exif_turned", "cmyk", "gray", "too_big"])
def test_a_jpeg_that_must_change_is_reencoded_after_dedup(astronaut, case):
    cfg = ImageConfig(max_side=256)
    small = astronaut.resize((200, 120))
    data = {
        "exif_turned": _with_metadata(small, exif_tags={0x0112: 6}),
        "cmyk": _save(small.convert("CMYK"), "JPEG"),
        "gray": _save(small.convert("L"), "JPEG"),
        "too_big": _with_metadata(astronaut),
    }[case]
    item = _stage(CheckImage(cfg), WorkItem(key="k", source=SourceInfo(dataset="d", id="a.jpg"), data=data))
    assert item.jpeg is None and item.data == data and item.pixels is None
    done = _stage(FinishImage(cfg, pixels=False), item)
    assert done.data is None and done.pixels is None
    stored = Image.open(io.BytesIO(done.jpeg))
    expected = decode_image(data, cfg).rgb
    assert stored.mode == "RGB" and stored.size == expected.size == (done.image.width, done.image.height)
    assert b"CameraMaker" not in done.jpeg
    if case == "exif_turned":
        assert stored.size == (120, 200) and done.image.exif_transposed
    if case == "too_big":
        assert stored.size == (256, 256)
    assert done.image.phash == decode_image(data, cfg).info.phash == check_image(data, cfg).info.phash


def test_strip_metadata_refuses_what_it_cannot_parse(astronaut):
    data = _with_metadata(astronaut.resize((64, 64)))
    assert strip_metadata(data[:2] + b"\x00" + data[3:]) is None  # garbage where a marker should be
    assert strip_metadata(b"\xff\xd8\xff\xd9") is None  # no scan
    assert strip_metadata(b"not a jpeg") is None
    assert strip_metadata(data[:40]) is None  # cut inside the header
    adobe = _save(astronaut.resize((64, 64)).convert("CMYK"), "JPEG")
    assert b"Adobe" in strip_metadata(adobe)  # the colour-transform marker decoders need stays


def test_phash_version_2_is_cheap_and_stable_across_formats(astronaut):
    png = _save(astronaut, "PNG")
    jpeg = _save(astronaut, "JPEG", quality=90)
    # the JPEG's hash comes from its 1/4-scale decode, the PNG's from box-averaged pixels: the same picture
    assert hamming(check_image(png, CFG).info.phash, check_image(jpeg, CFG).info.phash) <= 2
    assert check_image(jpeg, CFG).info.phash == decode_image(jpeg, CFG).info.phash  # one definition, both paths
