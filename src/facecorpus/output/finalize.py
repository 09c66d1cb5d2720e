"""The end-of-run files — index.json, stats.json, README.md and its figures — from what is on storage,
read as streams: manifest files a column batch at a time (pyarrow), reject files a line at a time,
shard sizes from one listing. Memory is bounded by the summaries (sinks/summaries.py), not by the
number of samples or rejects, so the launcher of a 50M-URL run finishes in the memory of a small one.

`finalize(out, …)` is what `facecorpus run` does after the job, `facecorpus stats --write` redoes,
and `facecorpus finalize DIR` runs for a job that was launched detached.
"""

from __future__ import annotations

import json
from typing import Any

from apache_beam.io.filesystems import FileSystems

from ..sinks.summaries import WrittenSummary, stats_from, summarize_rejects, summarize_written


def _listing(pattern: str) -> list[tuple[str, int]]:
    """(path, size) of every file a FileSystems glob matches, sorted; nothing for a missing folder."""
    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001 - a missing folder matches nothing
        return []
    return sorted((m.path, m.size_in_bytes) for m in found)


def index_of(shards: list[tuple[str, int]], written: WrittenSummary, name: str, shards_dir: str) -> dict[str, Any]:
    """index.json in the `wids` shard-index format; urls relative to the output folder."""
    shardlist = [{"url": f"{shards_dir}/{path.rsplit('/', 1)[-1]}",
                  "nsamples": written.per_shard.get(path.rsplit("/", 1)[-1], 0), "filesize": size}
                 for path, size in shards]
    return {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": name, "shardlist": shardlist}


def finalize(out: str, inputs: int | None, run: dict[str, Any], recipe_yaml: str, llm: dict[str, Any] | None = None,
             name: str | None = None, plots: bool = True) -> dict[str, Any]:
    """Write index.json, stats.json and the card of `out` from its files; returns the stats.

    `run` is stats.json's `run` section (its `prompt_sets` are filled in from the manifests).
    """
    from ..sinks.run_files import INDEX_FILE, REJECTS_DIR, STATS_FILE, write_card, write_text
    from ..sinks.shards import MANIFEST_DIR, SHARDS_DIR

    written = summarize_written([p for p, _ in _listing(FileSystems.join(out, MANIFEST_DIR, "*.parquet"))])
    rejects = summarize_rejects([p for p, _ in _listing(FileSystems.join(out, REJECTS_DIR, "*.jsonl"))])
    shards = _listing(FileSystems.join(out, SHARDS_DIR, "*.tar"))
    index = index_of(shards, written, name or run.get("recipe", "facecorpus"), SHARDS_DIR)
    write_text(FileSystems.join(out, INDEX_FILE), json.dumps(index, indent=1))
    run = {**run, "prompt_sets": sorted(written.prompt_sets)}
    stats = stats_from(written, rejects, inputs, run, llm)
    write_text(FileSystems.join(out, STATS_FILE), json.dumps(stats, indent=2, sort_keys=False))
    write_card(out, stats, recipe_yaml, plots, written)
    return stats
