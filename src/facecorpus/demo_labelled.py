"""Demo inputs for the labelled face datasets, in their real distribution layouts, made from the real
faces the demo already uses (Tom Hanks, the astronaut, the six people of the group photo).

- `celeba/`: Img/img_align_celeba.zip (178x218 faces aligned on CelebA's landmark positions), Anno/
  (list_attr_celeba.txt, list_landmarks_align_celeba.txt, identity_CelebA.txt), Eval/list_eval_partition.txt;
- `rafdb/basic/`: EmoLabel/list_patition_label.txt, Image/aligned (100x100) and Image/original;
- `utkface/UTKFace/`: 200x200 chips named `age_gender_race_datetime.jpg.chip.jpg`;
- `affectnet/`: an AffectNet-style CSV (`subDirectory_filePath`, `expression` 0-10, …) for the generic
  labelled source, the masked faces included.

The labels are made up (well-formed, not ground truth). Each layout carries the malformed rows and
files its source must reject: a row with a value missing, an unknown label, a duplicate, a listed file
that is absent, a path leaving the folder, and the dataset's own kinds (a CelebA image without a
partition or with broken landmarks, a UTKFace name missing a field).
"""

from __future__ import annotations

import csv
import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from .sources.celeba import ATTRIBUTE_COLUMNS, LANDMARK_COLUMNS

#: five landmarks (eyes, nose, mouth corners; image-left first) of the demo's real faces, in each photo's
#: pixels, found once with the portable pack (the group photo's scaled to its 1280x886 original)
FACE_LANDMARKS: dict[str, tuple[str, list[tuple[float, float]]]] = {
    "hanks": ("hanks", [(35.1, 48.9), (73.0, 47.1), (61.6, 77.2), (34.5, 91.7), (65.7, 89.5)]),
    "astronaut": ("astronaut", [(202.8, 99.0), (246.3, 101.9), (223.9, 126.6), (199.4, 137.6), (244.3, 141.2)]),
    "group_0": ("group6", [(917.9, 115.9), (951.6, 109.9), (924.3, 147.9), (932.1, 172.1), (959.1, 166.6)]),
    "group_1": ("group6", [(487.8, 316.6), (538.5, 329.4), (505.8, 364.3), (479.3, 366.8), (528.1, 379.4)]),
    "group_2": ("group6", [(288.5, 210.6), (321.4, 191.1), (306.0, 225.8), (310.9, 250.4), (337.9, 233.9)]),
    "group_3": ("group6", [(81.4, 325.8), (127.8, 301.3), (118.0, 334.3), (110.8, 370.6), (145.6, 348.0)]),
    "group_4": ("group6", [(758.8, 394.8), (801.4, 399.3), (771.4, 431.3), (760.0, 437.0), (805.6, 441.3)]),
    "group_5": ("group6", [(1147.5, 323.3), (1190.9, 320.8), (1162.5, 346.0), (1153.8, 364.8), (1194.4, 362.4)]),
}


@dataclass(frozen=True)
class Person:
    """Made-up labels of one demo face."""

    face: str
    gender: str  # male | female
    age: int
    race: int  # UTKFace code
    expression: int  # RAF-DB code 1-7


PEOPLE = [
    Person("hanks", "male", 54, 0, 4),
    Person("astronaut", "female", 43, 0, 4),
    Person("group_0", "male", 34, 0, 7),
    Person("group_1", "male", 37, 0, 4),
    Person("group_2", "female", 31, 0, 1),
    Person("group_3", "female", 26, 0, 4),
    Person("group_4", "male", 28, 0, 7),
    Person("group_5", "female", 33, 0, 5),
]

#: CelebA's mean landmark positions in its 178x218 aligned images (eyes, nose, mouth corners)
CELEBA_TEMPLATE = np.array([[69.0, 111.0], [107.0, 112.0], [88.0, 135.0], [72.0, 152.0], [105.0, 152.0]])


def _template(size: int, margin: float) -> np.ndarray:
    from .faces.geometry import aligned_template

    return aligned_template(size, margin)


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def aligned_face(photos: dict[str, Path], face: str, template: np.ndarray, size: tuple[int, int],
                 mirror: bool = False) -> tuple[Image.Image, np.ndarray]:
    """The face warped so its landmarks land on `template` in a size=(w, h) image, and where they landed."""
    from .faces.geometry import similarity_transform, transform_points

    photo, marks = FACE_LANDMARKS[face]
    rgb = np.asarray(Image.open(photos[photo]).convert("RGB"))
    points = np.array(marks, dtype=np.float64)
    if mirror:
        rgb = rgb[:, ::-1].copy()
        points[:, 0] = rgb.shape[1] - 1 - points[:, 0]
        points = points[[1, 0, 2, 4, 3]]  # image-left first again
    m = similarity_transform(points, template)
    warped = cv2.warpAffine(rgb, m, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(warped), transform_points(m, points)


def _faces(count: int) -> list[tuple[Person, bool]]:
    """`count` (person, mirrored) pairs: each person, then their mirror images."""
    return [(PEOPLE[i % len(PEOPLE)], i >= len(PEOPLE)) for i in range(count)]


# ------------------------------------------------------------------------------------------------- CelebA


def _celeba_attributes(person: Person, rng: random.Random) -> list[str]:
    values = []
    for column in ATTRIBUTE_COLUMNS:
        if column == "Male":
            on = person.gender == "male"
        elif column == "No_Beard":
            on = True
        elif column in ("Mustache", "Goatee", "Bald", "Wearing_Hat", "Eyeglasses", "Blurry", "Wearing_Necktie"):
            on = False
        elif column == "Smiling":
            on = person.expression == 4
        elif column == "Young":
            on = person.age < 36
        elif column in ("Wearing_Lipstick", "Heavy_Makeup"):
            on = person.gender == "female" and rng.random() < 0.6
        else:
            on = rng.random() < 0.3
        values.append(" 1" if on else "-1")
    return values


def build_celeba(dest: Path, photos: dict[str, Path]) -> Path:
    """CelebA's layout with 12 aligned images (partitions 0/1/2) and the rows its source must reject."""
    root = dest / "celeba"
    for sub in ("Anno", "Eval", "Img"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(15)
    names, attrs, marks, ids, parts = [], [], [], [], []
    for i, (person, mirror) in enumerate(_faces(12), start=1):
        name = f"{i:06d}.jpg"
        img, points = aligned_face(photos, person.face, CELEBA_TEMPLATE, (178, 218), mirror)
        names.append((name, _jpeg(img)))
        attrs.append(f"{name} " + " ".join(_celeba_attributes(person, rng)))
        marks.append(f"{name} " + " ".join(f"{round(v):d}" for v in points.reshape(-1)))
        ids.append(f"{name} {100 + PEOPLE.index(person)}")
        parts.append(f"{name} {2 if i > 10 else (1 if i > 8 else 0)}")
    with zipfile.ZipFile(root / "Img" / "img_align_celeba.zip", "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in names:
            zf.writestr(f"img_align_celeba/{name}", data)
        zf.writestr("img_align_celeba/000014.jpg", names[0][1])  # listed without a partition
        zf.writestr("img_align_celeba/000015.jpg", names[1][1])  # listed with broken landmarks
    good = " ".join(["-1"] * 40)
    bad_rows = [
        attrs[0],  # 000001.jpg again: duplicate_row
        "000013.jpg " + " ".join(["1"] * 39),  # 39 values: bad_row
        "000014.jpg " + good,  # in no partition: missing_partition
        "000015.jpg " + good,  # landmarks not numbers: bad_landmarks
        "000016.jpg " + " ".join(["0"] + ["-1"] * 39),  # 0 is not ±1: unknown_label
        "000017.jpg " + good,  # not in the zip: missing_file
        "../000018.jpg " + good,  # unsafe_path
    ]
    listed = attrs + bad_rows
    (root / "Anno" / "list_attr_celeba.txt").write_text(
        f"{len(listed)}\n" + " ".join(ATTRIBUTE_COLUMNS) + "\n" + "\n".join(listed) + "\n", encoding="utf-8")
    marks += ["000014.jpg 69 111 107 112 88 135 72 152 105 152", "000015.jpg 69 111 x y 88 135 72 152 105 152",
              "000016.jpg 69 111 107 112 88 135 72 152 105 152", "000017.jpg 69 111 107 112 88 135 72 152 105 152"]
    (root / "Anno" / "list_landmarks_align_celeba.txt").write_text(
        f"{len(marks)}\n" + " ".join(LANDMARK_COLUMNS) + "\n" + "\n".join(marks) + "\n", encoding="utf-8")
    (root / "Anno" / "identity_CelebA.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    parts += ["000015.jpg 0", "000016.jpg 0", "000017.jpg 0"]
    (root / "Eval" / "list_eval_partition.txt").write_text("\n".join(parts) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------------- RAF-DB


def build_rafdb(dest: Path, photos: dict[str, Path]) -> Path:
    """RAF-DB basic's layout: 12 train and 4 test images, aligned and original, plus rows to reject."""
    root = dest / "rafdb" / "basic"
    aligned_dir, original_dir = root / "Image" / "aligned", root / "Image" / "original"
    for d in (root / "EmoLabel", aligned_dir, original_dir):
        d.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (person, mirror) in enumerate(_faces(16)):
        name = f"train_{i + 1:05d}.jpg" if i < 12 else f"test_{i - 11:04d}.jpg"
        aligned, _ = aligned_face(photos, person.face, _template(100, 0.15), (100, 100), mirror)
        wide, _ = aligned_face(photos, person.face, _template(320, 0.6), (320, 320), mirror)
        (aligned_dir / name.replace(".jpg", "_aligned.jpg")).write_bytes(_jpeg(aligned))
        (original_dir / name).write_bytes(_jpeg(wide))
        lines.append(f"{name} {person.expression}")
    lines += [
        "train_00001.jpg 4",  # duplicate_row
        "train_00013.jpg",  # bad_row: no label
        "train_00014.jpg 9",  # unknown_label
        "train_00015.jpg 2",  # missing_file
        "val_00001.jpg 3",  # bad_row: not a RAF-DB basic name
        "../train_00016.jpg 1",  # unsafe_path
    ]
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------------ UTKFace


def build_utkface(dest: Path, photos: dict[str, Path]) -> Path:
    """UTKFace's aligned-and-cropped folder: 200x200 chips named by their labels, malformed names included."""
    folder = dest / "utkface" / "UTKFace"
    folder.mkdir(parents=True, exist_ok=True)
    template = _template(200, 0.3)
    for i, (person, mirror) in enumerate(_faces(12)):
        img, _ = aligned_face(photos, person.face, template, (200, 200), mirror)
        gender = 0 if person.gender == "male" else 1
        age = person.age + (3 if mirror else 0)
        (folder / f"{age}_{gender}_{person.race}_2017011{i % 10}1{i:02d}000{i:03d}.jpg.chip.jpg").write_bytes(_jpeg(img))
    chip, _ = aligned_face(photos, "hanks", template, (200, 200))
    data = _jpeg(chip)
    (folder / "39_1_20170116174525125.jpg.chip.jpg").write_bytes(data)  # race missing: bad_file_name (as in the release)
    (folder / "117_0_0_20170117000000001.jpg.chip.jpg").write_bytes(data)  # age over 116: unknown_label
    (folder / "30_2_0_20170117000000002.jpg.chip.jpg").write_bytes(data)  # gender 2: unknown_label
    (folder / "30_0_7_20170117000000003.jpg.chip.jpg").write_bytes(data)  # race 7: unknown_label
    return folder


# ------------------------------------------------------------------------------- generic labelled (AffectNet)

#: AffectNet's expression codes (8 None, 9 Uncertain and 10 No-Face are not expressions)
AFFECTNET_CODES = {"neutral": 0, "happy": 1, "sad": 2, "surprise": 3, "fear": 4, "disgust": 5, "angry": 6, "contempt": 7}
_RAFDB_TO_AFFECTNET = {1: 3, 2: 4, 3: 5, 4: 1, 5: 2, 6: 6, 7: 0}


def build_affectnet(dest: Path, photos: dict[str, Path]) -> Path:
    """An AffectNet-style label CSV + image folder for the generic labelled source."""
    root = dest / "affectnet"
    images = root / "Manually_Annotated_Images"
    (images / "1").mkdir(parents=True, exist_ok=True)
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression", "valence",
              "arousal", "face_mask", "split"]
    rows = []
    for i, (person, mirror) in enumerate(_faces(10)):
        img, _ = aligned_face(photos, person.face, _template(224, 0.25), (224, 224), mirror)
        name = f"1/face_{i:03d}.jpg"
        (images / name).write_bytes(_jpeg(img))
        rows.append([name, 0, 0, 224, 224, _RAFDB_TO_AFFECTNET[person.expression], "0.2", "0.1", "0",
                     "val" if i >= 8 else "train"])
    for i, kind in enumerate(("mask_blue", "mask_white")):
        name = f"1/mask_{i}.jpg"
        img = ImageOps.fit(Image.open(photos[kind]).convert("RGB"), (224, 224))
        (images / name).write_bytes(_jpeg(img))
        rows.append([name, 0, 0, 224, 224, 0, "0.0", "0.0", "1", "train"])
    rows += [
        ["1/face_000.jpg", 0, 0, 224, 224, 1, "0.2", "0.1", "0", "train"],  # duplicate_row
        ["1/uncertain.jpg", 0, 0, 224, 224, 9, "0.0", "0.0", "0", "train"],  # 9 Uncertain: unknown_label
        ["1/absent.jpg", 0, 0, 224, 224, 1, "0.5", "0.3", "0", "train"],  # missing_file
        ["../escape.jpg", 0, 0, 224, 224, 1, "0.5", "0.3", "0", "train"],  # unsafe_path
        ["1/unlabelled.jpg", 0, 0, 224, 224, "", "0.5", "0.3", "0", "train"],  # empty expression: missing_label
        ["1/short_row.jpg", 0, 0],  # bad_row
    ]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    (root / "training.csv").write_text(buf.getvalue(), encoding="utf-8")
    return root


def build_labelled_inputs(dest: Path, photos: dict[str, Path]) -> None:
    """All four labelled layouts under `dest`."""
    build_celeba(dest, photos)
    build_rafdb(dest, photos)
    build_utkface(dest, photos)
    build_affectnet(dest, photos)
