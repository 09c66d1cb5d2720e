"""CelebA in its distribution layout (Liu et al., 2015; non-commercial research use only).

    Img/img_align_celeba.zip (or the folder; or img_celeba for the in-the-wild images)
    Anno/list_attr_celeba.txt            count line, 40 attribute names, `000001.jpg -1  1 …`
    Anno/list_landmarks_align_celeba.txt count line, 10 column names, 5 points per image
    Anno/list_bbox_celeba.txt            count line, `image_id x_1 y_1 width height` (in-the-wild images)
    Anno/identity_CelebA.txt             `000001.jpg 2880`
    Eval/list_eval_partition.txt         `000001.jpg 0` (0 train, 1 val, 2 test)

The attribute list is the list of inputs: every row is one input. Its 40 columns become attributes of
the vocabulary (`labels.py`): `Male` is `gender`, `No_Beard` is `beard` (inverted), the others their
snake_case names. Kaggle's CSV copies (a header line first, commas) are read too. Landmarks (aligned
or in the wild) and boxes (in the wild) become given faces; an aligned image's box is the square the
ArcFace alignment template frames around its five landmarks.

Rejects (stage `source`): `bad_row`, `duplicate_row`, `unsafe_path`, `unknown_label` (a value other
than 1/-1, a partition other than 0/1/2), `missing_partition`, `bad_landmarks`, `missing_landmarks`,
`bad_box`, `missing_box`, `bad_identity`, `holdout` (partition 2 by default), `missing_file`, `read_error`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError
from ..records import Reject
from .label_rows import LabelRow, ReadLabelledImages, base_name, is_unsafe, label, reject, text_lines

if TYPE_CHECKING:
    from .config import CelebASource

#: CelebA's 40 attribute columns in file order → (attribute, value when the column says 1, when -1)
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling",
    "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)
PARTITIONS = {"0": "train", "1": "val", "2": "test"}
PARTITION_NUMBERS = {v: k for k, v in PARTITIONS.items()}
LANDMARK_COLUMNS = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                    "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")
_SPLIT = re.compile(r"[\s,]+")


def column_attribute(column: str, value: str) -> tuple[str, str | bool] | None:
    """(attribute, normalised value) of one attribute cell, or None when the value is not 1 or -1."""
    if value not in ("1", "-1"):
        return None
    on = value == "1"
    if column == "Male":
        return "gender", "male" if on else "female"
    if column == "No_Beard":
        return "beard", not on
    name = "five_o_clock_shadow" if column == "5_o_Clock_Shadow" else column.lower()
    return name, on


def _fields(line: str) -> list[str]:
    return [f for f in _SPLIT.split(line.strip()) if f]


@dataclass
class Listing:
    """A CelebA listing: rows in file order (repeats kept), and the malformed ones by image."""

    rows: list[tuple[str, list[str]]]
    problems: dict[str, str]

    def first(self) -> dict[str, list[str]]:
        """{image: its values}, the first row of an image winning."""
        out: dict[str, list[str]] = {}
        for image, values in self.rows:
            out.setdefault(image, values)
        return out


def read_listing(path: str, columns: int, header: tuple[str, ...] | None) -> Listing:
    """A CelebA listing (its count line and column-name line optional, whitespace or commas)."""
    lines = text_lines(path)
    start = 0
    head = _fields(lines[0]) if lines else []
    if len(head) == 1 and head[0].isdigit():
        start = 1
    if header is not None and len(lines) > start:
        first = _fields(lines[start])
        if first and not first[0].lower().endswith((".jpg", ".jpeg", ".png")):
            named = [f for f in first if f.lower() != "image_id"]
            if named != list(header):
                raise UserError(f"{path}: line {start + 1} should name the columns {' '.join(header)}, "
                                f"not {' '.join(first)}")
            start += 1
    listing = Listing(rows=[], problems={})
    for lineno, line in enumerate(lines[start:], start=start + 1):
        fields = _fields(line)
        if not fields:
            continue
        if len(fields) != columns + 1:
            listing.problems.setdefault(
                fields[0], f"{base_name(path)} line {lineno} has {len(fields) - 1} values, expected {columns}")
            continue
        listing.rows.append((fields[0], fields[1:]))
    return listing


def box_from_landmarks(points: np.ndarray) -> list[float]:
    """The square the ArcFace 112x112 alignment template frames around five landmarks, as x1, y1, x2, y2."""
    from ..faces.geometry import ARCFACE_TEMPLATE_112, similarity_transform, transform_points

    to_image = similarity_transform(ARCFACE_TEMPLATE_112, points)
    corners = transform_points(to_image, np.array([[0.0, 0.0], [112.0, 0.0], [112.0, 112.0], [0.0, 112.0]]))
    return [float(corners[:, 0].min()), float(corners[:, 1].min()), float(corners[:, 0].max()), float(corners[:, 1].max())]


class CelebARows:
    """The CelebA label files as rows (see the module docstring)."""

    def __init__(self, cfg: CelebASource) -> None:
        self.cfg = cfg
        self.dataset = cfg.dataset
        self.licence = cfg.licence
        self.images = cfg.images
        self.split = cfg.split
        self.holdout = list(cfg.holdout)
        self.limit = cfg.limit

    def partition_name(self, split: str) -> str:
        return f"CelebA partition {PARTITION_NUMBERS.get(split, '?')} ({split})"

    def check(self) -> None:
        """Launcher-side checks that must stop the run before it starts (one clear line each)."""
        cfg = self.cfg
        if self.holdout and cfg.partitions is None:
            raise UserError(f"CelebA source {cfg.attributes}: holding out {self.holdout} needs list_eval_partition.txt "
                            "(partitions:); set holdout: [] to read without partitions")
        if cfg.split != "all" and cfg.partitions is None:
            raise UserError(f"CelebA source: split {cfg.split!r} needs list_eval_partition.txt (partitions:)")
        aligned = "align" in base_name(cfg.images)
        if cfg.boxes is not None and aligned:
            raise UserError(f"CelebA source: list_bbox_celeba.txt boxes are in the in-the-wild images (img_celeba), "
                            f"not in {base_name(cfg.images)}; drop boxes: or point images: at img_celeba")
        if cfg.landmarks is not None:
            marks_aligned = "align" in base_name(cfg.landmarks)
            if marks_aligned != aligned and ("celeba" in base_name(cfg.landmarks).lower()):
                raise UserError(f"CelebA source: {base_name(cfg.landmarks)} is for the "
                                f"{'aligned' if marks_aligned else 'in-the-wild'} images, but images: is {base_name(cfg.images)}")

    def rows(self) -> Iterator[LabelRow | Reject]:
        cfg = self.cfg
        attrs = read_listing(cfg.attributes, len(ATTRIBUTE_COLUMNS), ATTRIBUTE_COLUMNS)
        side: dict[str, tuple[dict[str, list[str]], dict[str, str], str]] = {}
        for kind, path, columns, header in (("partition", cfg.partitions, 1, None), ("identity", cfg.identities, 1, None),
                                            ("landmarks", cfg.landmarks, 10, LANDMARK_COLUMNS),
                                            ("box", cfg.boxes, 4, ("x_1", "y_1", "width", "height"))):
            if path is not None:
                listing = read_listing(path, columns, header)
                side[kind] = (listing.first(), listing.problems, base_name(path))
        for image, detail in attrs.problems.items():
            yield reject(self.dataset, image, "bad_row", detail)
        seen: set[str] = set()
        for image, values in attrs.rows:
            if image in seen:
                yield reject(self.dataset, image, "duplicate_row",
                             f"{image} is listed more than once in {base_name(cfg.attributes)}; the first row is kept")
                continue
            seen.add(image)
            yield self._row(image, values, side)

    def _row(self, image: str, values: list[str], side: dict[str, tuple[dict[str, list[str]], dict[str, str], str]]
             ) -> LabelRow | Reject:
        ds = self.dataset
        if is_unsafe(image):
            return reject(ds, image, "unsafe_path", f"image name {image!r} leaves the image folder")
        labels = {}
        unknown = []
        for column, raw in zip(ATTRIBUTE_COLUMNS, values, strict=True):
            found = column_attribute(column, raw)
            if found is None:
                unknown.append(f"{column}={raw!r}")
                continue
            labels[found[0]] = label(found[1], f"{column}={raw}")
        if unknown:
            return reject(ds, image, "unknown_label", f"attribute value(s) other than 1 or -1: {', '.join(unknown[:5])}")
        split = None
        extra: dict[str, str | int | float | bool | None] = {}
        if "partition" in side:
            rows, problems, name = side["partition"]
            if image in problems:
                return reject(ds, image, "bad_row", problems[image])
            if image not in rows:
                return reject(ds, image, "missing_partition", f"{image} is not listed in {name}")
            split = PARTITIONS.get(rows[image][0])
            if split is None:
                return reject(ds, image, "unknown_label", f"{name}: partition {rows[image][0]!r} of {image} is not 0, 1 or 2")
            extra["partition"] = int(rows[image][0])
        if "identity" in side:
            rows, problems, name = side["identity"]
            ident = rows.get(image, [None])[0]
            if image in problems or (ident is not None and not ident.isdigit()):
                return reject(ds, image, "bad_identity", problems.get(image) or f"{name}: the identity of {image} is "
                                                                                  f"not a number: {ident!r}")
            if ident is not None:
                extra["identity"] = int(ident)
        faces = self._faces(image, side)
        if isinstance(faces, Reject):
            return faces
        return LabelRow(image=image, source_id=image, split=split, labels=labels, extra=extra,
                        faces=faces, faces_source="celeba" if faces else None,
                        face_crop="align" in base_name(self.cfg.images))  # img_align_celeba: aligned face crops

    def _faces(self, image: str, side: dict[str, tuple[dict[str, list[str]], dict[str, str], str]]
               ) -> list[dict[str, Any]] | Reject | None:
        """The image's given face (landmarks and/or box), None when no such file is configured."""
        ds = self.dataset
        points = box = None
        if "landmarks" in side:
            rows, problems, name = side["landmarks"]
            if image in problems:
                return reject(ds, image, "bad_landmarks", problems[image])
            if image not in rows:
                return reject(ds, image, "missing_landmarks", f"{image} has no row in {name}")
            try:
                points = np.array([float(v) for v in rows[image]], dtype=np.float64).reshape(5, 2)
            except ValueError:
                return reject(ds, image, "bad_landmarks", f"{name}: the landmarks of {image} are not numbers: {rows[image]}")
        if "box" in side:
            rows, problems, name = side["box"]
            if image in problems:
                return reject(ds, image, "bad_box", problems[image])
            if image not in rows:
                return reject(ds, image, "missing_box", f"{image} has no row in {name}")
            try:
                x, y, w, h = (float(v) for v in rows[image])
            except ValueError:
                return reject(ds, image, "bad_box", f"{name}: the box of {image} is not numbers: {rows[image]}")
            if w <= 0 or h <= 0:
                return reject(ds, image, "bad_box", f"{name}: the box of {image} is empty (width {w:g}, height {h:g})")
            box = [x, y, x + w, y + h]
        if points is None and box is None:
            return None
        if box is None:
            assert points is not None
            box = box_from_landmarks(points)
        return [{"box": box, "score": None, "landmarks5": points.tolist() if points is not None else None}]


class ReadCelebA(ReadLabelledImages):
    """CelebA label files + images → WorkItems (bytes, 40 attributes, given faces) and source rejects."""

    def __init__(self, cfg: CelebASource) -> None:
        super().__init__(CelebARows(cfg))
