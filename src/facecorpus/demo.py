"""Builds the demo's inputs from real face photos that ship inside installed packages.

- a FairFace-layout zip (`train/`, `val/`) + `fairface_label_{train,val}.csv` with the photos that show
  one face, augmented copies, non-face negatives, and broken inputs (truncated, empty, not an image,
  too small), plus label rows that must be rejected (missing file, duplicate, unknown label, unsafe
  path, malformed);
- a folder of photos in the formats web images come in: the 6-face group photo, grayscale, 16-bit,
  CMYK, palette, alpha, EXIF-rotated;
- CelebA, RAF-DB basic, UTKFace and an AffectNet-style table in their distribution layouts, from the
  same real faces (`demo_labelled.py`), for the recipes pipelines/{celeba,rafdb,utkface,affectnet}_qa.yaml.

Labels of the demo photos are illustrative (assigned here by hand), not ground truth.
"""

from __future__ import annotations

import csv
import io
import zipfile
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import UserError


def _package_dir(name: str) -> Path:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        from .extras import missing_extra

        if name == "insightface":
            raise missing_extra("insightface", "the demo")
        raise UserError(f"the demo needs the installed package '{name}' (pip install {name})")
    return Path(next(iter(spec.submodule_search_locations)))


def photo_paths() -> dict[str, Path]:
    """The real photos the demo and the tests use, by short name."""
    ins = _package_dir("insightface") / "data" / "images"
    ski = _package_dir("skimage") / "data"
    paths = {
        "group6": ins / "t1.jpg",
        "hanks": ins / "Tom_Hanks_54745.png",
        "astronaut": ski / "astronaut.png",
        "cameraman": ski / "camera.png",
        "mask_blue": ins / "mask_blue.jpg",
        "mask_white": ins / "mask_white.jpg",
        "cat": ski / "chelsea.png",
        "coffee": ski / "coffee.png",
        "rocket": ski / "rocket.jpg",
    }
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise UserError(f"demo photos missing from the installation: {missing}")
    return paths


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


# (zip member, labels row or None, image bytes factory name)
_LABELLED = [
    ("val/1.jpg", ("50-59", "Male", "White"), "hanks"),
    ("val/2.jpg", ("40-49", "Female", "White"), "astronaut"),
    ("val/3.jpg", ("50-59", "Male", "White"), "hanks_mirror"),
    ("val/4.jpg", ("40-49", "Female", "White"), "astronaut_dark"),
    ("val/5.jpg", ("20-29", "Female", "East Asian"), "cat"),
    ("val/6.jpg", ("30-39", "Male", "Black"), "coffee"),
    ("val/7.jpg", ("more than 70", "Male", "Latino_Hispanic"), "mask_blue"),
    ("val/8.jpg", ("10-19", "Female", "Indian"), "truncated"),
    ("val/9.jpg", ("3-9", "Male", "Middle Eastern"), "empty"),
    ("val/10.jpg", ("0-2", "Female", "Southeast Asian"), "text"),
    ("val/11.jpg", ("60-69", "Male", "White"), "tiny"),
    # the six people of the group photo as FairFace-style face crops (ages illustrative)
    ("val/20.jpg", ("30-39", "Male", "White"), "group_0"),
    ("val/21.jpg", ("30-39", "Male", "White"), "group_1"),
    ("val/22.jpg", ("30-39", "Female", "White"), "group_2"),
    ("val/23.jpg", ("20-29", "Female", "White"), "group_3"),
    ("val/24.jpg", ("20-29", "Male", "White"), "group_4"),
    ("val/25.jpg", ("30-39", "Female", "White"), "group_5"),
    ("train/1.jpg", ("50-59", "Male", "White"), "hanks"),
    ("train/2.jpg", ("40-49", "Female", "White"), "astronaut"),
]


#: face boxes (x1, y1, x2, y2) of the six people in the group photo t1.jpg (1280x886), found once with the
#: portable pack; the demo cuts FairFace-style crops around them (box side x 1.5, 224x224)
GROUP_FACES = [(909, 61, 1010, 198), (459, 261, 570, 405), (269, 152, 362, 264),
               (49, 258, 166, 394), (741, 342, 840, 472), (1132, 274, 1225, 392)]


def _fairface_crop(photo: Path, box: tuple[int, int, int, int], margin: float = 0.25) -> Image.Image:
    """A square crop around a face box, `margin` of its side added on every side, resized to 224x224."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    img = Image.open(photo).convert("RGB")
    region = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    return img.crop(region).resize((224, 224), Image.Resampling.LANCZOS)


def _fairface_member(kind: str, photos: dict[str, Path]) -> bytes:
    if kind.startswith("group_"):
        return _jpeg(_fairface_crop(photos["group6"], GROUP_FACES[int(kind.removeprefix("group_"))]))
    hanks = Image.open(photos["hanks"]).convert("RGB").resize((224, 224), Image.Resampling.LANCZOS)
    astro = Image.open(photos["astronaut"]).convert("RGB")
    if kind == "hanks":
        return _jpeg(hanks)
    if kind == "hanks_mirror":
        return _jpeg(ImageOps.mirror(hanks))
    if kind == "astronaut":
        return _jpeg(astro)
    if kind == "astronaut_dark":
        return _jpeg(Image.eval(astro, lambda v: int(v * 0.35)))
    if kind in ("cat", "coffee", "mask_blue"):
        return _jpeg(Image.open(photos[kind]))
    if kind == "truncated":
        data = _jpeg(astro)
        return data[: len(data) // 3]
    if kind == "empty":
        return b""
    if kind == "text":
        return b"this is not an image, whatever its name says\n"
    if kind == "tiny":
        return _jpeg(hanks.resize((16, 16)))
    raise ValueError(kind)


def build_fairface(dest: Path, photos: dict[str, Path]) -> tuple[Path, list[Path]]:
    """FairFace-layout zip + label CSVs with every bad-input case the source must handle."""
    dest.mkdir(parents=True, exist_ok=True)
    zpath = dest / "fairface-img-margin025-trainval.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as zf:
        for member, _, kind in _LABELLED:
            zf.writestr(member, _fairface_member(kind, photos))
        zf.writestr("../escape.jpg", _fairface_member("hanks", photos))  # a hostile entry; never extracted
    header = ["file", "age", "gender", "race", "service_test"]
    val_rows = [[m, *lab, "True"] for m, lab, _ in _LABELLED if m.startswith("val/")]
    val_rows += [
        ["val/404.jpg", "20-29", "Male", "White", "False"],  # listed, not in the zip
        ["val/1.jpg", "50-59", "Male", "White", "True"],  # duplicate row
        ["val/12.jpg", "20-29", "Male", "Martian", "False"],  # unknown label value
        ["../escape.jpg", "20-29", "Male", "White", "False"],  # unsafe path
        ["val/13.jpg", "20-29"],  # malformed row
    ]
    train_rows = [[m, *lab, "False"] for m, lab, _ in _LABELLED if m.startswith("train/")]
    csvs = []
    for name, rows, bom in (("fairface_label_val.csv", val_rows, True), ("fairface_label_train.csv", train_rows, False)):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        path = dest / name
        path.write_text(("\ufeff" if bom else "") + buf.getvalue(), encoding="utf-8")
        csvs.append(path)
    return zpath, csvs


def build_photo_folder(dest: Path, photos: dict[str, Path]) -> Path:
    """Photos in the formats and quirks web images come in."""
    folder = dest / "photos"
    (folder / "group").mkdir(parents=True, exist_ok=True)
    group = Image.open(photos["group6"]).convert("RGB")
    (folder / "group" / "t1.jpg").write_bytes(photos["group6"].read_bytes())
    (folder / "group" / "t1_mirror.jpg").write_bytes(_jpeg(ImageOps.mirror(group)))
    camera = Image.open(photos["cameraman"])
    (folder / "cameraman_gray.png").write_bytes(_png(camera))
    arr16 = (np.asarray(camera, dtype=np.uint16) * 257).astype(np.uint16)
    (folder / "cameraman_16bit.png").write_bytes(_png(Image.fromarray(arr16)))
    astro = Image.open(photos["astronaut"]).convert("RGB")
    buf = io.BytesIO()
    astro.convert("CMYK").save(buf, "JPEG", quality=90)
    (folder / "astronaut_cmyk.jpg").write_bytes(buf.getvalue())
    (folder / "astronaut_palette.png").write_bytes(_png(astro.convert("P", palette=Image.Palette.ADAPTIVE)))
    rgba = astro.convert("RGBA")
    rgba.putalpha(Image.new("L", astro.size, 200))
    (folder / "astronaut_alpha.png").write_bytes(_png(rgba))
    rotated = astro.rotate(90, expand=True)  # stored turned counter-clockwise; EXIF 6 says turn it back clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    rotated.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    (folder / "astronaut_exif_rotated.jpg").write_bytes(buf.getvalue())
    (folder / "rocket.jpg").write_bytes(photos["rocket"].read_bytes())
    return folder


def build_demo_inputs(dest: Path) -> Path:
    """Write every demo input under `dest`; returns `dest`."""
    photos = photo_paths()
    build_fairface(dest / "fairface", photos)
    build_photo_folder(dest, photos)
    from .demo_labelled import build_labelled_inputs

    build_labelled_inputs(dest, photos)
    return dest
