"""FairFace: `fairface-img-margin025-trainval.zip` (read in place) or its extracted folder, plus the label CSVs.

CSV header `file,age,gender,race,service_test` (a BOM and extra columns are fine; the source's
`encoding` key names the encoding of files without a BOM, UTF-8 by default). Every row is one
input: it becomes a WorkItem with the image bytes and normalised labels, or a Reject with the reason
(`duplicate_row`, `unknown_label`, `unsafe_path`, `missing_file`, `bad_row`).
"""

from __future__ import annotations

import csv
import io
import logging
import posixpath
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from .. import progress
from ..config import is_remote
from ..errors import UserError
from ..faces.priors import CROP
from ..keys import make_key
from ..labels import normalise
from ..records import AttributeValue, Reject, SourceInfo
from ..rejection import Rejection
from ..stage import REJECTS, Counters, WorkItem, count_inputs, make_reject
from ..textfiles import decode_text
from .config import FairFaceSource
from .files import exists, read_bytes

REQUIRED_COLUMNS = ("file", "age", "gender", "race")
log = logging.getLogger("facecorpus")


@dataclass
class LabelRow:
    file: str
    split: str
    labels: dict[str, str]  # raw: age, gender, race
    extra: dict[str, str] = field(default_factory=dict)


def _split_of(file: str, csv_path: str) -> str:
    head = file.split("/", 1)[0]
    if head in ("train", "val"):
        return head
    name = posixpath.basename(csv_path).lower()
    return "train" if "train" in name else ("val" if "val" in name else "unknown")


def _is_unsafe(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")


def read_label_text(path: str, encoding: str = "utf-8") -> str:
    """A label CSV's text in its encoding (a BOM wins); one UserError line naming the file, line and
    encoding when its bytes do not decode."""
    return decode_text(read_bytes(path), encoding, f"FairFace label file {path}",
                       "declare the file's encoding with the source's `encoding` key (e.g. encoding: latin-1)")


def check_label_header(path: str, encoding: str = "utf-8") -> None:
    """Fail before the run starts if a label CSV is missing, is a folder, does not decode in its
    encoding, or lacks the FairFace columns."""
    if not exists(path):
        raise UserError(f"FairFace label file not found: {path}")
    if not is_remote(path) and Path(path).is_dir():
        raise UserError(f"FairFace label file {path} is a folder; give the CSV file (e.g. fairface_label_val.csv)")
    first = read_label_text(path, encoding).split("\n", 1)[0]
    header = [h.strip() for h in next(csv.reader([first]), [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UserError(f"FairFace label file {path}: missing column(s) {missing}; header is {header}")


def check_images(images: str) -> None:
    """Fail before the run starts if the images are missing, or a `.zip` that is not a zip archive."""
    if not exists(images):
        raise UserError(f"FairFace images not found: {images}")
    if not images.lower().endswith(".zip"):
        return
    if not is_remote(images) and Path(images).is_dir():
        raise UserError(f"FairFace images {images} is a folder named .zip; rename it, or give the zip file")
    with FileSystems.open(images) as f:
        if not zipfile.is_zipfile(f):
            raise UserError(f"FairFace images {images} is not a zip archive (no zip directory at its end); "
                            f"give fairface-img-margin025-trainval.zip or the extracted folder")


def parse_label_csv(path: str, split: str, dataset: str, encoding: str = "utf-8") -> Iterator[LabelRow | Reject]:
    """Rows of one label CSV for the chosen split; bad rows come out as Rejects (stage 'source')."""
    text = read_label_text(path, encoding)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    seen: set[str] = set()
    for lineno, row in enumerate(reader, start=2):
        file = (row.get("file") or "").strip()
        sid = file or f"{posixpath.basename(path)}:{lineno}"
        row_split = _split_of(file, path)
        if split != "all" and row_split != split:
            continue

        def reject(reason: str, detail: str, sid: str = sid) -> Reject:
            return make_reject(None, "source", Rejection(reason, detail), source_id=sid, dataset=dataset)

        if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS) or not file:
            yield reject("bad_row", f"{path} line {lineno}: the row has missing or extra cells")
            continue
        if _is_unsafe(file):
            yield reject("unsafe_path", f"{path} line {lineno}: file path {file!r} leaves the image folder")
            continue
        if file in seen:
            yield reject("duplicate_row", f"{path} line {lineno}: {file} is listed more than once; the first row is kept")
            continue
        seen.add(file)
        raw = {c: row[c].strip() for c in ("age", "gender", "race")}
        unknown = [f"{c}={v!r}" for c, v in raw.items() if normalise(c, v) is None]
        if unknown:
            yield reject("unknown_label", f"{path} line {lineno}: label value(s) not in the FairFace vocabulary: {', '.join(unknown)}")
            continue
        extra = {k: (v or "").strip() for k, v in row.items() if k not in REQUIRED_COLUMNS and k is not None}
        yield LabelRow(file=file, split=row_split, labels=raw, extra=extra)


def _count_inputs(path: str, cfg: FairFaceSource) -> int:
    """How many inputs one label file gives (what _ParseLabels emits): the live progress view's total."""
    n = rows = 0
    for row in parse_label_csv(path, cfg.split, cfg.dataset, cfg.encoding):
        if not isinstance(row, Reject):
            if cfg.limit is not None and rows >= cfg.limit:
                break
            rows += 1
        n += 1
    return n


class _ParseLabels(beam.DoFn):
    def __init__(self, cfg: FairFaceSource) -> None:
        self.cfg = cfg

    def process(self, path: str) -> Iterator[Any]:
        n = 0
        for row in parse_label_csv(path, self.cfg.split, self.cfg.dataset, self.cfg.encoding):
            if isinstance(row, Reject):
                count_inputs()
                Counters("source").rejected(row.reason)
                yield beam.pvalue.TaggedOutput(REJECTS, row)
                continue
            if self.cfg.limit is not None and n >= self.cfg.limit:
                return
            n += 1
            yield row


class _ImageStore:
    """Reads image files from the zip (in place, through its central directory) or from the folder."""

    def __init__(self, images: str) -> None:
        self.images = images
        self.is_zip = images.lower().endswith(".zip")
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        self.unsafe_entries: list[str] = []

    def _open_zip(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(FileSystems.open(self.images))
            names = self._zip.namelist()
            # entries like '../x.jpg' or '/etc/x' are never read (we read only names the labels list, and
            # rows naming unsafe paths are rejected); count them so a hostile archive is visible
            self.unsafe_entries = [n for n in names if _is_unsafe(n)]
            if self.unsafe_entries:
                Counters("source").count("unsafe_zip_entries", len(self.unsafe_entries))
                log.warning("%s holds %d unsafe entries (e.g. %r); they are ignored",
                            self.images, len(self.unsafe_entries), self.unsafe_entries[0])
            # some re-packs put everything under one top folder (e.g. fairface-img-margin025-trainval/)
            if names and not any(n.startswith(("train/", "val/")) for n in names[:1000]):
                tops = {n.split("/", 1)[0] for n in names if "/" in n}
                if len(tops) == 1:
                    self._prefix = tops.pop() + "/"
        return self._zip

    def read(self, file: str) -> bytes | None:
        if self.is_zip:
            zf = self._open_zip()
            try:
                return zf.read(self._prefix + file)
            except KeyError:
                return None
        path = FileSystems.join(self.images, file)
        return read_bytes(path) if exists(path) else None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


class _ReadImage(beam.DoFn):
    def __init__(self, cfg: FairFaceSource) -> None:
        self.cfg = cfg
        self._store: _ImageStore | None = None

    def setup(self) -> None:
        self._store = _ImageStore(self.cfg.images)

    def teardown(self) -> None:
        if self._store is not None:
            self._store.close()

    def process(self, row: LabelRow) -> Iterator[Any]:
        count_inputs()
        counters = Counters("source")
        assert self._store is not None
        try:
            data = self._store.read(row.file)
        except (zipfile.BadZipFile, OSError) as e:
            counters.rejected("read_error")
            yield beam.pvalue.TaggedOutput(
                REJECTS,
                make_reject(None, "source", Rejection("read_error", f"cannot read {row.file}: {e}", True), row.file,
                            self.cfg.dataset),
            )
            return
        if data is None:
            counters.rejected("missing_file")
            yield beam.pvalue.TaggedOutput(
                REJECTS,
                make_reject(None, "source", Rejection("missing_file", f"{row.file} is listed in the labels but not in "
                                                      f"{self.cfg.images}"), row.file, self.cfg.dataset),
            )
            return
        labels = {
            attr: AttributeValue(value=normalise(attr, raw) or raw, source="label", confidence=1.0, raw=raw)
            for attr, raw in row.labels.items()
        }
        extra: dict[str, str | int | float | bool | None] = dict(row.extra)
        if self.cfg.margin:
            extra["margin"] = self.cfg.margin
        counters.kept()
        yield WorkItem(
            key=make_key(self.cfg.dataset, row.file),
            source=SourceInfo(dataset=self.cfg.dataset, id=row.file, split=row.split, licence=self.cfg.licence, extra=extra),
            labels=labels,
            data=data,
            face_size=CROP,  # FairFace images are face crops: one large face each
        )


class ReadFairFace(beam.PTransform):
    """FairFace label CSVs + images → WorkItems (bytes + labels) and source rejects."""

    def __init__(self, cfg: FairFaceSource) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        check_images(self.cfg.images)
        for path in self.cfg.labels:
            check_label_header(path, self.cfg.encoding)
        progress.expect_inputs(sum(_count_inputs(path, self.cfg) for path in self.cfg.labels))
        parsed = (
            pbegin
            | "LabelFiles" >> beam.Create(self.cfg.labels)
            | "ParseLabels" >> beam.ParDo(_ParseLabels(self.cfg)).with_outputs(REJECTS, main="main")
        )
        read = (
            parsed["main"]
            | "Distribute" >> beam.Reshuffle()
            | "ReadImages" >> beam.ParDo(_ReadImage(self.cfg)).with_outputs(REJECTS, main="main")
        )
        rejects = (parsed[REJECTS], read[REJECTS]) | "Rejects" >> beam.Flatten()
        return {"main": read["main"], "rejects": rejects}
