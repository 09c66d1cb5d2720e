"""Shared fixtures: one real run of the demo recipe per session (Beam FnApiRunner, real photos, templates
text), reused read-only.

A session fixture that fails must fail once, fast, with its reason: pytest keeps a fixture's error and
hands it to every test that asks for the fixture, so the run it makes is bounded by its own timeout
(below pytest-timeout's per-test limit, which also covers the fixture's setup) and its failure names
the command, exit code or time spent, the machine's load and the command's last output lines. Without
that bound a slow machine turns one fixture into pytest-timeout's stack dump of a `wait()` repeated in
every dependent test's error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("PYTHONWARNINGS", "ignore")

REPO = Path(__file__).resolve().parent.parent

from .markers import pytest_collection_modifyitems, pytest_configure  # noqa: E402,F401 - hooks: area and e2e markers


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


def session_run(request: pytest.FixtureRequest, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `facecorpus ARGS` for a session fixture; on failure `pytest.fail` with the reason (pytest
    keeps it for every test that shares the fixture, so they all fail at once with that reason instead
    of each waiting). The bound is 90% of pytest-timeout's per-test limit (the fixture's setup counts
    against the first test that asks for it), so the fixture, not pytest-timeout, reports what
    happened."""
    bound = None
    try:  # pytest-timeout's `--timeout`, else its ini `timeout`
        limit = float(request.config.getoption("timeout", None) or request.config.getini("timeout") or 0)
    except (ValueError, TypeError):  # pytest-timeout not installed
        limit = 0.0
    if limit > 0:
        bound = 0.9 * limit
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


@pytest.fixture(scope="session")
def face_models() -> dict[str, str]:
    """Environment for runs that analyse faces but generate with templates: a store with `portable`."""
    from .model_packs import cached_store

    return {"FACECORPUS_MODELS": str(cached_store("portable"))}


@pytest.fixture(scope="session")
def demo_output(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                face_models: dict[str, str]) -> Path:
    """A finished `facecorpus demo` output made the way `make demo` makes it — real photos, portable face
    models, one sample per face, Beam's FnApiRunner — except that the text comes from the templates
    generator (`--set generation.generator=templates`), so its duration does not depend on how fast the
    local LLM answers on a busy machine. The tests that share it are about the output (shards, manifest,
    rejects, card, loader, export, review), not about LLM text; the LLM path has its own tests
    (test_generation_local.py on the real llama.cpp server, the fault server for volume). Treat it as
    read-only; copy it before corrupting."""
    out = tmp_path_factory.mktemp("demo") / "out"
    session_run(request, "demo", "--out", str(out), "--set", "generation.generator=templates", env=face_models)
    return out


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs the demo builds (FairFace-layout zip + CSVs, photo folder), without running anything."""
    from facecorpus.demo import build_demo_inputs

    return build_demo_inputs(tmp_path_factory.mktemp("demo-inputs") / "in")


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
