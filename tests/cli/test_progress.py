"""Live progress: the real command line in a pseudo-terminal (a table redrawn in place), as log lines off
a terminal, the snapshot channel across processes, and the table's arithmetic."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from facecorpus import progress
from tests.cli.test_user_errors import build_inputs, recipe_data
from tests.support.helpers import REPO, run_cli, write_recipe
from tests.support.llm_fault_server import FaultServer, Rule

CURSOR_UP = re.compile(r"\x1b\[(\d+)F\x1b\[J")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_inputs(tmp_path_factory.mktemp("progress") / "in")


def slow_llm_recipe(inputs: Path, tmp: Path, base_url: str, labels: Path | None = None) -> Path:
    source = {"labels": [str(labels)]} if labels is not None else {}
    data = {**recipe_data(inputs, **source), "generation": {
        "generator": "openai", "prompt_set": "compact", "categories": ["expression", "pose"],
        "cache": {"dir": str(tmp / "cache")},
        "openai": {"base_url": base_url, "api_key_env": None, "concurrency": 1}}}
    # the fault server answers every category with one canned sentence: the text checks are not the subject
    data["validation"] = {"refusals": "off", "label_conflict": "off", "junk": "off"}
    return write_recipe(tmp / "r.yaml", data)


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    """Run `facecorpus ARGS` with stdout and stderr on a pseudo-terminal; (exit code, everything it wrote)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "facecorpus.cli", *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=REPO, env={**os.environ, **env}, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", errors="replace")


def last_table(text: str) -> list[str]:
    """The table as it stood when last drawn: what follows the last cursor-up sequence, up to the summary."""
    tail = CURSOR_UP.split(text)[-1].replace("\r", "")
    return [line for line in tail.split("\n") if line.strip()]


def test_a_run_in_a_terminal_redraws_one_live_table(inputs: Path, tmp_path: Path) -> None:
    """Totals, rejects by reason, retries, requests in flight and an ETA while it runs, in one table
    redrawn in place: 4 label rows (one names a photo the zip does not hold), the first LLM request
    answered 503 (retried), the others after 1.5 s each, one at a time."""
    labels = tmp_path / "labels.csv"
    labels.write_text((inputs / "labels.csv").read_text(encoding="utf-8") + "val/9.jpg,20-29,Female,Black,True,Ana\n",
                      encoding="utf-8")
    with FaultServer(latency_s=1.5, rules=[Rule("503", times=1)]) as srv:  # slow: redrawn while requests wait
        recipe = slow_llm_recipe(inputs, tmp_path, srv.base_url, labels)
        code, text = run_in_terminal(["run", str(recipe), "--out", str(tmp_path / "out")], env={})
        bought, refused = srv.count(), srv.count("503")
    assert code == 0, text[-3000:]
    redraws = CURSOR_UP.findall(text)
    assert len(redraws) >= 3, text[-3000:]  # updated in place, not appended
    tables = [[line for line in chunk.replace("\r", "").split("\n") if line.strip()] for chunk in CURSOR_UP.split(text)[1:]]
    table = last_table(text)
    assert table[0].startswith("errors → ") and "FnApiRunner" in table[0], table
    rows = {line.split()[0]: line.split() for line in table[2:] if line.split()[0] in progress.STAGE_ORDER}
    assert rows["source"][1:4] == ["4/4", "3", "1"], rows["source"]  # in of the known size, out, rejected
    assert rows["source"][5] == "done" and rows["source"][6:] == ["missing_file", "1"], rows["source"]
    assert rows["generate"][1:4] == ["3", "3", "0"], rows["generate"]
    llm = next(line for line in table if line.startswith("LLM: "))
    assert refused == 1 and f"0 in flight · {bought - refused} done" in llm and "· 1 retried ·" in llm, (llm, bought)
    # while it ran: a request in flight, and an ETA for a stage still at work (a duration, not "-" or "done")
    assert any(re.search(r"LLM: [1-9]\d* in flight", line) for t in tables for line in t), text[-3000:]
    eta = re.compile(r"^\S+\s+\S+\s+\d+\s+\d+\s+[\d.]+/s\s+(\d+s|\d+m\d\ds|\d+h\d\dm)\s")
    assert any(eta.match(line) for t in tables for line in t[2:]), text[-3000:]
    assert "inputs 4 → written 3" in text  # the summary follows the final table
    assert "Traceback" not in text


def test_off_a_terminal_progress_is_periodic_log_lines(inputs: Path, tmp_path: Path) -> None:
    with FaultServer(latency_s=1.5) as srv:
        recipe = slow_llm_recipe(inputs, tmp_path, srv.base_url)
        proc = run_cli("run", str(recipe), "--out", str(tmp_path / "out"), env={"FACECORPUS_PROGRESS_S": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if " INFO facecorpus: progress " in line]
    assert len(lines) >= 2, proc.stderr
    assert "\x1b[" not in proc.stderr  # no terminal codes in a log
    assert any("generate" in line and "LLM: " in line for line in lines), lines


def test_snapshots_from_several_processes_add_up(tmp_path: Path) -> None:
    code = ("import time; from facecorpus import progress\n"
            "progress.add('in.image', 5); progress.add('out.image', 4); progress.in_flight('llm.in_flight', 1)\n"
            "time.sleep(2.5)\n")
    env = {**os.environ, progress.ENV_DIR: str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert len(list(tmp_path.glob("*.json"))) == 2  # one snapshot per process
    figures = progress.read_snapshots(str(tmp_path))
    assert (figures["in.image"], figures["out.image"], figures["llm.in_flight"]) == (10, 8, 2)


def test_the_table_scales_the_known_size_through_the_stages(tmp_path: Path) -> None:
    progress.reset()
    progress.expect_inputs(100)
    report = progress.ProgressReport(str(tmp_path), "t")
    figures = Counter({"in.source": 100, "out.source": 80, "rejected.source": 20, "reason.source.bad_row": 20,
                       "in.faces": 40, "out.faces": 60, "rejected.faces": 10, "reason.faces.no_face": 10,
                       "in.generate": 30, "out.generate": 30, "llm.in_flight": 2, "llm.requests": 30,
                       "llm.prompt_tokens": 1000, "llm.completion_tokens": 200, "llm.cost_microusd": 12345})
    past = Counter({**figures, "in.faces": 20, "in.generate": 10})
    report._history = [(time.monotonic() - 10.0, past)]  # faces: 20 in 10 s, generate: 20 in 10 s
    lines = report.lines(figures)
    rows = {line.split()[0]: line for line in lines[2:] if not line.startswith("LLM")}
    assert rows["source"].split()[1:3] == ["100/100", "80"] and "done" in rows["source"] and "bad_row 20" in rows["source"]
    # faces expects 80 (what source kept): 40 left at 2.0/s → 20s
    assert rows["faces"].split()[4:6] == ["2.0/s", "20s"], rows["faces"]
    # generate expects 80 × 60/40 = 120: 90 left at 2.0/s → 45s
    assert rows["generate"].split()[4:6] == ["2.0/s", "45s"], rows["generate"]
    assert lines[-1] == "LLM: 2 in flight · 30 done · 0 cached · 0 retried · 1,000+200 tokens · $0.0123"
    progress.reset()
