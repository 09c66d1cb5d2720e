"""Helpers the tests import: the repository root, the `facecorpus` command in a subprocess, a recipe
file, and the bounded run behind the session fixtures of tests/conftest.py (why it is bounded: there)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real `facecorpus` command in a subprocess; returns the completed process (never raises)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "facecorpus.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=timeout,
    )


def _load() -> str:
    try:
        return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - platforms without getloadavg
        return "load average unknown"


def _tail(text: str | bytes | None, lines: int = 12) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def fixture_bound(config: pytest.Config) -> float | None:
    """90% of pytest-timeout's per-test limit (`--timeout`, else the ini `timeout`); None without one.
    A fixture's set-up counts against the first test that asks for it, so a fixture bounded by this
    reports what happened itself instead of pytest-timeout's stack dump."""
    try:
        limit = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    except (ValueError, TypeError):  # pytest-timeout not installed
        limit = 0.0
    return 0.9 * limit if limit > 0 else None


def session_run(request: pytest.FixtureRequest, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `facecorpus ARGS` for a session fixture; on failure `pytest.fail` with the reason (pytest
    keeps it for every test that shares the fixture, so they all fail at once with that reason instead
    of each waiting). The bound is 90% of pytest-timeout's per-test limit (the fixture's setup counts
    against the first test that asks for it), so the fixture, not pytest-timeout, reports what
    happened."""
    bound = fixture_bound(request.config)
    t0 = time.monotonic()
    command = "facecorpus " + " ".join(args)
    try:
        proc = subprocess.run([sys.executable, "-m", "facecorpus.cli", *args], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, cwd=REPO, timeout=bound)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"session fixture {request.fixturename}: `{command}` did not finish in {bound:.0f} s "
                    f"({_load()}); its last output:\n{_tail(e.stderr)}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"session fixture {request.fixturename}: `{command}` exited {proc.returncode} after "
                    f"{time.monotonic() - t0:.0f} s ({_load()}); its last output:\n{_tail(proc.stderr)}",
                    pytrace=False)
    return proc


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder `make(folder)` fills, made once per test run: in one pytest process a session
    fixture's own folder; with pytest-xdist workers the first worker to ask makes it under the run's
    shared temp folder while the others wait on a file lock, then all read it (a failure is kept and
    repeated to every worker with its reason, as pytest does for a session fixture). Treat it as
    read-only."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp(name) / "out"
        make(out)
        return out
    root = tmp_path_factory.getbasetemp().parent / f"once-{name}"
    root.mkdir(exist_ok=True)
    done, failed, out = root / "done", root / "failed", root / "out"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if failed.exists():
                pytest.fail(failed.read_text(encoding="utf-8"), pytrace=False)
            if not done.exists():
                try:
                    make(out)
                except BaseException as e:  # pytest.fail's Failed is a BaseException
                    failed.write_text(f"{name} (made by another worker): {e}", encoding="utf-8")
                    raise
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out
