"""facecorpus installed with plain pip into a fresh venv, no override or constraint file: the core package,
then every extra, each resolved by pip's own resolver and run.

pip works offline from a wheelhouse packed from this test environment (tests/wheelhouse.py: the same
releases PyPI serves, with their real metadata); the machine's pip configuration is ignored
(PIP_CONFIG_FILE=/dev/null). The tests run in file order: the core checks before the extras go in.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml

from .conftest import REPO
from .wheelhouse import build, pack

EXTRAS = "gcp,aws,train,insightface"


def _run(cmd: list[str], env: dict, cwd: Path = REPO, timeout: int = 540) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fresh venv with `pip install facecorpus-*.whl` done by its own pip, from the wheelhouse only."""
    tmp = tmp_path_factory.mktemp("pip")
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp / "dist")],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("facecorpus-*.whl"))
    house = build([f"facecorpus[{EXTRAS}]"])
    pack(md.distribution("insightface"), house)  # installed with --no-deps below, as the README says
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(house), PIP_NO_COMPILE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    proc = _run([*pip, "install", "-q", str(wheel)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"venv": venv, "bin": venv / "bin", "env": env, "pip": pip, "wheel": wheel, "tmp": tmp}


def test_core_install_is_consistent(installed: dict) -> None:
    proc = _run([*installed["pip"], "check"], installed["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every requirement of every installed package met
    names = _run([*installed["pip"], "list", "--format", "json"], installed["env"]).stdout
    dists = {d["name"].lower() for d in json.loads(names)}
    assert "webdataset" in dists and "img2dataset" not in dists and "opencv-python" not in dists


def test_version(installed: dict) -> None:
    proc = _run([str(installed["bin"] / "facecorpus"), "--version"], installed["env"])
    assert proc.returncode == 0 and proc.stdout.strip() == f"facecorpus {md.version('facecorpus')}"


def _photos(folder: Path) -> Path:
    """Three real photos from scikit-image's sample data (a dependency of the core package)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = Path(next(iter(find_spec("skimage").submodule_search_locations))) / "data"
    for name in ("astronaut.png", "camera.png", "chelsea.png"):
        (folder / name).write_bytes((data / name).read_bytes())
    return folder


@pytest.fixture(scope="module")
def templates_run(installed: dict) -> Path:
    """A small run with the fresh install: a photo folder, no face models, the templates generator."""
    tmp = installed["tmp"]
    recipe = tmp / "small.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "pip-smoke",
        "sources": [{"type": "folder", "path": str(_photos(tmp / "photos")), "dataset": "photos"}],
        "faces": {"backend": "none"},
        "generation": {"generator": "templates", "categories": ["lighting_quality", "detail"]},
        "runner": {"runner": "FnApiRunner"},
    }))
    out = tmp / "out"
    proc = _run([str(installed["bin"] / "facecorpus"), "run", str(recipe), "--out", str(out)], installed["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_small_templates_run(installed: dict, templates_run: Path) -> None:
    stats = json.loads((templates_run / "stats.json").read_text())
    assert stats["inputs"] == 3 and stats["written"] + stats["rejected"] == 3 and stats["written"] >= 2
    proc = _run([str(installed["bin"] / "facecorpus"), "validate", str(templates_run)], installed["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("args", "command"), [
    (["stats", "s3://facecorpus-test/run"], "pip install 'facecorpus[aws]'"),
    (["export", "gs://facecorpus-test/run", "--format", "jsonl", "--out", "x.jsonl"], "pip install 'facecorpus[gcp]'"),
    (["demo", "--out", "demo-out"], "pip install 'facecorpus[insightface]' && pip install --no-deps insightface==2.1"),
])
def test_a_missing_extra_is_one_line_naming_the_pip_command(installed: dict, args: list[str], command: str) -> None:
    proc = _run([str(installed["bin"] / "facecorpus"), *args], installed["env"], cwd=installed["tmp"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith("facecorpus: error:") and command in proc.stderr


def test_random_access_without_torch_names_the_train_extra(installed: dict, templates_run: Path) -> None:
    code = ("from facecorpus.errors import UserError\nfrom facecorpus.loader import IndexedCorpus\n"
            f"try:\n    IndexedCorpus({str(templates_run)!r})\nexcept UserError as e:\n    print(e)\n")
    proc = _run([str(installed["bin"] / "python"), "-c", code], installed["env"])
    assert proc.returncode == 0 and "pip install 'facecorpus[train]'" in proc.stdout, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ extras


@pytest.fixture(scope="module")
def with_extras(installed: dict) -> dict:
    """The same venv after `pip install 'facecorpus[gcp,aws,train,insightface]'` and insightface --no-deps."""
    proc = _run([*installed["pip"], "install", "-q", f"{installed['wheel']}[{EXTRAS}]"], installed["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _run([*installed["pip"], "install", "-q", "--no-deps", "insightface==2.1"], installed["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return installed


def test_extras_install_and_import(with_extras: dict) -> None:
    code = ("from apache_beam.io.gcp import gcsfilesystem; import gcsfs\n"  # gcp
            "from apache_beam.io.aws import s3filesystem; import boto3, s3fs\n"  # aws
            "import torch, wids\n"  # train
            "import insightface.app\n"  # insightface
            "print(torch.__version__)")
    proc = _run([str(with_extras["bin"] / "python"), "-c", code], with_extras["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_one_opencv_after_insightface(with_extras: dict) -> None:
    proc = _run([str(with_extras["bin"] / "python"), "-m", "facecorpus.install_check"], with_extras["env"])
    assert proc.returncode == 0 and "opencv-python-headless" in proc.stdout, proc.stdout + proc.stderr
    check = _run([*with_extras["pip"], "check"], with_extras["env"])
    # the one unmet requirement, on purpose: insightface's opencv-python, replaced by the headless build
    assert check.stdout.strip().splitlines() == ["insightface 2.1 requires opencv-python, which is not installed."]


def test_train_extra_gives_random_access(with_extras: dict, templates_run: Path) -> None:
    code = ("from facecorpus.loader import IndexedCorpus\n"
            f"c = IndexedCorpus({str(templates_run)!r})\nimage, conversation = c[0]\nprint(len(c), image.size)")
    proc = _run([str(with_extras["bin"] / "python"), "-c", code], with_extras["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    n, _ = proc.stdout.split(" ", 1)
    assert int(n) == json.loads((templates_run / "stats.json").read_text())["written"]


def test_old_s3_extra_name_still_resolves(with_extras: dict, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = _run([*with_extras["pip"], "install", "--dry-run", "--ignore-installed", "--report", str(report), "-q",
                 f"{with_extras['wheel']}[s3]"], with_extras["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert {"s3fs", "boto3", "facecorpus"} <= names
