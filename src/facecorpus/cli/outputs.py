"""The commands on a finished output folder: `validate`, `stats`, `finalize`; and `schema`, the record's
JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .app import print_summary


def validate(out: Annotated[str, typer.Argument(help="A run's output folder.")]) -> None:
    """Exit 0 iff every sample and file in the output is valid and the stats are consistent, and it
    holds at least one sample; an empty output is reported as empty (exit 1), not as a success."""
    from ..output.check import check_output

    rep = check_output(out)
    for note in rep.notes:
        typer.echo(f"note: {note}", err=True)
    for p in rep.problems:
        typer.echo(p, err=True)
    if not rep.ok:
        typer.echo(f"INVALID: {len(rep.problems)} problem(s) in {out}", err=True)
        raise typer.Exit(1)
    if rep.samples == 0:
        typer.echo(f"EMPTY: {out} is consistent but holds no samples ({rep.rejects} rejects; "
                   f"see facecorpus stats {out})", err=True)
        raise typer.Exit(1)
    typer.echo(f"valid: {rep.samples} samples in {rep.shards} shards, {rep.rejects} rejects")


def recorded_card_plots(out: str) -> bool:
    from ..output.run_info import read_run_info
    from ..output.run_info import recorded_card_plots as from_info

    return from_info(read_run_info(out) or {})


def recorded_recipe_yaml(out: str) -> str:
    from ..output.run_info import read_run_info
    from ..output.run_info import recorded_recipe_yaml as from_info

    return from_info(read_run_info(out) or {})


def stats(
    out: Annotated[str, typer.Argument(help="A run's output folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print stats.json as JSON.")] = False,
    write: Annotated[bool, typer.Option("--write", help="Recompute stats.json, index.json and README.md from the files.")] = False,
) -> None:
    """Counts, distributions and costs of an output."""
    from apache_beam.io.filesystems import FileSystems

    from ..output.layout import STATS_FILE
    from ..storage import read_text, require_filesystem

    path = FileSystems.join(require_filesystem(out), STATS_FILE)
    if not FileSystems.exists(path):
        raise UserError(f"{out} has no stats.json: is it a facecorpus output?")
    current = json.loads(read_text(path))
    if write:
        from ..sinks.finalize import finalize

        inputs = current.get("inputs") if current.get("inputs_counted_by") == "run" else None
        current = finalize(out, inputs, current.get("run", {}), recorded_recipe_yaml(out), llm=current.get("llm"),
                           plots=recorded_card_plots(out))
        typer.echo(f"rewrote stats.json, index.json, README.md and plots/ in {out}", err=True)
    if as_json:
        typer.echo(json.dumps(current, indent=2))
        return
    print_summary(current, out)
    for attr, dist in current["labels"].items():
        typer.echo(f"{attr}: " + ", ".join(f"{k} {v}" for k, v in dist.items()))
    typer.echo("QA per category: " + ", ".join(f"{k} {v}" for k, v in current["qa_by_category"].items()))
    llm = current.get("llm", {})
    typer.echo(
        f"LLM: {llm.get('requests', 0)} requests, {llm.get('cache_hits', 0)} cache hits, "
        f"{llm.get('prompt_tokens', 0)}+{llm.get('completion_tokens', 0)} tokens, ${llm.get('cost_usd', 0):.4f}"
    )


def finalize(
    out: Annotated[str, typer.Argument(help="A finished job's output folder (local, gs://, s3://).")],
    inputs: Annotated[int | None, typer.Option("--inputs", min=0, help="The job's `facecorpus/inputs` counter (Dataflow: "
                                                 "the job page's custom counters); without it inputs are not proven.")] = None,
) -> None:
    """Write index.json, stats.json and the card of a job that ran detached (streamed, bounded memory)."""
    from ..output.run_info import read_run_info
    from ..sinks.finalize import finalize_recorded
    from ..storage import require_filesystem

    info = read_run_info(require_filesystem(out))
    if info is None:
        raise UserError(f"{out} has no run.json: is it a facecorpus output?")
    stats = finalize_recorded(out, info, inputs)
    print_summary(stats, out)
    if stats["invariant_ok"] is False:
        typer.echo(f"INVALID: inputs {stats['inputs']} != written {stats['written']} + rejected {stats['rejected']}", err=True)
        raise typer.Exit(1)
    if inputs is None:
        typer.echo("note: inputs counted from the outputs (pass --inputs N from the job's counter to prove none was lost)",
                   err=True)


def schema(
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON Schema here (default: print).")] = None,
    check: Annotated[Path | None, typer.Option("--check", help="Exit 1 if this file differs from the model.")] = None,
) -> None:
    """JSON Schema of the sample record, generated from the pydantic model."""
    from ..records import sample_json_schema_text

    text = sample_json_schema_text()
    if check is not None:
        if not check.is_file() or check.read_text(encoding="utf-8") != text:
            typer.echo(f"{check} is stale: run `make schema`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{check} is up to date")
        return
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")
