"""Spend that survives kills: a real `facecorpus run` against the loopback server, SIGKILLed twice
while requests are in flight, resumed each time; stats.json's `llm` then says exactly what the
endpoint received (attempts), what came back (requests, tokens) and what was in flight at the kills
(unanswered) — the Beam counters of the killed attempts are gone, the ledger is not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facecorpus.generation.accounting import TokenUsage
from facecorpus.generation.ledger import LEDGER_DIR, SpendLedger, ledger_totals
from tests.support.helpers import REPO, write_recipe
from tests.support.llm_fault_server import FaultServer

API_KEY = "sk-ledger-test-0123456789abcdef"


def _recipe(root: Path, demo_inputs: Path, base_url: str) -> Path:
    ff = demo_inputs / "fairface"
    return write_recipe(root / "recipe.yaml", {
        "name": "ledger",
        "sources": [{"type": "fairface", "images": str(ff / "fairface-img-margin025-trainval.zip"),
                     "labels": [str(ff / "fairface_label_val.csv")], "split": "val"}],
        "faces": {"backend": "none"},
        "generation": {"generator": "openai", "prompt_set": "fairfacegpt", "categories": ["pose", "expression"],
                       "cache": {"dir": str(root / "cache")},
                       "openai": {"base_url": base_url, "api_key_env": "LEDGER_TEST_KEY", "concurrency": 4,
                                  "timeout_s": 30}},
        # the fault server answers every category with one canned sentence: junk checks are not the subject
        "validation": {"junk": "off"},
    })


def _start(recipe: Path, out: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "facecorpus.cli", "run", str(recipe), "--out", str(out)] + (["--resume"] if resume else [])
    return subprocess.Popen(args, cwd=REPO, env={**os.environ, "LEDGER_TEST_KEY": API_KEY},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _kill_with_requests_in_flight(proc: subprocess.Popen, srv: FaultServer, out: Path, after: int) -> int:
    """SIGKILL the run with requests in flight: once the server has seen `after` more chat requests it
    holds every answer; when the client has ledgered every answer it did get (so nothing is in
    transit), the run is killed and the server lets the held answers go — to a dead client.
    Returns the requests held at the kill."""
    start = srv.count()
    deadline = time.monotonic() + 600
    while srv.count() - start < after:
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    srv.hold()
    # wait until the client has filled its slots (nothing new arrives for a second: with every answer held no
    # slot frees) and has ledgered all it sent; on a busy machine a request sent between a first look and the
    # kill made the count read here one short of what the server then wasted
    last, since = None, time.monotonic()
    while True:
        assert proc.poll() is None and time.monotonic() < deadline
        with srv._lock:
            in_flight = srv.in_flight
        now = (in_flight, srv.count())  # count() takes the server's lock itself
        if now != last:
            last, since = now, time.monotonic()
        seen = ledger_totals(str(out)) or {}
        if (now[0] >= 1 and time.monotonic() - since >= 1.0 and seen.get("requests") == srv.served
                and seen.get("attempts") == now[1]):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with srv._lock:
        held = srv.in_flight  # the client is dead: exactly what the server holds and will answer to no one
    srv.release()
    return held


def test_spend_after_kills_and_resumes_equals_what_the_endpoint_received(demo_inputs: Path, tmp_path: Path):
    with FaultServer(latency_s=0.2, require_key=API_KEY) as srv:
        recipe = _recipe(tmp_path, demo_inputs, srv.base_url)
        out = tmp_path / "out"
        held = [_kill_with_requests_in_flight(_start(recipe, out, resume=False), srv, out, after=6)]
        held.append(_kill_with_requests_in_flight(_start(recipe, out, resume=True), srv, out, after=6))
        done = _start(recipe, out, resume=True)
        _, err = done.communicate(timeout=900)
        assert done.returncode == 0, err.decode()[-3000:]
        received = srv.count()
        answered_to_a_client = srv.served  # answers a living client read
        assert srv.wasted == sum(held)  # the held answers went to killed clients
    llm = json.loads((out / "stats.json").read_text())["llm"]
    run = json.loads((out / "run.json").read_text())
    assert len(run["attempts"]) == 3 and "llm" not in run["attempts"][0] and "llm" not in run["attempts"][1]
    assert llm["attempts"] == received  # every request the endpoint received, killed attempts included
    assert llm["unanswered"] == sum(held) >= 2  # in flight at the kills: received, answer never read
    assert llm["requests"] == received - sum(held) == answered_to_a_client
    assert llm["prompt_tokens"] > 0 and llm["completion_tokens"] > 0
    # the last attempt alone (its Beam counters) bought less than the whole output did
    assert run["attempts"][2]["llm"]["requests"] < llm["requests"]
    for f in (out / LEDGER_DIR).iterdir():  # counts only: no key, no request text, no URL
        text = f.read_text()
        assert API_KEY not in text and "messages" not in text and "127.0.0.1" not in text
    card = (out / "README.md").read_text()
    assert f"{llm['unanswered']} of them were in flight when a run was killed" in card


def test_ledger_totals_pair_events_and_count_batch_results_once(tmp_path: Path):
    ledger = SpendLedger(str(tmp_path / LEDGER_DIR))
    a, b, c = ledger.new_id(), ledger.new_id(), ledger.new_id()
    ledger.sent(a)
    ledger.answered(a, TokenUsage(10, 5, 2), 0.25)
    ledger.sent(b)
    ledger.failed(b, 429)
    ledger.sent(c)  # in flight when the process died
    ledger.failed(ledger.new_id(), "APIConnectionError")  # never reached the endpoint: not an attempt
    d, e = ledger.new_id(), ledger.new_id()
    ledger.sent(d, "judge")  # another stage's lines: in the totals, and by stage
    ledger.answered(d, TokenUsage(4, 1, 0), 0.125, "judge")
    ledger.sent(e, "judge")  # the judge's request in flight at the kill
    ledger.batch_result("k1", TokenUsage(7, 3, 0), 0.5)
    ledger.batch_result("k1", TokenUsage(7, 3, 0), 0.5)  # collected again after a kill: counted once
    ledger.close()
    with open(ledger.path, "ab") as f:
        f.write(b'{"e": "sent", "id": "torn')  # a torn line is skipped
    t = ledger_totals(str(tmp_path))
    assert t == {"attempts": 5, "requests": 3, "unanswered": 2, "failed_attempts": 2, "batch_requests": 1,
                 "prompt_tokens": 21, "completion_tokens": 9, "cached_tokens": 2, "cost_usd": 0.875,
                 "by_stage": {"judge": {"attempts": 2, "requests": 1, "prompt_tokens": 4, "completion_tokens": 1,
                                        "cached_tokens": 0, "cost_usd": 0.125}}}
    assert ledger_totals(str(tmp_path / "elsewhere")) is None
    assert ledger_totals("s3://bucket/out") is None


@pytest.mark.parametrize("fault", ["500", "disconnect"])
def test_failed_attempts_are_in_the_ledger(tmp_path: Path, fault: str):
    from facecorpus.generation.ledger import process_ledger
    from tests.generation.test_generation import client, config, one
    from tests.support.llm_fault_server import Rule

    with FaultServer(rules=[Rule(fault, times=1)]) as srv:
        cfg = config(srv, categories=["pose"])
        c = client(cfg)
        c.transport.ledger = process_ledger(str(tmp_path))
        out = one(cfg, c, marker=fault)
        assert out.failure is None
        received = srv.count()
    t = ledger_totals(str(tmp_path))
    assert t is not None and t["attempts"] == received == 2 and t["requests"] == 1 and t["failed_attempts"] == 1
