"""WebDataset tar shards, e.g. img2dataset's output: KEY.jpg + KEY.txt (alt-text) + KEY.json (metadata)."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ..errors import UserError
from ..keys import make_key
from ..records import SourceInfo
from ..rejection import Rejection
from ..stage import REJECTS, Counters, WorkItem, count_inputs, make_reject
from .config import WebDatasetSource
from .files import list_files

_SCALARS = (str, int, float, bool, type(None))


def split_member(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is everything before the first dot of the file name."""
    directory, _, base = name.rpartition("/")
    key, _, ext = base.partition(".")
    return (f"{directory}/{key}" if directory else key), ext.lower()


def iter_tar_samples(fileobj: Any) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) for consecutive members sharing a key, streaming (no seeking)."""
    current: str | None = None
    parts: dict[str, bytes] = {}
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = split_member(member.name)
            if current is not None and key != current:
                yield current, parts
                parts = {}
            current = key
            f = tar.extractfile(member)
            parts[ext] = f.read() if f else b""
    if current is not None:
        yield current, parts


class _ReadShard(beam.DoFn):
    def __init__(self, cfg: WebDatasetSource) -> None:
        self.cfg = cfg

    def process(self, shard: str) -> Iterator[Any]:
        counters = Counters("source")
        shard_name = shard.rstrip("/").rsplit("/", 1)[-1]
        exts = [e.lower().lstrip(".") for e in self.cfg.image_extensions]
        n = 0
        try:
            with FileSystems.open(shard) as f:
                for key, parts in iter_tar_samples(f):
                    if self.cfg.limit and n >= self.cfg.limit:
                        return
                    n += 1
                    count_inputs()
                    sid = f"{shard_name}/{key}"
                    image_ext = next((e for e in exts if e in parts), None)
                    meta: dict[str, Any] = {}
                    if "json" in parts:
                        try:
                            meta = json.loads(parts["json"].decode("utf-8"))
                        except (UnicodeDecodeError, json.JSONDecodeError):
                            meta = {}
                    if image_ext is None:
                        counters.rejected("no_image_member")
                        yield beam.pvalue.TaggedOutput(REJECTS, make_reject(
                            None, "source", Rejection("no_image_member",
                            f"sample {key} in {shard_name} has no image member ({', '.join(sorted(parts))})"),
                            sid, self.cfg.dataset, meta.get("url") if isinstance(meta.get("url"), str) else None))
                        continue
                    text = parts["txt"].decode("utf-8", errors="replace") if "txt" in parts else None
                    extra = {k: v for k, v in meta.items() if isinstance(v, _SCALARS) and k not in ("url", "caption")}
                    counters.kept()
                    yield WorkItem(
                        key=make_key(self.cfg.dataset, sid),
                        source=SourceInfo(
                            dataset=self.cfg.dataset, id=sid, split=self.cfg.split,
                            url=meta.get("url") if isinstance(meta.get("url"), str) else None,
                            licence=self.cfg.licence or (meta.get("LICENSE") if isinstance(meta.get("LICENSE"), str) else None),
                            text=text, extra=extra,
                        ),
                        data=parts[image_ext],
                    )
        except (tarfile.TarError, OSError, EOFError) as e:
            count_inputs()
            counters.rejected("corrupt_shard")
            yield beam.pvalue.TaggedOutput(REJECTS, make_reject(
                None, "source", Rejection("corrupt_shard",
                f"{shard_name} stops being a readable tar after {n} samples: {type(e).__name__}: {e}"),
                f"{shard_name}#after{n}", self.cfg.dataset))


class ReadWebDataset(beam.PTransform):
    def __init__(self, cfg: WebDatasetSource) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        path = self.cfg.path
        shards = [path] if path.endswith(".tar") and FileSystems.exists(path) else list_files(path, [".tar"])
        if not shards:
            raise UserError(f"no .tar shards found at {path}")
        read = (
            pbegin
            | "Shards" >> beam.Create(shards)
            | "DistributeShards" >> beam.Reshuffle()
            | "ReadShards" >> beam.ParDo(_ReadShard(self.cfg)).with_outputs(REJECTS, main="main")
        )
        # no Reshuffle of the samples: local runners would buffer every image; parallelism is per shard
        return {"main": read["main"], "rejects": read[REJECTS]}
