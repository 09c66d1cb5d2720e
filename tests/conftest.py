"""Shared fixtures: one real run of the demo recipe per session (Beam FnApiRunner, real photos, templates
text), reused read-only."""

from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.fixture(scope="session")
def face_models() -> dict[str, str]:
    """Environment for runs that analyse faces but generate with templates: a store with `portable`."""
    from .model_packs import cached_store

    return {"FACECORPUS_MODELS": str(cached_store("portable"))}


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory: pytest.TempPathFactory, face_models: dict[str, str]) -> Path:
    """A finished `facecorpus demo` output made the way `make demo` makes it — real photos, portable face
    models, one sample per face, Beam's FnApiRunner — except that the text comes from the templates
    generator (`--set generation.generator=templates`), so its duration does not depend on how fast the
    local LLM answers on a busy machine. The tests that share it are about the output (shards, manifest,
    rejects, card, loader, export, review), not about LLM text; the LLM path has its own tests
    (test_generation_local.py on the real llama.cpp server, the fault server for volume). Treat it as
    read-only; copy it before corrupting."""
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = run_cli("demo", "--out", str(out), "--set", "generation.generator=templates", env=face_models)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs the demo builds (FairFace-layout zip + CSVs, photo folder), without running anything."""
    from facecorpus.demo import build_demo_inputs

    return build_demo_inputs(tmp_path_factory.mktemp("demo-inputs") / "in")


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
