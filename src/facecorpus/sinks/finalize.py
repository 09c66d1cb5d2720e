"""The end-of-run files — index.json, stats.json, README.md and its figures — from what is on storage,
read as streams: manifest files a column batch at a time (pyarrow), reject files a line at a time,
shard sizes from one listing. Memory is bounded by the summaries (output/summaries.py), not by the
number of samples or rejects, so the launcher of a 50M-URL run finishes in the memory of a small one.
Counts come from the outputs themselves; only `inputs` comes from the run's Beam counter (the one
number the outputs cannot tell) and the LLM's spend from its counters and ledger, when the launcher
has them.

Three ways in, one result:
- `finalize(out, …)`: what `facecorpus run` does after the job and `facecorpus stats --write` redoes;
- `finalize_recorded(out, info)`: a job that finished without its launcher, from what run.json
  recorded (`facecorpus finalize DIR`);
- `FinalizeInJob`: the same inside the Beam job of a detached run (a Flex Template finishes by
  itself) — once the shards and rejects are written, every manifest and reject file is summarized in
  parallel, the summaries merged by a combiner (`MergeSummaries`), and the end files written from
  them by `finalize_recorded`, as `facecorpus finalize DIR` would.

It lives with the sinks, not in output/: the card it writes shows the reviewers' summary (review/),
which reads the folder through output/'s readers — so the writer of the end files sits above both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ..output.layout import INDEX_FILE, SHARDS_DIR, STATS_FILE, manifest_files, name_of, reject_files
from ..output.run_info import read_run_info, recorded_card_plots, recorded_recipe_yaml, stats_run_section
from ..output.summaries import RejectSummary, WrittenSummary, stats_from, summarize_rejects, summarize_written
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
             name: str | None = None, plots: bool = True,
             summaries: tuple[WrittenSummary, RejectSummary] | None = None) -> dict[str, Any]:
    """Write index.json, stats.json and the card of `out` from its files; returns the stats.

    `run` is stats.json's `run` section (its `prompt_sets` are filled in from the manifests).
    `summaries`: the manifests' and reject files' summaries when the caller made them (the job's
    combiner); else they are read here, streamed.
    """
    if summaries is None:
        summaries = summarize_written(manifest_files(out)), summarize_rejects(reject_files(out))
    written, rejects = summaries
    shards = match_sizes(FileSystems.join(out, SHARDS_DIR, "*.tar"))
    index = index_of(shards, written, name or run.get("recipe", "facecorpus"), SHARDS_DIR)
    write_text(FileSystems.join(out, INDEX_FILE), json.dumps(index, indent=1))
    run = {**run, "prompt_sets": sorted(written.prompt_sets)}
    stats = stats_from(written, rejects, inputs, run, llm)
    write_text(FileSystems.join(out, STATS_FILE), json.dumps(stats, indent=2, sort_keys=False))
    write_card(out, stats, recipe_yaml, plots, written)
    return stats


def finalize_recorded(out: str, info: dict[str, Any], inputs: int | None = None,
                      summaries: tuple[WrittenSummary, RejectSummary] | None = None) -> dict[str, Any]:
    """`finalize` of a job that finished without its launcher, from its run.json `info`: its staging
    files are removed (the job is over: nothing reads them), then the end files written with the recipe,
    name and figures setting it recorded. `inputs`: the job's counter, when known."""
    from .shards import remove_staging

    remove_staging(out)
    return finalize(out, inputs, stats_run_section(info), recorded_recipe_yaml(info), name=info.get("recipe"),
                    plots=recorded_card_plots(info), summaries=summaries)


# -------------------------------------------------------------------------------------------- in the job


class MergeSummaries(beam.CombineFn):
    """(WrittenSummary, RejectSummary) parts → their sum. Accumulators are such pairs, and merge."""

    def create_accumulator(self) -> tuple[WrittenSummary, RejectSummary]:
        return WrittenSummary(), RejectSummary()

    def add_input(self, acc: tuple[WrittenSummary, RejectSummary],
                  part: tuple[WrittenSummary, RejectSummary]) -> tuple[WrittenSummary, RejectSummary]:
        acc[0].merge(part[0])
        acc[1].merge(part[1])
        return acc

    def merge_accumulators(self, accs: Any) -> tuple[WrittenSummary, RejectSummary]:
        total = self.create_accumulator()
        for acc in accs:
            self.add_input(total, acc)
        return total

    def extract_output(self, acc: tuple[WrittenSummary, RejectSummary]) -> tuple[WrittenSummary, RejectSummary]:
        return acc


def _output_files(out: str, *_written: Any) -> Iterator[tuple[str, str]]:
    """('manifest' | 'rejects', path) for every such file of `out`, every attempt's (listed once the
    writes are done: the side inputs `_written` are their results)."""
    yield from (("manifest", p) for p in manifest_files(out))
    yield from (("rejects", p) for p in reject_files(out))


def _summarize_file(kind_path: tuple[str, str]) -> tuple[WrittenSummary, RejectSummary]:
    kind, path = kind_path
    if kind == "manifest":
        return summarize_written([path]), RejectSummary()
    return WrittenSummary(), summarize_rejects([path])


def _write_end_files(summaries: tuple[WrittenSummary, RejectSummary], out: str) -> str:
    info = read_run_info(out) or {}
    stats = finalize_recorded(out, info, summaries=summaries)
    return f"{out}: {stats['written']} written, {stats['rejected']} rejected"


class FinalizeInJob(beam.PTransform):
    """(the shard writer's output, the reject writer's output) → index.json, stats.json and the card of
    `out`, written by the job once both are complete; returns a one-line PCollection saying so."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def expand(self, written: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        shards, rejects = written
        return (
            shards.pipeline
            | "Output" >> beam.Create([self.out])
            | "ListFiles" >> beam.FlatMap(_output_files, beam.pvalue.AsList(shards), beam.pvalue.AsList(rejects))
            | "SpreadFiles" >> beam.Reshuffle()
            | "SummarizeFiles" >> beam.Map(_summarize_file)
            | "MergeSummaries" >> beam.CombineGlobally(MergeSummaries())
            | "WriteEndFiles" >> beam.Map(_write_end_files, self.out)
        )
