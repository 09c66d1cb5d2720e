"""End-of-run files, derived from what was actually written: stats.json, index.json, the dataset card.

Counts come from the outputs themselves (manifest rows, reject lines), not from memory, so
`facecorpus stats --write` can regenerate them from a finished output at any time. Only `inputs`
comes from the run's Beam counter (the one number the outputs cannot tell).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ..records import Reject
from ..validation.counts import validation_counts
from .annotation_agreement import agreement
from .manifest import MANIFEST_SCHEMA
from .shards import MANIFEST_DIR, SHARDS_DIR

REJECTS_DIR = "rejects"
STATS_FILE = "stats.json"
INDEX_FILE = "index.json"
RUN_FILE = "run.json"
CARD_FILE = "README.md"
#: the card's figures (sinks/plots.py draws them)
PLOTS_DIR = "plots"


def match_paths(pattern: str) -> list[str]:
    """Sorted paths a FileSystems glob matches (local, gs://, s3://); a missing folder matches nothing."""
    try:
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception:  # noqa: BLE001 - a missing folder matches nothing
        return []


def file_size(path: str) -> int:
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


def read_text(path: str) -> str:
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")


def write_text(path: str, text: str) -> None:
    """Write aside, then rename into place: a run killed mid-write never leaves half a stats.json."""
    from ..validation.resume import write_atomically

    write_atomically(path, text.encode("utf-8"))


def manifest_files(out: str) -> list[str]:
    return match_paths(FileSystems.join(out, MANIFEST_DIR, "*.parquet"))


def shard_files(out: str) -> list[str]:
    return match_paths(FileSystems.join(out, SHARDS_DIR, "*.tar"))


def reject_files(out: str) -> list[str]:
    return match_paths(FileSystems.join(out, REJECTS_DIR, "*.jsonl"))


def read_manifest(out: str) -> pa.Table:
    tables = []
    for path in manifest_files(out):
        with FileSystems.open(path) as f:
            tables.append(pq.read_table(pa.BufferReader(f.read())))
    if not tables:
        return MANIFEST_SCHEMA.empty_table()
    return pa.concat_tables(tables, promote_options="default")


def iter_rejects(out: str) -> Iterator[tuple[str, int, str]]:
    """(file, line number, raw line) for every non-empty line of rejects/*.jsonl."""
    for path in reject_files(out):
        for i, line in enumerate(read_text(path).splitlines(), start=1):
            if line.strip():
                yield path, i, line


def load_rejects(out: str) -> list[Reject]:
    return [Reject.model_validate_json(line) for _, _, line in iter_rejects(out)]


def write_index(out: str, manifest: pa.Table, name: str) -> dict[str, Any]:
    """index.json in the `wids` shard-index format; urls relative to the output folder."""
    counts = Counter(manifest.column("shard").to_pylist()) if manifest.num_rows else Counter()
    shardlist = []
    for path in shard_files(out):
        shard = path.rsplit("/", 1)[-1]
        size = file_size(path)
        shardlist.append({"url": f"{SHARDS_DIR}/{shard}", "nsamples": counts.get(shard, 0), "filesize": size})
    index = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": name, "shardlist": shardlist}
    write_text(FileSystems.join(out, INDEX_FILE), json.dumps(index, indent=1))
    return index


def _distribution(values: list[Any]) -> dict[str, int]:
    return dict(sorted(Counter("unknown" if v is None else str(v) for v in values).items()))


def attribute_label_counts(labels_json: list[str | None]) -> dict[str, dict[str, int]]:
    """{attribute: {value: samples}} over every dataset label but age, gender and race (those are in `labels`)."""
    counts: dict[str, Counter] = {}
    for text in labels_json:
        for name, value in (json.loads(text) if text else {}).items():
            if name in ("age", "gender", "race"):
                continue
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            counts.setdefault(name, Counter())[shown] += 1
    return {name: dict(sorted(c.items())) for name, c in sorted(counts.items())}


def licence_counts(datasets: list[str | None], licences: list[str | None]) -> dict[str, dict[str, int]]:
    """{dataset: {licence as recorded on its samples: samples}} (a web source may hold many)."""
    counts: dict[str, Counter] = {}
    for dataset, licence in zip(datasets, licences, strict=True):
        counts.setdefault(dataset or "unknown", Counter())[licence or "unknown"] += 1
    return {d: dict(c.most_common()) for d, c in sorted(counts.items())}


def label_qa_counts(answer_keys: list[list[str] | None]) -> dict[str, dict[str, int]]:
    """{category: {short answer: pairs}} of label-derived pairs: MCQ letters, yes/no (counts are not shown)."""
    counts: dict[str, Counter] = {}
    for keys in answer_keys:
        for entry in keys or []:
            category, _, key = entry.partition("=")
            if category in ("attribute_mcq", "attribute_yes_no"):
                counts.setdefault(category, Counter())[key] += 1
    return {c: dict(sorted(v.items())) for c, v in sorted(counts.items())}


def compute_stats(out: str, inputs: int | None, run: dict[str, Any], llm: dict[str, Any] | None = None) -> dict[str, Any]:
    """stats.json content from the outputs on disk (plus the run's input count)."""
    manifest = read_manifest(out)
    rejects = load_rejects(out)
    written = manifest.num_rows
    rejected = len(rejects)
    by_stage: dict[str, dict[str, int]] = {}
    for r in rejects:
        stage = by_stage.setdefault(r.stage, {})
        stage[r.reason] = stage.get(r.reason, 0) + 1
    col = manifest.to_pydict() if written else {name: [] for name in MANIFEST_SCHEMA.names}
    cats = Counter(c for row in col["categories"] for c in row)
    n_qa = sum(col["n_qa"])
    stats: dict[str, Any] = {
        "inputs": inputs if inputs is not None else written + rejected,
        "inputs_counted_by": "run" if inputs is not None else "outputs",
        "written": written,
        "rejected": rejected,
        "by_stage": {k: dict(sorted(v.items())) for k, v in sorted(by_stage.items())},
        "by_reason": dict(sorted(Counter(r.reason for r in rejects).items())),
        "retryable_rejects": sum(1 for r in rejects if r.retryable),
        "retryable_by_reason": dict(sorted(Counter(r.reason for r in rejects if r.retryable).items())),
        "shards": len(set(col["shard"])),
        "qa_pairs": n_qa,
        "qa_by_category": dict(sorted(cats.items())),
        "by_source": _distribution(col["source_dataset"]),
        "licences": licence_counts(col["source_dataset"], col["licence"]),
        "by_generator": _distribution(col["generator"]),
        "labels": {
            "age": _distribution(col["label_age"]),
            "gender": _distribution(col["label_gender"]),
            "race": _distribution(col["label_race"]),
        },
        "attribute_labels": attribute_label_counts(col.get("labels_json", [])),
        "label_qa": label_qa_counts(col.get("answer_keys", [])),
        "annotation_agreement": agreement(col.get("annotation_pairs", [])),
        "faces_per_sample": _distribution(col["n_faces"]),
        "llm": llm
        or {
            "requests": 0,
            "cache_hits": 0,
            "prompt_tokens": int(sum(col["prompt_tokens"])),
            "completion_tokens": int(sum(col["completion_tokens"])),
            "cost_usd": round(float(sum(col["cost_usd"])), 6),
        },
        "validation": validation_counts(rejects, col["flags"]),
        "run": run,
    }
    stats["invariant_ok"] = stats["inputs"] == written + rejected
    return stats


def write_stats(out: str, stats: dict[str, Any]) -> None:
    write_text(FileSystems.join(out, STATS_FILE), json.dumps(stats, indent=2, sort_keys=False))


def write_card(out: str, stats: dict[str, Any], recipe_yaml: str, plots: bool = True) -> None:
    """The dataset card README.md and (with `plots`) its figures (plots/*.png): see `sinks.card`."""
    from .card import write_card_files

    write_card_files(out, stats, recipe_yaml, plots)
