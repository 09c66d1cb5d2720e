"""What earlier attempts finished, as Beam transforms of a resumed run (output/resume.py plans it):
the finished keys read from the manifests and reject lines (a side input looked up per key, never
collected on one machine), the dedup hashes earlier attempts saw, and the filters that drop finished
inputs and the reject lines a resumed run emits again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from ..records import Reject
from .readers import iter_manifest_batches
from .resume import OutputState


def _manifest_keys(path: str) -> Iterator[tuple[str, str]]:
    for batch in iter_manifest_batches([path], ["key"]):
        for key in batch.column("key").to_pylist():
            yield key, "written"


def _rejected_keys(line: str) -> Iterator[tuple[str, str]]:
    if line.strip():
        key = json.loads(line).get("key")
        if key:
            yield key, "rejected"


def reject_identity(r: Reject) -> str:
    """What makes two keyless reject lines the same event (their detail names the file and line)."""
    return json.dumps([r.dataset, r.source_id, r.stage, r.reason, r.detail])


def _keyless_identities(line: str) -> Iterator[tuple[str, int]]:
    if line.strip():
        r = Reject.model_validate_json(line)
        if r.key is None:
            yield reject_identity(r), 1


class ReadFinishedKeys(beam.PTransform):
    """PBegin → PCollection[(key, 'written' | 'rejected')] from the manifests and reject files of `state`."""

    def __init__(self, state: OutputState) -> None:
        super().__init__()
        self.state = state

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        written = (
            pbegin
            | "Manifests" >> beam.Create(self.state.manifests)
            | "ManifestKeys" >> beam.FlatMap(_manifest_keys)
        )
        if not self.state.reject_files:
            return written
        rejected = (
            pbegin
            | "RejectFiles" >> beam.Create(self.state.reject_files)
            | "RejectLines" >> beam.io.ReadAllFromText()
            | "RejectKeys" >> beam.FlatMap(_rejected_keys)
        )
        return (written, rejected) | "Finished" >> beam.Flatten()


def _recorded_hashes(line: str) -> Iterator[tuple[str, str, str]]:
    if line.strip():
        key, sha, phash = json.loads(line)
        yield key, sha, phash


class ReadFinishedHashes(beam.PTransform):
    """PBegin → PCollection[(key, sha256, phash)]: what earlier attempts' dedup saw (`dedup_hashes/`)."""

    def __init__(self, state: OutputState) -> None:
        super().__init__()
        self.state = state

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "HashFiles" >> beam.Create(self.state.hash_files)
            | "HashLines" >> beam.io.ReadAllFromText()
            | "Hashes" >> beam.FlatMap(_recorded_hashes)
        )


class SkipFinished(beam.DoFn):
    """Drops items whose key is finished (side input `finished`: a multimap looked up per key)."""

    def process(self, item: Any, finished: Any) -> Iterator[Any]:
        from ..stage import Counters

        if list(finished[item.key]):
            Counters("resume").count("skipped")
        else:
            yield item


def _emit_new(group: tuple[str, dict[str, list]]) -> Iterator[Reject]:
    _, parts = group
    yield from parts["new"][len(parts["old"]) :]


class DropRecordedRejects(beam.PTransform):
    """Rejects a resumed run emits again for inputs already recorded (it re-reads sources, and re-checks
    images when dedup needs their hashes) are dropped: keyed ones whose key is finished, keyless ones
    as many times as the recorded files already hold them."""

    def __init__(self, state: OutputState, finished: beam.PCollection) -> None:
        super().__init__()
        self.state = state
        self.finished = finished

    def expand(self, rejects: beam.PCollection) -> beam.PCollection:
        keyed, keyless = rejects | "KeyedOrNot" >> beam.Partition(lambda r, _n: 0 if r.key else 1, 2)
        new_keyed = keyed | "SkipFinishedKeys" >> beam.ParDo(
            _SkipFinishedReject(), finished=beam.pvalue.AsMultiMap(self.finished)
        )
        old = (
            keyless.pipeline
            | "RecordedRejectFiles" >> beam.Create(self.state.reject_files)
            | "RecordedLines" >> beam.io.ReadAllFromText()
            | "RecordedKeyless" >> beam.FlatMap(_keyless_identities)
        )
        new_keyless = (
            {"new": keyless | "Identity" >> beam.Map(lambda r: (reject_identity(r), r)), "old": old}
            | "JoinRecorded" >> beam.CoGroupByKey()
            | "EmitNew" >> beam.FlatMap(_emit_new)
        )
        return (new_keyed, new_keyless) | "NewRejects" >> beam.Flatten()


class _SkipFinishedReject(beam.DoFn):
    def process(self, reject: Reject, finished: Any) -> Iterator[Reject]:
        if not list(finished[reject.key]):
            yield reject
