"""End-of-run files, derived from what was actually written: stats.json, index.json, the dataset card.

Counts come from the outputs themselves (manifest rows, reject lines), not from memory, so
`facecorpus stats --write` can regenerate them from a finished output at any time. Only `inputs`
comes from the run's Beam counter (the one number the outputs cannot tell).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ..records import Reject
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


def compute_stats(out: str, inputs: int | None, run: dict[str, Any], llm: dict[str, Any] | None = None) -> dict[str, Any]:
    """stats.json content from the outputs on storage (plus the run's input count), streamed."""
    from .summaries import stats_from, summarize_rejects, summarize_written

    return stats_from(summarize_written(manifest_files(out)), summarize_rejects(reject_files(out)), inputs, run, llm)


def write_stats(out: str, stats: dict[str, Any]) -> None:
    write_text(FileSystems.join(out, STATS_FILE), json.dumps(stats, indent=2, sort_keys=False))


def write_card(out: str, stats: dict[str, Any], recipe_yaml: str, plots: bool = True, written: Any = None) -> None:
    """The dataset card README.md and (with `plots`) its figures (plots/*.png): see `sinks.card`. `written`:
    the manifest's WrittenSummary when the caller has one."""
    from .card import write_card_files

    write_card_files(out, stats, recipe_yaml, plots, written)
