"""The Dataflow images, checked without a Docker engine (none on our machines): the Dockerfiles parsed
into instructions and held to what the launcher and the workers rely on — the labels the launcher's
image check reads, the Python and Beam they promise equal to what this code is tested with, the
`gcp` and `aws` extras, the GPU image's onnxruntime-gpu with cuDNN and its self-test, the insightface
pack import, the Flex Template's entry point and metadata. The entry point itself runs as a script,
the way Dataflow's launcher starts it."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import apache_beam
import pytest

import facecorpus
from facecorpus.flex_template import TEMPLATE_PARAMETERS, command_line
from facecorpus.worker_image import LABEL_PREFIX
from tests.support.helpers import REPO, write_recipe

DOCKER = REPO / "docker"


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (DOCKER / name).read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    assert not pending, f"{name} ends inside a continuation"
    return out


def args_of(ins: list[tuple[str, str]]) -> dict[str, str]:
    return dict(a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)


def labels_of(ins: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for w, a in ins:
        if w == "LABEL":
            found.update((k, v.strip('"')) for k, v in re.findall(r'([\w.\-]+)=("[^"]*"|\S+)', a))
    return found


def run_text(ins: list[tuple[str, str]]) -> str:
    return "\n".join(a for w, a in ins if w == "RUN")


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_worker_images_promise_what_this_code_is_tested_with(name: str):
    ins = instructions(name)
    args = args_of(ins)
    python = platform.python_version().rsplit(".", 1)[0]
    assert args["BEAM_VERSION"] == apache_beam.__version__ and args["PYTHON_VERSION"] == python
    assert args["FACECORPUS_VERSION"] == facecorpus.__version__
    assert next(a for w, a in ins if w == "FROM") == "apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}"
    labels = labels_of(ins)
    for key, arg in (("python", "PYTHON_VERSION"), ("apache_beam", "BEAM_VERSION"), ("version", "FACECORPUS_VERSION")):
        assert labels[LABEL_PREFIX + key] == "${" + arg + "}", key  # what worker_image.py compares
    run = run_text(ins)
    extras = set(re.search(r'"\.\[([\w,]+)\]"', run).group(1).split(","))
    assert {"gcp", "aws"} <= extras
    assert '"apache-beam==${BEAM_VERSION}"' in run and "labels say" in run  # the build refuses a drifted Beam
    assert "python -m facecorpus.runtime_check --require cpu" in run
    assert ("ENV", "FACECORPUS_MODELS=/opt/facecorpus/models") in ins and "facecorpus models pull portable" in run


def test_the_gpu_image_brings_cudnn_and_fails_its_build_on_a_cpu_fallback():
    ins = instructions("Dockerfile.gpu")
    run = run_text(ins)
    # one onnxruntime: the CPU wheel out, the GPU wheel in with its CUDA and cuDNN wheels, in that order
    assert run.index("uv pip uninstall --system onnxruntime") < run.index('"onnxruntime-gpu[cuda,cudnn]')
    assert run.index('"onnxruntime-gpu[cuda,cudnn]') < run.index("--require cuda-libs")
    assert "insightface" in re.search(r'"\.\[([\w,]+)\]"', run).group(1)
    copies = [a for w, a in ins if w == "COPY"]
    assert "docker/packs /tmp/packs" in copies and 'facecorpus models import "$(basename "$pack" .zip)" "$pack"' in run
    assert (DOCKER / "packs" / "README.md").is_file()


def test_the_cuda_libs_self_test_fails_loudly_on_a_cpu_onnxruntime():
    """Here onnxruntime is the CPU build: the GPU image's build-time check must fail, saying why."""
    from facecorpus.runtime_check import cuda_libs_check, main

    result = cuda_libs_check()
    assert not result["ok"] and "the CPU onnxruntime is installed" in result["why"]
    assert main(["--require", "cuda-libs"]) == 1


def test_the_launcher_image_runs_the_flex_template_entry_point():
    ins = instructions("Dockerfile.launcher")
    env = dict(a.split("=", 1) for w, a in ins if w == "ENV")
    entry = env["FLEX_TEMPLATE_PYTHON_PY_FILE"]
    assert entry == "/opt/facecorpus/src/facecorpus/flex_template.py" and (REPO / "src/facecorpus/flex_template.py").is_file()
    assert ("COPY", "src ./src") in ins and ("WORKDIR", "/opt/facecorpus") in ins
    assert args_of(ins)["BEAM_VERSION"] == args_of(instructions("Dockerfile.cpu"))["BEAM_VERSION"]
    assert "aws" in re.search(r'"\.\[([\w,]+)\]"', run_text(ins)).group(1).split(",")
    assert next(a for w, a in ins if w == "FROM").endswith(f"python{platform.python_version().rsplit('.', 1)[0].replace('.', '')}-template-launcher-base")
    metadata = json.loads((DOCKER / "flex_template_metadata.json").read_text())
    assert tuple(p["name"] for p in metadata["parameters"]) == TEMPLATE_PARAMETERS
    for p in metadata["parameters"]:
        for rx in p.get("regexes", []):
            re.compile(rx)
    url, args = command_line(["--recipe=gs://b/r.yaml", "--out=gs://b/o", "--project=p"])
    assert args[-2:] == ["--runner=DataflowRunner", "--project=p"]  # a template always means Dataflow


def test_the_entry_point_runs_as_a_script_like_the_launcher_starts_it(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    recipe = write_recipe(tmp_path / "r.yaml", {"name": "t", "sources": [{"type": "folder", "path": str(tmp_path / "photos")}],
                                                "generation": {"generator": "templates"}})
    proc = subprocess.run([sys.executable, str(REPO / "src/facecorpus/flex_template.py"), f"--recipe={recipe}",
                           f"--out={tmp_path / 'out'}", "--project=p"], capture_output=True, text=True, timeout=300)
    # it got as far as the run's checks: a local path cannot be read by Dataflow's workers
    assert proc.returncode == 2 and "sources.0.path is the local path" in proc.stderr, proc.stderr[-2000:]
