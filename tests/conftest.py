"""Shared fixtures: one real demo run per session (Beam FnApiRunner, real photos), reused read-only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("PYTHONWARNINGS", "ignore")

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real `facecorpus` command in a subprocess; returns the completed process (never raises)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "facecorpus.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=timeout,
    )


@pytest.fixture(scope="session")
def demo_models() -> dict[str, str]:
    """Environment for runs of the demo recipe: a model store holding the packs it uses (`portable`
    faces, the `smollm2` local LLM), built offline from the cached pinned distributions."""
    from .model_packs import cached_store

    cached_store("portable")
    return {"FACECORPUS_MODELS": str(cached_store("smollm2"))}


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory: pytest.TempPathFactory, demo_models: dict[str, str]) -> Path:
    """A finished `facecorpus demo` output, exactly as `make demo` makes it: portable face models, one
    sample per face, captions and QA from the embedded llama.cpp server (treat as read-only; copy it
    before corrupting)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = run_cli("demo", "--out", str(out), env=demo_models)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def demo_inputs(demo_output: Path) -> Path:
    """The inputs the demo built (FairFace-layout zip + CSVs, photo folder)."""
    return Path(f"{demo_output}-input")


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
