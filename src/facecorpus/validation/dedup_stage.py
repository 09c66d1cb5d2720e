"""Stage 'dedup': the images checked, decide which go on — before any LLM call is paid for them.

    items ─▶ Park ──(key, sha256, pHash)──▶ exact / near duplicates, hold-out matches ─▶ verdicts
              │                                                                            │
              └──────────────(key → parked item)──── join by key ◀─────────────────────────┘
                                                        │
                            finished (resume)? drop · verdict? reject · else the item goes on

Only light records are grouped. The item itself waits either in a staging file under
`shards/_tmp/screen/` (local runners, whose GroupByKey holds everything in memory — the same choice
as the shard sink's `output.grouping`) or travels through the runner's shuffle (Dataflow). Its decoded
pixels, if it has any, are dropped while it waits (FinishImage decodes the stored JPEG after dedup when
the face stage needs pixels), so both ways give the same result.

Staging semantics (what a retried or killed bundle may rely on):
- each Park bundle appends its items to one file of its own, `park-<uuid>.pkl` (pickles back to back;
  each Parked names its file, offset and length), and closes it when the bundle finishes; a retried
  bundle writes a new file, and the failed attempt's file is never read (its outputs are discarded);
- nothing in the pipeline deletes a staging file: Decide may run again on the same element and must
  find it. The launcher removes the whole `shards/_tmp/` staging folders in one call once the pipeline
  has succeeded (`sinks.shards.remove_staging`); after a kill they stay until `--resume` reconciles the
  output (everything under `shards/_tmp/` is removed before the new attempt starts).
"""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ..output.layout import HASHES_DIR, SCREEN_DIR, SHARDS_DIR, TMP_DIR
from ..records import SourceInfo
from ..rejection import Rejection
from ..stage import REJECTS, Counters, WorkItem, make_reject
from ..storage import write_atomically
from .config import ValidationConfig
from .dedup import ExactDuplicates, HoldoutMatches, NearDuplicates, Verdict
from .holdout import ReadHoldout

STAGE = "dedup"


@dataclass
class Parked:
    """An item waiting for its verdict: its light facts, and the item or where in a staging file it is."""

    key: str
    sha256: str
    phash: str
    source: SourceInfo
    path: str | None = None
    offset: int = 0
    length: int = 0
    item: WorkItem | None = None


class Park(beam.DoFn):
    """WorkItem → (key, Parked); with staging, the item goes to a file and only its facts travel on.

    Each bundle's (key, sha256, pHash) are committed to `dedup_hashes/` before its items can go on, so a
    resume whose source skips finished inputs before reading them (LAION: the download) still knows
    the images they were.
    """

    def __init__(self, out_dir: str, staging: bool) -> None:
        self.out_dir = out_dir
        self.staging = staging
        self._hashes: list[str] = []
        self._file: Any = None
        self._path = ""
        self._written = 0

    def start_bundle(self) -> None:
        self._hashes = []
        self._file, self._path, self._written = None, "", 0

    def _stage(self, item: WorkItem) -> tuple[str, int, int]:
        """Append the item to this bundle's staging file: (path, offset, length)."""
        if self._file is None:
            self._path = FileSystems.join(self.out_dir, SHARDS_DIR, TMP_DIR, SCREEN_DIR, f"park-{uuid.uuid4().hex}.pkl")
            self._file = FileSystems.create(self._path)
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(data)
        offset, self._written = self._written, self._written + len(data)
        return self._path, offset, len(data)

    def finish_bundle(self) -> None:
        if self._file is not None:
            self._file.close()  # before any Decide reads it: those run after the grouping
            self._file = None
        if self._hashes:
            path = FileSystems.join(self.out_dir, HASHES_DIR, f"hashes-{uuid.uuid4().hex}.jsonl")
            write_atomically(path, ("\n".join(self._hashes) + "\n").encode())
            self._hashes = []

    def process(self, item: WorkItem, finished: Any = None) -> Iterator[tuple[str, Parked]]:
        assert item.image is not None, "the image stage runs before dedup"
        item.pixels = None  # `data` stays: a JPEG that must be re-encoded is decoded after dedup
        parked = Parked(key=item.key, sha256=item.image.sha256, phash=item.image.phash, source=item.source)
        self._hashes.append(json.dumps([item.key, item.image.sha256, item.image.phash]))
        if finished is not None and list(finished[item.key]):
            pass  # finished by an earlier attempt: only its hashes take part (it may be the one a duplicate keeps)
        elif self.staging:
            parked.path, parked.offset, parked.length = self._stage(item)
        else:
            parked.item = item
        yield item.key, parked


def _light(kv: tuple[str, Parked]) -> tuple[str, str, str]:
    _, p = kv
    return p.key, p.sha256, p.phash


def _pick_up(parked: Parked) -> WorkItem:
    if parked.item is not None:
        return parked.item
    assert parked.path is not None
    with FileSystems.open(parked.path) as f:
        f.seek(parked.offset)
        return pickle.loads(f.read(parked.length))


def _reject(p: Parked, reason: str, detail: str, keyed: bool = True) -> beam.pvalue.TaggedOutput:
    line = make_reject(None, STAGE, Rejection(reason, detail), source_id=p.source.id, dataset=p.source.dataset,
                       url=p.source.url, key=p.key if keyed else None)
    return beam.pvalue.TaggedOutput(REJECTS, line)


class Decide(beam.DoFn):
    """(key, {parked, verdicts}) → the item, a reject, or nothing (finished by an earlier attempt)."""

    def __init__(self) -> None:
        self._counters: Counters | None = None

    def process(self, element: tuple[str, dict[str, list]], finished: Any = None) -> Iterator[Any]:
        if self._counters is None:
            self._counters = Counters(STAGE)
        key, parts = element
        parked: list[Parked] = sorted(parts["parked"], key=lambda p: (p.source.dataset, p.source.id, p.sha256))
        if not parked:
            pass  # a verdict for an image that is not in this run
        elif finished is not None and list(finished[key]):
            Counters("resume").count("skipped", len(parked))
        else:
            yield from self._decide(key, parked, parts["verdicts"])

    def _decide(self, key: str, parked: list[Parked], verdicts: list[Verdict]) -> Iterator[Any]:
        assert self._counters is not None
        first, others = parked[0], parked[1:]
        for p in others:  # two inputs with one key would become one key twice in the shards
            self._counters.rejected("duplicate_key")
            # keyless: the key belongs to the input that keeps it
            yield _reject(p, "duplicate_key", f"another input ({first.source.dataset}:{first.source.id}) has the same "
                                              f"key {key}", keyed=False)
        if verdicts:
            v = min(verdicts)
            self._counters.rejected(v.reason)
            yield _reject(first, v.reason, v.detail)
        else:
            item = _pick_up(first)
            self._counters.kept()
            yield item


class Dedup(beam.PTransform):
    """PCollection[WorkItem] (images checked) → {'main': items that go on, 'rejects': duplicate/holdout rejects}.

    `finished`: PCollection[(key, kind)] of keys an earlier attempt finished (resume), or None.
    `recorded`: PCollection[(key, sha256, phash)] an earlier attempt committed to `dedup_hashes/`
    (resume): a source that skips finished inputs before reading them (LAION: the download) leaves them
    out of this run, yet a duplicate must still lose to them.
    """

    def __init__(
        self,
        cfg: ValidationConfig,
        out_dir: str,
        staging: bool,
        finished: beam.PCollection | None = None,
        recorded: beam.PCollection | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_dir = out_dir
        self.staging = staging
        self.finished = finished
        self.recorded = recorded

    def expand(self, items: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg = self.cfg
        side = {} if self.finished is None else {"finished": beam.pvalue.AsMultiMap(self.finished)}
        parked = items | "Park" >> beam.ParDo(Park(self.out_dir, self.staging), **side)
        light = parked | "Light" >> beam.Map(_light)
        if self.recorded is not None:
            light = (
                (light, self.recorded)
                | "WithRecorded" >> beam.Flatten()
                | "ByKey" >> beam.Map(lambda r: (r[0], (r[1], r[2])))
                | "OncePerKey" >> beam.CombinePerKey(min)  # a finished image read again is the same image
                | "Unkey" >> beam.Map(lambda kv: (kv[0], kv[1][0], kv[1][1]))
            )
        verdicts = []
        if cfg.dedup.exact:
            verdicts.append(light | "Exact" >> ExactDuplicates())
        if cfg.dedup.near:
            verdicts.append(light | "Near" >> NearDuplicates(cfg.dedup.max_distance))
        if cfg.holdout.lists:
            listed = items.pipeline | "HoldoutLists" >> ReadHoldout(cfg.holdout.lists)
            verdicts.append(light | "Holdout" >> HoldoutMatches(listed, cfg.holdout.max_distance))
        all_verdicts = (
            tuple(verdicts) | "AllVerdicts" >> beam.Flatten()
            if verdicts
            else items.pipeline | "NoVerdicts" >> beam.Create([])
        )
        decided = (
            {"parked": parked, "verdicts": all_verdicts}
            | "JoinVerdicts" >> beam.CoGroupByKey()
            | "Decide" >> beam.ParDo(Decide(), **side).with_outputs(REJECTS, main="main")
        )
        return {"main": decided["main"], "rejects": decided[REJECTS]}


def dedup_needed(cfg: ValidationConfig) -> bool:
    """True when dedup or hold-out needs every image's hashes before any item may go on."""
    return cfg.dedup.exact or cfg.dedup.near or bool(cfg.holdout.lists)
