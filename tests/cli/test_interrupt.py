"""Ctrl-C on a run stalled on the LLM: SIGINT to the command's process group (what a terminal sends)
while every request waits on the loopback fault server (held: it answers nothing until released)
stops `facecorpus demo` with exit 130 and one line, and the output it leaves is resumable: `--resume`
finishes it once the endpoint answers. No bound on how long the stop takes beyond a generous timeout
(the machine is busy); the test waits on conditions, never on sleeps."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import REPO, run_cli
from tests.support.llm_fault_server import FaultServer

QUIET = {"FACECORPUS_PROGRESS_S": "0", "PYTHONWARNINGS": "ignore"}


@pytest.mark.e2e
def test_ctrl_c_stops_a_demo_stalled_on_the_llm_with_130_and_a_resume_finishes_it(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    with FaultServer() as srv:
        srv.hold()  # every chat request waits: a stalled endpoint
        # the demo's recipe, small: two FairFace faces, no face models, the fault server as its LLM
        sets = ["--set", "faces.backend=none", "--set", "sources=[{type: fairface, images: "
                "fairface/fairface-img-margin025-trainval.zip, labels: [fairface/fairface_label_val.csv], "
                "split: val, limit: 2}]", "--set", "generation.categories=[demographics]",
                "--set", f"generation.openai.base_url={srv.base_url}", "--set", "generation.openai.api_key_env=null",
                "--set", "generation.openai.preflight=false", "--set", f"generation.cache.dir={tmp_path / 'cache'}"]
        proc = subprocess.Popen([sys.executable, "-m", "facecorpus.cli", "demo", "--out", str(out), *sets],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                env={**os.environ, **QUIET}, start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while srv.count() == 0 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)  # polling a condition: the first request has arrived and is held
            assert proc.poll() is None and srv.count() > 0, proc.communicate()[1][-3000:] if proc.poll() is not None else ""
            os.killpg(proc.pid, signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            srv.release()
        assert proc.returncode == 130, stderr[-3000:]
        assert "Traceback" not in stderr and "ERROR" not in stderr, stderr[-3000:]
        (line,) = [x for x in stderr.splitlines() if x.startswith("facecorpus: interrupted; continue with: ")]
        command = line.split("continue with: ", 1)[1]
        assert command == shlex.join(["facecorpus", "demo", "--out", str(out), *sets, "--resume"])
        assert not (out / "stats.json").exists()  # nothing claims to be finished
        again = run_cli(*shlex.split(command)[1:], env=QUIET)  # the endpoint answers again (released)
    assert again.returncode == 0, again.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["inputs"] == 2 and stats["written"] == 2, stats
    assert run_cli("validate", str(out)).returncode == 0
