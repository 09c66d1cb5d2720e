"""The end-of-run files — index.json, stats.json, README.md and its figures — from what is on storage,
read as streams: manifest files a column batch at a time (pyarrow), reject files a line at a time,
shard sizes from one listing. Memory is bounded by the summaries (output/summaries.py), not by the
number of samples or rejects, so the launcher of a 50M-URL run finishes in the memory of a small one.

`finalize(out, …)` is what `facecorpus run` does after the job, `facecorpus stats --write` redoes,
and `facecorpus finalize DIR` runs for a job that was launched detached. Counts come from the outputs
themselves, not from memory; only `inputs` comes from the run's Beam counter (the one number the
outputs cannot tell).

It lives with the sinks, not in output/: the card it writes shows the reviewers' summary (review/),
which reads the folder through output/'s readers — so the writer of the end files sits above both.
"""

from __future__ import annotations

import json
from typing import Any

from apache_beam.io.filesystems import FileSystems

from ..output.layout import INDEX_FILE, SHARDS_DIR, STATS_FILE, manifest_files, name_of, reject_files
from ..output.summaries import WrittenSummary, stats_from, summarize_rejects, summarize_written
from ..storage import match_sizes, write_text


def index_of(shards: list[tuple[str, int]], written: WrittenSummary, name: str, shards_dir: str) -> dict[str, Any]:
    """index.json in the `wids` shard-index format; urls relative to the output folder."""
    shardlist = [{"url": f"{shards_dir}/{name_of(path)}", "nsamples": written.per_shard.get(name_of(path), 0),
                  "filesize": size}
                 for path, size in shards]
    return {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": name, "shardlist": shardlist}


def write_card(out: str, stats: dict[str, Any], recipe_yaml: str, plots: bool = True,
               written: WrittenSummary | None = None) -> None:
    """The dataset card README.md and (with `plots`) its figures (plots/*.png): see `sinks.card`. `written`:
    the manifest's WrittenSummary when the caller has one."""
    from .card import write_card_files

    write_card_files(out, stats, recipe_yaml, plots, written)


def finalize(out: str, inputs: int | None, run: dict[str, Any], recipe_yaml: str, llm: dict[str, Any] | None = None,
             name: str | None = None, plots: bool = True) -> dict[str, Any]:
    """Write index.json, stats.json and the card of `out` from its files; returns the stats.

    `run` is stats.json's `run` section (its `prompt_sets` are filled in from the manifests).
    """
    written = summarize_written(manifest_files(out))
    rejects = summarize_rejects(reject_files(out))
    shards = match_sizes(FileSystems.join(out, SHARDS_DIR, "*.tar"))
    index = index_of(shards, written, name or run.get("recipe", "facecorpus"), SHARDS_DIR)
    write_text(FileSystems.join(out, INDEX_FILE), json.dumps(index, indent=1))
    run = {**run, "prompt_sets": sorted(written.prompt_sets)}
    stats = stats_from(written, rejects, inputs, run, llm)
    write_text(FileSystems.join(out, STATS_FILE), json.dumps(stats, indent=2, sort_keys=False))
    write_card(out, stats, recipe_yaml, plots, written)
    return stats
