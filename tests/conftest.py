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
from pathlib import Path

import pytest

os.environ.setdefault("PYTHONWARNINGS", "ignore")

from tests.support.helpers import REPO, once_per_run, run_cli, session_run, write_recipe  # noqa: E402,F401 - REPO, run_cli, write_recipe: for old imports
from tests.support.markers import pytest_collection_modifyitems, pytest_configure  # noqa: E402,F401 - hooks: area and e2e markers


@pytest.fixture(scope="session")
def face_models() -> dict[str, str]:
    """Environment for runs that analyse faces but generate with templates: a store with `portable`."""
    from tests.support.model_packs import cached_store

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
    read-only; copy it before corrupting. Made once per test run, also with pytest-xdist workers
    (`once_per_run`)."""
    return once_per_run(tmp_path_factory, "demo", lambda out: session_run(
        request, "demo", "--out", str(out), "--set", "generation.generator=templates", env=face_models))


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs the demo builds (FairFace-layout zip + CSVs, photo folder), without running anything."""
    from facecorpus.demo import build_demo_inputs

    return build_demo_inputs(tmp_path_factory.mktemp("demo-inputs") / "in")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the fresh venv's pip resolution in the background when its test was collected: minutes of
    disk and subprocess time that then overlap the other tests (tests/support/pip_resolve.py)."""
    from tests.support import pip_resolve

    if any(item.nodeid == pip_resolve.TEST for item in session.items):
        pip_resolve.start_resolution(session.config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.support import pip_resolve

    pip_resolve.stop_resolution(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)

