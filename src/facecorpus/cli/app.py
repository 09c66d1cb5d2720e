"""The `facecorpus` command's Typer app and what every command shares: the global options, the log
set-up, the one-line run summary. The commands register on `app` in their own modules (runs.py,
outputs.py, and each area's `cli.py`); main.py puts them together in the order `--help` lists them.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain click help: rendering it with rich imports rich and markdown-it, more than the rest of start-up
    rich_markup_mode=None,
    help="Build face image-text corpora (WebDataset shards) with Apache Beam.",
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"facecorpus {__version__}")
        raise typer.Exit()


#: commands that read or write an output folder: Beam's FileSystems get their options before they start
OUTPUT_COMMANDS = frozenset({"run", "demo", "validate", "stats", "export", "review", "finalize"})


@app.callback()
def _options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Build face image-text corpora (WebDataset shards) with Apache Beam."""
    if ctx.invoked_subcommand in OUTPUT_COMMANDS:
        from ..storage import use_storage

        use_storage()  # s3:// and gs:// from the standard environment (storage.py); `run` may override


def setup_logging(verbose: bool) -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=fmt, stream=sys.stderr)
    # A library that logged through the root logger at import time has already given it a plain default
    # handler, and basicConfig then changes nothing: give that handler our format (handlers of other
    # types, e.g. a test harness's capture, are left alone).
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(logging.Formatter(fmt))
    logging.getLogger("facecorpus").setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DropReportedErrors) for f in handler.filters):
            handler.addFilter(_DropReportedErrors())
    # Beam's own INFO logs drown the progress lines on the local runner
    for noisy in ("apache_beam", "root"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)


def print_summary(stats: dict, out: str) -> None:
    typer.echo(
        f"inputs {stats['inputs']} → written {stats['written']}, rejected {stats['rejected']} "
        f"({', '.join(f'{k} {v}' for k, v in stats['by_reason'].items()) or 'none'})"
    )
    typer.echo(f"shards {stats['shards']}, QA pairs {stats['qa_pairs']}; output: {out}")


class _DropReportedErrors(logging.Filter):
    """Beam logs a worker's exception with its traceback before re-raising it on the launcher; when that
    exception is a user error or an environment error (full disk, read-only folder), the command reports
    it as one line instead, so the traceback is not printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ..errors import environment_error, user_error

        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or (environment_error(exc) is None and user_error(exc) is None and not interrupted(exc))


def interrupted(exc: BaseException) -> bool:
    """True for a Ctrl-C, also when Beam re-raised it from a stage as a RuntimeError ("KeyboardInterrupt
    [while running 'generate/AwaitOutcomes']"): the command then ends as interrupted (130), in one line."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, KeyboardInterrupt) or (isinstance(e, RuntimeError) and str(e).startswith("KeyboardInterrupt")):
            return True
        e = e.__cause__ or e.__context__
    return False
