"""Run the `facecorpus` entry point inside the test process (no interpreter start, no Beam re-import).

- `run_main(args, monkeypatch, capsys)`: (exit code, stdout, stderr) through pytest's own capture.
- `cli_in_process(*args, env=, cwd=)`: a drop-in for `run_cli` (tests/support/helpers.py) that returns
  the same `CompletedProcess` (returncode, stdout, stderr) without a subprocess. It makes the process
  state a fresh `facecorpus` would see for what the command reports: the environment and working folder
  asked for (restored afterwards), stdout/stderr to buffers, and a root logger with no handler, so the
  command's own logging set-up writes its lines to that stderr as it does in a real process (pytest's
  log capture would otherwise swallow them and hide a stray warning line). An exception that escapes
  `main()` becomes what the interpreter would print: its traceback on stderr and exit code 1.

Use it where the subject is what the command says and does (exit codes, one-line errors, what it
leaves on disk); keep `run_cli` where the subject is the process itself (signals, a kill, the console
script's exit path, a fresh interpreter's imports). tests/cli/test_exit_codes.py and the run_cli tests
in tests/house/test_recipe.py keep the real process's one-line errors and exit codes covered.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from facecorpus.cli import main


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `facecorpus ARGS`, exactly as main() reports them."""
    monkeypatch.setattr(sys, "argv", ["facecorpus", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@contextmanager
def _process_state(args: tuple[str, ...], env: dict[str, str] | None, cwd: Path | None) -> Iterator[None]:
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    os.environ.update(env or {})
    if cwd is not None:
        os.chdir(cwd)
    sys.argv = ["facecorpus", *args]
    root.handlers = []  # as in a fresh process: the command's basicConfig installs its handler on our stderr
    try:
        yield
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def cli_in_process(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`facecorpus ARGS` in this process; the `CompletedProcess` `run_cli` would return (never raises)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _process_state(args, env, cwd), redirect_stdout(out), redirect_stderr(err):
        try:
            main()
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:  # sys.exit("message"): printed, exit code 1, as the interpreter does
                print(e.code, file=sys.stderr)
                code = 1
        except Exception:  # noqa: BLE001 - what the interpreter would do with it
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    return subprocess.CompletedProcess(["facecorpus", *args], code, out.getvalue(), err.getvalue())
