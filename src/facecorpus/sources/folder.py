"""Image folder: every image file under a folder (recursively) or matching a glob; local, gs:// or s3://."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam

from .. import progress
from ..errors import UserError
from ..keys import make_key
from ..records import SourceInfo
from ..rejection import Rejection
from ..stage import REJECTS, Counters, WorkItem, count_inputs, make_reject
from .config import FolderSource
from .files import list_files, read_bytes


def _relative(path: str, root: str) -> str:
    root = root.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else path.rsplit("/", 1)[-1]


class _ReadFile(beam.DoFn):
    def __init__(self, cfg: FolderSource) -> None:
        self.cfg = cfg

    def process(self, path: str) -> Iterator[Any]:
        count_inputs()
        rel = _relative(path, self.cfg.path)
        try:
            data = read_bytes(path)
        except OSError as e:
            Counters("source").rejected("read_error")
            yield beam.pvalue.TaggedOutput(
                REJECTS, make_reject(None, "source", Rejection("read_error", f"cannot read {path}: {e}", True), rel,
                                     self.cfg.dataset)
            )
            return
        Counters("source").kept()
        yield WorkItem(
            key=make_key(self.cfg.dataset, rel),
            source=SourceInfo(dataset=self.cfg.dataset, id=rel, split=self.cfg.split, licence=self.cfg.licence),
            data=data,
        )


class ReadFolder(beam.PTransform):
    def __init__(self, cfg: FolderSource) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        if "://" not in self.cfg.path and Path(self.cfg.path).is_file():
            raise UserError(f"folder source path {self.cfg.path} is a file; give the folder that holds the images "
                            f"(or a glob such as {Path(self.cfg.path).parent}/*.jpg)")
        files = list_files(self.cfg.path, self.cfg.extensions)
        if not files:
            raise UserError(f"no image files ({', '.join(self.cfg.extensions)}) found under {self.cfg.path}")
        if self.cfg.limit:
            files = files[: self.cfg.limit]
        progress.expect_inputs(len(files))
        read = (
            pbegin
            | "Files" >> beam.Create(files)
            | "Distribute" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(_ReadFile(self.cfg)).with_outputs(REJECTS, main="main")
        )
        return {"main": read["main"], "rejects": read[REJECTS]}
