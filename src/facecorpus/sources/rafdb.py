"""RAF-DB basic in its distribution layout (Li, Deng and Du, 2017; research use under its agreement).

    basic/EmoLabel/list_patition_label.txt   (sic) `train_00001.jpg 5`, `test_0001.jpg 1`
    basic/Image/aligned/train_00001_aligned.jpg   100x100 aligned faces (a folder or aligned.zip)
    basic/Image/original/train_00001.jpg          the original images

Labels 1-7 are surprise, fear, disgust, happiness, sadness, anger, neutral; they become the
`expression` attribute (codes of `labels.py`). The split is the file name's prefix: `test_*` is the
official test partition, held out by default.

Rejects (stage `source`): `bad_row` (not `name label`, or a name that is not `train_*.jpg` /
`test_*.jpg`), `unsafe_path`, `duplicate_row`, `unknown_label` (not 1-7), `holdout`, `missing_file`,
`read_error`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..records import Reject
from .label_rows import LabelRow, ReadLabelledImages, base_name, is_unsafe, label, reject, text_lines

if TYPE_CHECKING:
    from .config import RafDbSource

EXPRESSIONS = {"1": "surprise", "2": "fear", "3": "disgust", "4": "happy", "5": "sad", "6": "angry", "7": "neutral"}
_NAME = re.compile(r"^(?P<split>train|test)_(?P<number>\d+)\.jpg$")


def aligned_name(name: str) -> str:
    """`train_00001.jpg` → `train_00001_aligned.jpg` (the name in Image/aligned)."""
    stem = name.rsplit(".", 1)[0]
    return f"{stem}_aligned.jpg"


class RafDbRows:
    """RAF-DB's label file as rows (see the module docstring)."""

    def __init__(self, cfg: RafDbSource) -> None:
        self.cfg = cfg
        self.dataset = cfg.dataset
        self.licence = cfg.licence
        self.images = cfg.images
        self.split = cfg.split
        self.holdout = list(cfg.holdout)
        self.limit = cfg.limit
        self.aligned = cfg.variant == "aligned" or (cfg.variant == "auto" and "aligned" in base_name(cfg.images))

    def partition_name(self, split: str) -> str:
        return f"RAF-DB's {split} partition ({split}_*)"

    def rows(self) -> Iterator[LabelRow | Reject]:
        path = self.cfg.labels
        ds = self.dataset
        seen: set[str] = set()
        for lineno, line in enumerate(text_lines(path), start=1):
            fields = line.split()
            if not fields:
                continue
            sid = fields[0]
            where = f"{base_name(path)} line {lineno}"
            if len(fields) != 2:
                yield reject(ds, sid, "bad_row", f"{where}: expected `image label`, got {len(fields)} fields")
                continue
            name, raw = fields
            if is_unsafe(name):
                yield reject(ds, sid, "unsafe_path", f"{where}: image name {name!r} leaves the image folder")
                continue
            m = _NAME.match(name)
            if m is None:
                yield reject(ds, sid, "bad_row", f"{where}: {name!r} is not a RAF-DB basic name (train_NNNNN.jpg, test_NNNN.jpg)")
                continue
            if name in seen:
                yield reject(ds, sid, "duplicate_row", f"{where}: {name} is listed more than once; the first row is kept")
                continue
            seen.add(name)
            code = EXPRESSIONS.get(raw)
            if code is None:
                yield reject(ds, sid, "unknown_label", f"{where}: expression label {raw!r} is not 1-7")
                continue
            yield LabelRow(image=aligned_name(name) if self.aligned else name, source_id=name, split=m.group("split"),
                           labels={"expression": label(code, raw)},
                           extra={"variant": "aligned" if self.aligned else "original"}, face_crop=self.aligned)


class ReadRafDb(ReadLabelledImages):
    """RAF-DB basic labels + images → WorkItems (bytes, expression) and source rejects."""

    def __init__(self, cfg: RafDbSource) -> None:
        super().__init__(RafDbRows(cfg))
