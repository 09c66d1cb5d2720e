"""What the labelled-dataset sources share: label rows, an image store (zip read in place, or a folder),
and the Beam transform that turns rows into WorkItems.

    label files ─▶ parse (one unit per dataset) ─▶ rows / rejects (bad_row, unknown_label, holdout, …)
        ─▶ split filter, limit ─▶ Reshuffle ─▶ read the image ─▶ WorkItem (bytes, labels, given faces)
                                                  └─▶ rejects (missing_file, read_error)

Every label row of the chosen split is one input (`count_inputs`), whether it ends as an item or a
reject. A dataset's parser only knows its own files; partitions, limits, reading and counting are here.
"""

from __future__ import annotations

import io
import logging
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ..errors import UserError
from ..faces.priors import CROP
from ..keys import make_key
from ..records import AttributeValue, Reject, SourceFaces, SourceInfo
from ..rejection import Rejection
from ..stage import REJECTS, Counters, WorkItem, count_inputs, make_reject
from .files import exists, read_bytes

log = logging.getLogger("facecorpus")
Scalar = str | int | float | bool | None
#: `source.extra` key set on samples of a held-out partition that a recipe asked for by name (an
#: evaluation set); training exports leave such samples out
HELD_OUT = "held_out"


@dataclass
class LabelRow:
    """One labelled image as its dataset lists it. `image` is its name in the image store; `faces` are
    boxes/landmarks the dataset gives, in the image's own pixels ({box, score, landmarks5})."""

    image: str
    source_id: str
    split: str | None
    labels: dict[str, AttributeValue]
    extra: dict[str, Scalar] = field(default_factory=dict)
    faces: list[dict[str, Any]] | None = None
    faces_source: str | None = None
    #: the image bytes, when the rows come from an archive read front to back (a .tar.gz)
    data: bytes | None = None
    #: the image is a face crop (one large face): the face stage searches that scale only (faces/priors.py)
    face_crop: bool = False


def label(value: str | float | int | bool, raw: str) -> AttributeValue:
    """A dataset label (source 'label', confidence 1)."""
    return AttributeValue(value=value, source="label", confidence=1.0, raw=raw)


def is_unsafe(name: str) -> bool:
    """True for a path that could leave the image folder (absolute, '..', a drive letter)."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")


class RowSource(Protocol):
    """A dataset's parser: its settings and a `rows()` generator over its label files."""

    dataset: str
    licence: str | None
    images: str
    split: str
    holdout: list[str]
    limit: int | None

    def rows(self) -> Iterator[LabelRow | Reject]: ...

    def partition_name(self, split: str) -> str: ...


def reject(dataset: str, source_id: str, reason: str, detail: str, retryable: bool = False) -> Reject:
    return make_reject(None, "source", Rejection(reason, detail, retryable), source_id=source_id, dataset=dataset)


class ImageStore:
    """Reads images by name from a zip (in place, through its central directory) or from a folder.

    A zip whose entries all sit under one top folder (`img_align_celeba/000001.jpg`) is read with that
    folder as its root, so label files' bare names find them. Entries that would leave the archive
    ('../x', '/etc/x') are never read; they are counted (`source.unsafe_zip_entries`) and logged.
    """

    def __init__(self, images: str) -> None:
        self.images = images
        self.is_zip = images.lower().endswith(".zip")
        self._zip: zipfile.ZipFile | None = None
        self._names: set[str] = set()
        self._prefix = ""

    def _open_zip(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(FileSystems.open(self.images))
            names = self._zip.namelist()
            self._names = set(names)
            unsafe = [n for n in names if is_unsafe(n)]
            if unsafe:
                Counters("source").count("unsafe_zip_entries", len(unsafe))
                log.warning("%s holds %d unsafe entries (e.g. %r); they are ignored", self.images, len(unsafe), unsafe[0])
            tops = {n.split("/", 1)[0] for n in names if not is_unsafe(n)}
            if len(tops) == 1 and all("/" in n for n in names if not is_unsafe(n)):
                self._prefix = tops.pop() + "/"
        return self._zip

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when the store has no such file."""
        if is_unsafe(name):
            return None
        if self.is_zip:
            zf = self._open_zip()
            for member in (name, self._prefix + name):
                if member in self._names:
                    return zf.read(member)
            return None
        path = FileSystems.join(self.images, name)
        return read_bytes(path) if exists(path) else None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header, or None when it is not a readable image (the image stage
    then rejects it with the reason)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - any decoder failure means: no size; the image check words it
        return None


class _ParseRows(beam.DoFn):
    """The dataset's rows of the chosen split; rows of held-out partitions become `holdout` rejects."""

    def __init__(self, parser: RowSource) -> None:
        self.parser = parser

    def process(self, _unit: str) -> Iterator[Any]:
        p = self.parser
        counters = Counters("source")
        n = 0
        for row in p.rows():
            if isinstance(row, LabelRow):
                if p.split != "all" and row.split != p.split:
                    continue  # not part of this run's input
                if row.split in p.holdout and p.split != row.split:
                    row = reject(p.dataset, row.source_id, "holdout",
                                 f"{p.partition_name(row.split)} is an official test partition, held out from "
                                 f"training corpora (ask for it with split: {row.split} to build an evaluation set)")
            if isinstance(row, Reject):
                count_inputs()
                counters.rejected(row.reason)
                yield beam.pvalue.TaggedOutput(REJECTS, row)
                continue
            if p.limit is not None and n >= p.limit:
                return
            n += 1
            if row.split in p.holdout:
                row.extra[HELD_OUT] = True
            yield row


class _ReadImage(beam.DoFn):
    def __init__(self, parser: RowSource) -> None:
        self.parser = parser
        self._store: ImageStore | None = None

    def setup(self) -> None:
        self._store = ImageStore(self.parser.images)

    def teardown(self) -> None:
        if self._store is not None:
            self._store.close()

    def process(self, row: LabelRow) -> Iterator[Any]:
        count_inputs()
        counters = Counters("source")
        p = self.parser
        assert self._store is not None
        try:
            data = row.data if row.data is not None else self._store.read(row.image)
        except (zipfile.BadZipFile, OSError) as e:
            counters.rejected("read_error")
            yield beam.pvalue.TaggedOutput(REJECTS, reject(p.dataset, row.source_id, "read_error",
                                                           f"cannot read {row.image}: {e}", True))
            return
        if data is None:
            counters.rejected("missing_file")
            yield beam.pvalue.TaggedOutput(REJECTS, reject(
                p.dataset, row.source_id, "missing_file", f"{row.image} is listed in the labels but not in {p.images}"))
            return
        size = image_size(data) if row.faces else None
        given = None
        if row.faces and size is not None:
            given = SourceFaces(faces=row.faces, size=list(size), source=row.faces_source or p.dataset)
        counters.kept()
        yield WorkItem(
            key=make_key(p.dataset, row.source_id),
            source=SourceInfo(dataset=p.dataset, id=row.source_id, split=row.split, licence=p.licence, extra=row.extra),
            labels=row.labels,
            data=data,
            given_faces=given,
            face_size=CROP if row.face_crop else None,
        )


class ReadLabelledImages(beam.PTransform):
    """A labelled dataset's rows + images → WorkItems (bytes, labels, given faces) and source rejects."""

    def __init__(self, parser: RowSource) -> None:
        super().__init__()
        self.parser = parser

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        check = getattr(self.parser, "check", None)
        if check is not None:  # the dataset's own launcher-side checks (settings that cannot work, columns)
            check()
        if not exists(self.parser.images):
            raise UserError(f"{self.parser.dataset} images not found: {self.parser.images}")
        check_archive(self.parser.dataset, self.parser.images)
        parsed = (
            pbegin
            | "Dataset" >> beam.Create([self.parser.dataset])
            | "ParseLabels" >> beam.ParDo(_ParseRows(self.parser)).with_outputs(REJECTS, main="main")
        )
        read = (
            parsed["main"]
            | "Distribute" >> beam.Reshuffle()
            | "ReadImages" >> beam.ParDo(_ReadImage(self.parser)).with_outputs(REJECTS, main="main")
        )
        rejects = (parsed[REJECTS], read[REJECTS]) | "Rejects" >> beam.Flatten()
        return {"main": read["main"], "rejects": rejects}


def is_tar(path: str) -> bool:
    return path.lower().endswith((".tar", ".tar.gz", ".tgz"))


def check_archive(dataset: str, images: str) -> None:
    """One line before the run when `images` is a zip or tar that cannot be opened at all (not a zip,
    not gzip, no tar header); otherwise every row would fail alike, or the reader would stop mid-run.
    A zip's central directory is read (cheap, and needed anyway); a tar only up to its first header."""
    lower = images.lower()
    try:
        if lower.endswith(".zip"):
            with FileSystems.open(images) as f, zipfile.ZipFile(f):
                pass
        elif is_tar(images):
            with FileSystems.open(images) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
                tar.next()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
        kind = "zip" if lower.endswith(".zip") else "tar archive"
        raise UserError(f"{dataset} images: {images} is not a readable {kind} ({e})") from None


def text_lines(path: str) -> list[str]:
    """A label file's lines (UTF-8, a BOM tolerated, CRLF or LF)."""
    if not exists(path):
        raise UserError(f"label file not found: {path}")
    return read_bytes(path).decode("utf-8-sig", errors="replace").splitlines()


def base_name(path: str | None) -> str:
    """The last part of a path ('' for none: a setting not resolved yet)."""
    return posixpath.basename((path or "").rstrip("/"))
