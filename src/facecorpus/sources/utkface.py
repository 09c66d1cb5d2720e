"""UTKFace: labels in the file names (Zhang, Song and Qi, 2017; non-commercial research use).

`[age]_[gender]_[race]_[date&time].jpg` — age 0-116, gender 0 male / 1 female, race 0 White, 1 Black,
2 Asian, 3 Indian, 4 Others; the aligned-and-cropped release appends `.chip.jpg`
(`1_0_0_20161219140623097.jpg.chip.jpg`). Images are a folder (`UTKFace/`, `crop_part1/`, `part1/`…),
a zip of one, or the released `UTKFace.tar.gz` (read front to back, once). Every image file is one input. The release has a few names with a field missing
(`39_1_20170116174525125.jpg.chip.jpg`); they are rejected, not guessed.

Labels: `age_years` (the number), `age` (its bin, the FairFace bins), `gender`, `race` (`asian` and
`other` are UTKFace's coarser groups; see labels.py). UTKFace has no official split.

Rejects (stage `source`): `bad_file_name` (not four `_`-separated numbers), `unknown_label` (age over
116, gender not 0/1, race not 0-4), `unsafe_path` (zip entries), `read_error`.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from apache_beam.io.filesystems import FileSystems

from ..labels import age_bin_of
from ..records import Reject
from .files import list_files
from .label_rows import LabelRow, ReadLabelledImages, base_name, is_tar, is_unsafe, label, reject

if TYPE_CHECKING:
    from .config import UTKFaceSource

GENDERS = {"0": "male", "1": "female"}
RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "other"}
MAX_AGE = 116
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_SUFFIX = re.compile(r"(\.jpg)?(\.chip\.jpg)?$|\.(jpeg|png)$", re.IGNORECASE)


def parse_name(name: str) -> dict[str, str] | str:
    """{age, gender, race, taken} from a UTKFace file name, or why it cannot be read (a sentence)."""
    stem = _SUFFIX.sub("", base_name(name), count=1)
    fields = stem.split("_")
    if len(fields) != 4 or not all(f.isdigit() for f in fields):
        shown = ", ".join(repr(f) for f in fields)
        return f"{base_name(name)!r} is not age_gender_race_datetime (fields: {shown})"
    age, gender, race, taken = fields
    return {"age": age, "gender": gender, "race": race, "taken": taken}


def labels_of(parsed: dict[str, str]) -> dict[str, object] | str:
    """Normalised labels from parsed name fields, or which value is outside UTKFace's codes."""
    age = int(parsed["age"])
    bad = []
    if age > MAX_AGE:
        bad.append(f"age {age} (0-{MAX_AGE})")
    if parsed["gender"] not in GENDERS:
        bad.append(f"gender {parsed['gender']} (0 or 1)")
    if parsed["race"] not in RACES:
        bad.append(f"race {parsed['race']} (0-4)")
    if bad:
        return "value(s) outside UTKFace's codes: " + ", ".join(bad)
    return {"age_years": age, "age": age_bin_of(age), "gender": GENDERS[parsed["gender"]], "race": RACES[parsed["race"]]}


class UTKFaceRows:
    """Every image file of a UTKFace folder or zip, its name parsed into labels."""

    def __init__(self, cfg: UTKFaceSource) -> None:
        self.cfg = cfg
        self.dataset = cfg.dataset
        self.licence = cfg.licence
        self.images = cfg.images
        self.split = "all"
        self.holdout: list[str] = []
        self.limit = cfg.limit

    def partition_name(self, split: str) -> str:
        return split

    def _members(self) -> Iterator[tuple[str, bytes | None] | Reject]:
        """(name, bytes or None) of every image file: a .tar(.gz) is read front to back (bytes come
        along); a zip or folder is listed (bytes are read later, in parallel). A tar that breaks off
        (truncated download, corrupt gzip) ends in one `read_error` reject naming the archive and how
        far it was read: the files after the break cannot be named, so they are not counted."""
        if not is_tar(self.images):
            for name in self._names():
                yield name, None
            return
        read, name = 0, None
        try:
            with FileSystems.open(self.images) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
                for member in tar:
                    name = member.name
                    if member.isfile() and (name.lower().endswith(IMAGE_EXTENSIONS) or is_unsafe(name)):
                        handle = tar.extractfile(member)
                        yield name, handle.read() if handle is not None and not is_unsafe(name) else None
                        read += 1
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            where = f"at {name!r}" if name else "before its first file"
            yield reject(self.dataset, base_name(self.images), "read_error",
                         f"{base_name(self.images)} breaks off {where} after {read} image files ({e}); "
                         "the rest of the archive is not read", True)

    def _names(self) -> list[str]:
        if self.images.lower().endswith(".zip"):
            with zipfile.ZipFile(FileSystems.open(self.images)) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir()]
            return sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) or is_unsafe(n))
        root = self.images.rstrip("/") + "/"
        return [p[len(root):] if p.startswith(root) else base_name(p) for p in list_files(self.images, list(IMAGE_EXTENSIONS))]

    def rows(self) -> Iterator[LabelRow | Reject]:
        ds = self.dataset
        for member in self._members():
            if isinstance(member, Reject):
                yield member
                continue
            name, data = member
            if is_unsafe(name):
                yield reject(ds, name, "unsafe_path", f"archive entry {name!r} leaves the archive; it is not read")
                continue
            parsed = parse_name(name)
            if isinstance(parsed, str):
                yield reject(ds, name, "bad_file_name", parsed)
                continue
            values = labels_of(parsed)
            if isinstance(values, str):
                yield reject(ds, name, "unknown_label", f"{base_name(name)}: {values}")
                continue
            raw = {"age_years": parsed["age"], "age": parsed["age"], "gender": parsed["gender"], "race": parsed["race"]}
            yield LabelRow(image=name, source_id=name, split=self.cfg.split,
                           labels={k: label(v, raw[k]) for k, v in values.items()},  # type: ignore[arg-type]
                           extra={"taken": parsed["taken"]}, data=data,
                           face_crop=name.lower().endswith(".chip.jpg"))  # the aligned-and-cropped release


class ReadUTKFace(ReadLabelledImages):
    """A UTKFace folder or zip → WorkItems (bytes, age, gender, race) and source rejects."""

    def __init__(self, cfg: UTKFaceSource) -> None:
        super().__init__(UTKFaceRows(cfg))
