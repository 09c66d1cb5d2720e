"""The `facecorpus` command put together, and its entry point: every command registered in the order
`--help` lists them, user errors turned into one line and exit 2, usage errors exit 2, Ctrl-C exit 130.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from ..errors import UserError
from ..export.cli import export_command
from ..faces.cli import faces_command
from ..generation.cli import app as llm_app
from ..models_cli import app as models_app
from ..prompting.cli import app as prompts_app
from ..review.cli import review
from ..sources.laion_cli import app as laion_app
from ..validation.cli import holdout_app
from .app import app
from .outputs import finalize, schema, stats, validate
from .runs import demo, run

# in the order `--help` lists them
for command in (run, demo, validate, stats, finalize, schema, review):
    app.command()(command)
app.command("export")(export_command)
app.command("faces")(faces_command)
app.add_typer(models_app, name="models")
app.add_typer(llm_app, name="llm")
app.add_typer(prompts_app, name="prompts")
app.add_typer(laion_app, name="laion")
app.add_typer(holdout_app, name="holdout")


class _DropGcpClientNotice(logging.Filter):
    """Beam logs, on import, that the optional Google Cloud client libraries are missing; facecorpus
    does not use BigQuery, and gs:// paths fail with Beam's own clear error when they are needed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found")


def _click_exceptions() -> tuple[type[Exception], ...]:
    """Usage-error classes: typer >= 0.2x raises its vendored click's (`typer._click`), which are not
    the `click` package's (not even installed by typer then); older typer raises click's own."""
    found: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except ImportError:
            continue
    return tuple(found)


def main() -> None:
    """Entry point: run the typer app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if not any(isinstance(f, _DropGcpClientNotice) for f in logging.getLogger().filters):
        logging.getLogger().addFilter(_DropGcpClientNotice())
    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit codes instead of raising here
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except UserError as e:
        typer.echo(f"facecorpus: error: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("facecorpus: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("facecorpus: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # click usage errors come through here with standalone_mode=False
        from ..errors import environment_error
        from ..extras import remote_path_error
        from ..outcome import explain_environment_error

        if isinstance(e, _click_exceptions()):
            typer.echo(f"facecorpus: error: {e.format_message()}", err=True)
            sys.exit(2)
        env = environment_error(e)
        if env is not None:  # a full disk or a read-only folder, met by a command other than run/demo
            typer.echo(f"facecorpus: error: {explain_environment_error(env, None, None)}", err=True)
            sys.exit(UserError.exit_code)
        missing = remote_path_error(e)  # gs:// or s3:// without the extra that reads it
        if missing is not None:
            typer.echo(f"facecorpus: error: {missing}", err=True)
            sys.exit(missing.exit_code)
        raise


def console_main() -> None:
    """The `facecorpus` command: `main()`, then a process exit that skips native library teardown.

    pyarrow's parquet reader leaves pool threads that the C++ runtime sometimes tears down while
    still joinable at interpreter exit ("terminate called without an active exception", SIGABRT) after
    all work is done (apache/arrow#34314); measured here: 1 `validate` in 20. Our own exit handlers
    (the local LLM server's stop, temp-file finalizers) still run, output is flushed, then the process
    ends with the command's code. Uncaught errors keep the normal exit (and their traceback).
    """
    import atexit

    try:
        main()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
