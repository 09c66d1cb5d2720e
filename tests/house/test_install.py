"""The installation: one OpenCV, shipped resources present, schema in sync with the model."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from facecorpus.install_check import installed_opencv, problems
from facecorpus.resources import data_dir
from tests.support.helpers import REPO, run_cli


def test_exactly_one_opencv_and_it_is_headless():
    assert installed_opencv() == ["opencv-python-headless"]
    assert problems() == []
    import cv2

    assert cv2.__version__.startswith("4.")
    # insightface and img2dataset both import against that single cv2
    import img2dataset.resizer  # noqa: F401
    import insightface  # noqa: F401


def test_checked_in_schema_matches_the_model():
    proc = run_cli("schema", "--check", str(REPO / "schemas" / "sample.schema.json"))
    assert proc.returncode == 0, proc.stderr


def test_schema_check_detects_a_stale_file(tmp_path: Path):
    stale = tmp_path / "s.json"
    stale.write_text((REPO / "schemas" / "sample.schema.json").read_text().replace('"caption"', '"kaption"', 1))
    proc = run_cli("schema", "--check", str(stale))
    assert proc.returncode == 1
    assert "stale" in proc.stderr


def test_resources_are_found():
    for kind in ("schemas", "pipelines"):
        assert any(data_dir(kind).iterdir())


def test_wheel_ships_prompts_schemas_and_pipelines(tmp_path: Path):
    # Dataflow workers install the wheel, not the repository: the resources must be inside it.
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True)
    wheel = next(tmp_path.glob("facecorpus-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "facecorpus/_data/schemas/sample.schema.json" in names
    assert "facecorpus/_data/pipelines/demo.yaml" in names
    assert "facecorpus/records.py" in names


@pytest.mark.e2e
def test_a_run_without_faces_or_an_llm_imports_neither_torch_nor_openai(tmp_path):
    """Pre-flight and graph building of a templates recipe without a face backend import neither the
    face stage (Beam's RunInference imports torch: ~1.5 s CPU) nor the openai client (~0.8 s): a fresh
    interpreter, as every run and worker starts."""
    code = (
        "import sys\n"
        "from facecorpus.recipe import validate_recipe\n"
        "from facecorpus.preflight import preflight\n"
        "from facecorpus.graph import faces_transform\n"
        f"r = validate_recipe({{'name': 'x', 'sources': [{{'type': 'folder', 'path': {str(tmp_path)!r}}}]}}, 'x', {str(tmp_path)!r})\n"
        "assert r.faces.backend == 'none' and r.generation.generator == 'templates'\n"
        "preflight(r)\n"
        "assert faces_transform(r) is None\n"
        "print(sorted(m for m in ('torch', 'openai') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
