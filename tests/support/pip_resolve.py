"""The fresh venv and plain pip's resolution of facecorpus with every extra, made in the background.

Building the wheel, packing the wheelhouse (tests/support/wheelhouse.py: ~1.3 GB read and written on a
fresh venv), creating a venv with its own pip and `pip install --dry-run --report` take minutes of
mostly disk and subprocess time on a fresh clone. tests/house/test_pip_install.py asserts on the result;
so that its cost overlaps the rest of the suite instead of adding to it, `start_resolution()` (called by
tests/conftest.py once collection holds that test) runs `python -m tests.support.pip_resolve FOLDER`
in a child process, and the test's fixture waits for it (`wait_for_resolution()`). The child does exactly what the fixture
used to do in the test process, with the same commands and environment; it writes FOLDER/venv.json
(what the fixture returns), FOLDER/resolution.json (pip's report) and FOLDER/result.json (pip's exit
code and stderr tail) last, or its traceback to FOLDER/log. With pytest-xdist one worker (gw0)
starts it, in the run's shared temp folder, and whichever worker runs the test waits for it.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.helpers import REPO

#: `s3` is the old name of `aws`: installing it resolves facecorpus[aws] through the self-reference
EXTRAS = "gcp,s3,train,insightface"
#: the test this child serves (conftest starts the child only when it was collected)
TEST = "tests/house/test_pip_install.py::test_every_extra_resolves_with_plain_pip"

_child: subprocess.Popen | None = None
_folder: Path | None = None


def make_fresh_venv(tmp: Path) -> dict:
    """A fresh venv with its own pip, the built wheel, and pip's environment pointing at the wheelhouse only."""
    from tests.support.wheelhouse import build, pack

    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp / "dist")],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("facecorpus-*.whl"))
    houses = build([f"facecorpus[{EXTRAS}]"])
    pack(md.distribution("insightface"), houses[0])
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # pip compiles nothing (faster); the venv's first runs write the bytecode the later ones use
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=" ".join(map(str, houses)), PIP_NO_COMPILE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    return {"venv": str(venv), "bin": str(venv / "bin"), "env": env, "pip": pip, "wheel": str(wheel), "tmp": str(tmp)}


def resolve_into(tmp: Path) -> None:
    """What the child does: the fresh venv, then pip's dry-run resolution; results as files in `tmp`."""
    fresh = make_fresh_venv(tmp)
    (tmp / "venv.json").write_text(json.dumps(fresh), encoding="utf-8")
    report = tmp / "resolution.json"
    proc = subprocess.run([*fresh["pip"], "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report),
                           f"{fresh['wheel']}[{EXTRAS}]"], capture_output=True, text=True, env=fresh["env"], timeout=540,
                          cwd=REPO)
    part = tmp / "result.json.part"
    part.write_text(json.dumps({"returncode": proc.returncode, "stderr": proc.stderr[-3000:]}), encoding="utf-8")
    part.replace(tmp / "result.json")


def resolution_folder(config: pytest.Config) -> Path:
    """This run's folder for the child, under pytest's temp folder (kept and pruned as pytest keeps its
    runs): the run's own with pytest-xdist, where every worker finds it, else this process's."""
    global _folder
    if _folder is None:
        factory = getattr(config, "_tmp_path_factory", None)  # pytest's tmp_path_factory, before any fixture
        if factory is None:
            _folder = Path(tempfile.mkdtemp(prefix="facecorpus-pip-resolve-"))
        else:
            base = factory.getbasetemp()
            _folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "pip-resolve"
            _folder.mkdir(exist_ok=True)
    return _folder


def start_resolution(config: pytest.Config) -> None:
    """Start the child (once per run: without xdist, or in worker gw0)."""
    global _child
    if _child is not None or os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        return
    tmp = resolution_folder(config)
    with open(tmp / "log", "wb") as log:
        _child = subprocess.Popen([sys.executable, "-m", "tests.support.pip_resolve", str(tmp)], cwd=REPO,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_resolution(config: pytest.Config, timeout: float) -> dict:
    """The fresh venv's description once the child has written its result; raises with the child's log
    when it failed or did not finish within `timeout` seconds."""
    tmp = resolution_folder(config)
    deadline = time.monotonic() + timeout
    while not (tmp / "result.json").is_file():
        ended = _child is not None and _child.poll() is not None
        if ended and not (tmp / "result.json").is_file():
            raise AssertionError(f"the background pip resolution exited {_child.returncode}:\n{_log_tail(tmp)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the background pip resolution did not finish in {timeout:.0f} s "
                                 f"(load {os.getloadavg()[0]:.1f}):\n{_log_tail(tmp)}")
        time.sleep(0.5)
    result = json.loads((tmp / "result.json").read_text(encoding="utf-8"))
    if "error" in result:
        raise AssertionError(f"the background pip resolution failed:\n{result['error']}")
    fresh = json.loads((tmp / "venv.json").read_text(encoding="utf-8"))
    return {**{k: Path(fresh[k]) for k in ("venv", "bin", "wheel", "tmp")}, "env": fresh["env"], "pip": fresh["pip"],
            "result": result}


def stop_resolution(interrupted: bool, timeout: float = 600) -> None:
    """At the session's end: let a child another worker may still wait for finish (not after Ctrl-C),
    then end it."""
    if _child is None:
        return
    try:
        _child.wait(timeout=0 if interrupted else timeout)
    except subprocess.TimeoutExpired:
        _child.kill()
        _child.wait()


def _log_tail(tmp: Path, lines: int = 20) -> str:
    try:
        return "\n".join((tmp / "log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


if __name__ == "__main__":
    out = Path(sys.argv[1])
    try:
        resolve_into(out)
    except BaseException as e:  # the waiting worker may be another process: it reads the reason here
        import traceback

        (out / "result.json").write_text(json.dumps({"error": "".join(traceback.format_exception(e))[-3000:]}),
                                         encoding="utf-8")
        raise
