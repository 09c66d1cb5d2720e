"""`facecorpus review DIR`: the command that builds the queue, opens the log and runs the UI (or `--summary`)."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # imported where used: `facecorpus --help` must not load the record models
    from .queue import QueueOptions, ReviewItem
    from .verdicts import VerdictLog


def _split(values: list[str] | None) -> tuple[str, ...]:
    """Repeatable options that also accept comma-separated lists."""
    return tuple(v.strip() for raw in values or [] for v in raw.split(",") if v.strip())


def default_reviewer() -> str:
    return os.environ.get("FACECORPUS_REVIEWER") or getpass.getuser()


def open_session(folder: Path, reviewer: str, opts: QueueOptions | None) -> tuple[list[ReviewItem], VerdictLog]:
    """The items to review and the reviewer's open log; opts None resumes the reviewer's last queue.

    The queue arguments are logged ('open' event), so reopening without sampling options gives the
    same queue back, and the UI starts at the first item this reviewer has not judged.
    """
    from .queue import QueueOptions, build_queue, load_items
    from .verdicts import VerdictLog, reviewer_states

    log = VerdictLog(folder, reviewer)
    try:
        for line in log.unreadable:
            typer.echo(f"warning: unreadable review line skipped: {line}", err=True)
        if opts is None and log.state.last_open_args:
            opts = QueueOptions.from_args(log.state.last_open_args)
            typer.echo(f"resuming {log.reviewer}'s last queue: {json.dumps(opts.to_args())}", err=True)
        opts = opts or QueueOptions()
        states, _ = reviewer_states(folder)
        flagged = {item for st in states.values() for (item, _t), v in st.verdicts.items() if v == "flag"}
        items = load_items(str(folder), build_queue(str(folder), opts, flagged), opts.categories)
        log.record("open", args=opts.to_args())
    except BaseException:
        log.close()
        raise
    return items, log


def review(
    out: Annotated[str, typer.Argument(help="A run's output folder (local).")],
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="Your name; verdicts go to DIR/reviews/NAME.jsonl. Default: $FACECORPUS_REVIEWER or your login.")] = None,
    sample: Annotated[int | None, typer.Option("--sample", min=1, help="Review N items drawn with --seed.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the draw and of the order (default 0).")] = None,
    stratify: Annotated[list[str] | None, typer.Option("--stratify", help="Draw evenly across the values of these fields, e.g. labels.race,qa.category.")] = None,
    flagged_first: Annotated[bool | None, typer.Option("--flagged-first/--no-flagged-first", help="Items the pipeline or a reviewer flagged come first.")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="Only samples with QA of these categories, and only those QA pairs.")] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="Filter FIELD=VALUE (VALUE may be A|B), e.g. source.split=val.")] = None,
    rejects: Annotated[bool | None, typer.Option("--rejects/--samples", help="Review rejected inputs instead of samples.")] = None,
    reason: Annotated[list[str] | None, typer.Option("--reason", help="With --rejects: only these reject reasons.")] = None,
    summary: Annotated[bool, typer.Option("--summary", help="Print acceptance rates and agreement instead of reviewing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --summary: print JSON.")] = False,
) -> None:
    """Sample and judge generated QA in the terminal; --summary reports acceptance and agreement."""
    from .queue import QueueOptions, local_dir

    folder = local_dir(out)
    if summary:
        from .summary import format_summary, review_summary

        result = review_summary(folder)
        typer.echo(json.dumps(result, indent=2) if as_json else format_summary(result))
        return
    given = (sample, seed, stratify, flagged_first, category, where, rejects, reason)
    opts = None if all(v is None for v in given) else QueueOptions(
        sample=sample, seed=seed or 0, stratify=_split(stratify), flagged_first=bool(flagged_first),
        categories=_split(category), where=tuple(where or ()), rejects=bool(rejects), reasons=_split(reason),
    )
    items, log = open_session(folder, reviewer or default_reviewer(), opts)
    try:
        from .app import ReviewApp

        ReviewApp(items, log).run()
    finally:
        log.close()
    typer.echo(f"verdicts saved in {log.path}")
