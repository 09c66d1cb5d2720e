"""Our download resizer against img2dataset's own Resizer (installed for the tests only): the same bytes
for every resize mode, size and photo kind, and the three documented differences."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facecorpus.demo import photo_paths
from facecorpus.download.images import NotAnImage, ResizeSettings, check_image, is_jpeg

MODES = ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border")


@pytest.fixture(scope="module")
def img2dataset_resizer():
    """img2dataset's Resizer class; OpenCV's thread count, which it sets to 1, is restored afterwards."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from img2dataset.resizer import Resizer

    threads = cv2.getNumThreads()
    yield Resizer
    cv2.setNumThreads(threads)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)  # PIL writes a JFIF segment first
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    p = photo_paths()
    astronaut = Image.open(p["astronaut"]).convert("RGB")
    alpha = astronaut.copy()
    alpha.putalpha(Image.linear_gradient("L").resize(astronaut.size))
    odd = astronaut.resize((333, 517))  # odd sides: rounding and centring of crops and borders
    return {
        "group_jpeg": Path(p["group6"]).read_bytes(),
        "hanks_png": Path(p["hanks"]).read_bytes(),
        "astronaut_png": _png(astronaut),
        "grey_png": Path(p["cameraman"]).read_bytes(),
        "alpha_png": _png(alpha),
        "palette_png": _png(astronaut.quantize(64)),
        "odd_jpeg": _jpeg(odd),
        "small_jpeg": _jpeg(astronaut.resize((48, 40))),
    }


@pytest.mark.parametrize("mode", MODES)
def test_same_bytes_as_img2dataset(photos, img2dataset_resizer, mode: str) -> None:
    compared = 0
    for name, data in photos.items():
        for size in (64, 256, 2000):
            for only_if_bigger in (True, False):
                theirs = img2dataset_resizer(image_size=size, resize_mode=mode, resize_only_if_bigger=only_if_bigger,
                                             encode_quality=95, encode_format="jpg", skip_reencode=True)
                img, width, height, ow, oh, err = theirs(io.BytesIO(data))
                assert err is None, (name, err)
                ours = check_image(data, ResizeSettings(mode=mode, size=size, only_if_bigger=only_if_bigger))
                where = (name, size, only_if_bigger)
                assert (ours.width, ours.height, ours.original_width, ours.original_height) == (width, height, ow, oh), where
                assert ours.data == img, where
                compared += 1
    assert compared == len(photos) * 6


def test_a_jpeg_without_jfif_passes_through_unchanged(photos, img2dataset_resizer) -> None:
    data = photos["odd_jpeg"]
    assert data[2:4] == b"\xff\xe0"  # APP0 (JFIF) first; put a comment segment first instead: still a valid JPEG
    after_app0 = data[4 + int.from_bytes(data[4:6], "big"):]
    note = b"made by a camera"
    bare = data[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + after_app0
    assert is_jpeg(bare) and Image.open(io.BytesIO(bare)).size == (333, 517)
    ours = check_image(bare, ResizeSettings(mode="no"))
    assert ours.data == bare  # byte for byte
    theirs, *_ = img2dataset_resizer(image_size=256, resize_mode="no", resize_only_if_bigger=True,
                                     skip_reencode=True)(io.BytesIO(bare))
    assert theirs != bare  # img2dataset re-encodes it (its JPEG sniffing wants JFIF or Exif)


def test_16_bit_images_are_scaled_not_saturated() -> None:
    ramp = (np.arange(256, dtype=np.uint16)[None, :].repeat(32, 0) * 257)  # 0..65535
    ok, png = cv2.imencode(".png", ramp)
    assert ok
    out = check_image(png.tobytes(), ResizeSettings(mode="no"))
    grey = np.asarray(Image.open(io.BytesIO(out.data)).convert("L"), dtype=np.int16)
    assert abs(int(grey[:, 128].mean()) - 128) <= 3 and grey[:, 0].mean() < 5 and grey[:, 255].mean() > 250


@pytest.mark.parametrize("data", [b"<html>not found</html>", b"\xff\xd8\xff\xe0 truncated"])
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(NotAnImage, match="does not decode"):
        check_image(data, ResizeSettings())


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown resize mode"):
        check_image(b"x", ResizeSettings(mode="stretch"))


def test_a_kept_jpeg_is_not_decoded_at_download_and_its_corruption_is_refused_by_the_image_stage(photos) -> None:
    """A JPEG that needs no resize passes through undecoded (its header gives the size); pixel data
    that does not decode is refused by the image stage, which every input passes next, with its reason."""
    from facecorpus.image_check import check_image as image_stage_check
    from facecorpus.image_config import ImageConfig
    from facecorpus.rejection import Rejected

    data = photos["odd_jpeg"]
    broken = data[: len(data) // 2]  # the header intact, half the entropy-coded data gone
    kept = check_image(broken, ResizeSettings(mode="no"))
    assert kept.data == broken and (kept.width, kept.height) == (333, 517)
    with pytest.raises(Rejected) as refused:
        image_stage_check(broken, ImageConfig())
    assert refused.value.rejection.reason == "corrupt_image"
    shrunk = check_image(data, ResizeSettings(mode="keep_ratio_largest", size=256))  # a resize still decodes
    assert max(shrunk.width, shrunk.height) == 256 and shrunk.data != data
