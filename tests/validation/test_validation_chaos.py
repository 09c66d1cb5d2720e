"""Chaos: the openai generator against the loopback fault server (tests/support/llm_fault_server.py).

A run with transient faults (429 with Retry-After, 503, dropped connections, a timeout), a request
that keeps failing (HTTP 500), a refusal that survives the re-ask, and an answer that contradicts the
labels completes with every invariant true; the persistent failure is a `retryable` reject that
`--retry-rejects` turns into a sample once the endpoint recovers, buying only its requests again.
A run killed mid-generation resumes without buying answers twice (except those in flight at the kill).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from facecorpus.demo import build_demo_inputs
from facecorpus.pipeline import run_recipe
from facecorpus.recipe import validate_recipe
from facecorpus.records import DEFAULT_CATEGORIES
from tests.support.helpers import REPO, run_cli, write_recipe
from tests.support.llm_fault_server import FaultServer, Rule
from tests.support.stage_labels import assert_reject_stages_are_labels
from tests.validation.test_resume import EPOCH, records, reject_lines


@pytest.fixture(scope="module")
def llm_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_inputs(tmp_path_factory.mktemp("chaos-in"))


def _recipe_data(inputs: Path, base_url: str, cache: Path, **openai: Any) -> dict[str, Any]:
    ff = inputs / "fairface"
    return {
        "name": "chaos",
        "sources": [{"type": "fairface", "images": str(ff / "fairface-img-margin025-trainval.zip"),
                     "labels": [str(ff / "fairface_label_val.csv")], "split": "val"}],
        "generation": {
            "generator": "openai", "prompt_set": "fairfacegpt", "cache": {"dir": str(cache)},
            "openai": {"base_url": base_url, "api_key_env": None, "timeout_s": 0.5, "concurrency": 4, **openai},
            "retries": {"max_attempts": 6, "initial_s": 0.01, "max_s": 0.05},
        },
        "output": {"samples_per_shard": 2},
        # the fault server writes one sentence for every category; the junk checks (same answer under two
        # categories) are tested apart (test_validation_junk.py), this test is about faults and invariants
        "validation": {"junk": "off"},
    }


def _label_breaking_answer(body: dict[str, Any]) -> str | None:
    text = json.dumps(body)
    return "A woman with long hair, smiling at the camera." if "Black ethnicity" in text else None


def test_chaos_run_keeps_every_invariant_and_retry_rejects_recovers(llm_inputs: Path, tmp_path: Path):
    rules = [
        Rule("500", when="East Asian ethnicity"),  # this input's requests keep failing
        Rule("refusal_text", when="White ethnicity, in his fifties"),  # refuses, and again after the re-ask
        Rule("429", times=3, retry_after=0.05), Rule("503", times=2), Rule("disconnect", times=2), Rule("timeout", times=1),
    ]
    out = tmp_path / "out"
    with FaultServer(rules=rules, timeout_sleep_s=1.0, answer=_label_breaking_answer) as srv:
        recipe = validate_recipe(_recipe_data(llm_inputs, srv.base_url, tmp_path / "cache"), "chaos", llm_inputs)
        stats = run_recipe(recipe, str(out)).stats
        assert stats["inputs"] == stats["written"] + stats["rejected"] and stats["written"] > 0
        for fault, n in (("429", 3), ("503", 2), ("disconnect", 2), ("timeout", 1)):
            assert srv.count(fault) == n, fault  # the transient faults really happened, and cost no input
        rejects = [json.loads(x) for x in reject_lines(out)]
        by_id = {r["source_id"]: r for r in rejects if r["key"]}  # (val/1.jpg also has a keyless duplicate_row)
        failed = by_id["val/5.jpg"]
        assert (failed["stage"], failed["reason"], failed["retryable"]) == ("generate", "llm_error", True), failed
        for sid in ("val/1.jpg", "val/3.jpg"):
            r = by_id[sid]
            assert (r["stage"], r["reason"], r["retryable"]) == ("validate", "refusal", False), r
            assert r["categories"] == list(DEFAULT_CATEGORIES) and "can't help" in r["detail"]
        conflict = by_id["val/6.jpg"]
        assert conflict["reason"] == "label_conflict" and "woman" in conflict["detail"], conflict
        assert by_id["val/4.jpg"]["reason"] == "duplicate"
        assert_reject_stages_are_labels(out, {"source", "dedup", "generate", "validate"})  # graph rebuilt, not run
        retryable = [r for r in rejects if r["retryable"]]
        # val/5 for sure; an unlucky request that met several transient faults in a row may join it
        assert failed in retryable and all(r["stage"] == "generate" and r["reason"] == "llm_error" for r in retryable)
        assert stats["validation"]["refusals_by_category"] == {c: 2 for c in DEFAULT_CATEGORIES}
        assert run_cli("validate", str(out)).returncode == 0

        srv.rules = []  # the endpoint has recovered
        answered = {json.dumps(r.body, sort_keys=True) for r in srv.chat_requests() if r.fault == "ok"}
        before = srv.count()
        lines_before = reject_lines(out)
        stats2 = run_recipe(recipe, str(out), retry_rejects=True).stats
        bought = srv.chat_requests()[before:]
        assert sum("East Asian ethnicity" in json.dumps(r.body) for r in bought) == len(DEFAULT_CATEGORIES)
        assert not {json.dumps(r.body, sort_keys=True) for r in bought} & answered  # nothing bought twice
        assert stats2["written"] == stats["written"] + len(retryable)
        assert stats2["rejected"] == stats["rejected"] - len(retryable)
        assert stats2["inputs"] == stats2["written"] + stats2["rejected"]
        # stats.json's spend covers the whole output: the first attempt's plus what the retry bought
        attempts = json.loads((out / "run.json").read_text())["attempts"]
        assert [a["mode"] for a in attempts] == ["fresh", "retry_rejects"]
        assert attempts[1]["llm"]["requests"] == len(DEFAULT_CATEGORIES)
        assert stats2["llm"]["requests"] == stats["llm"]["requests"] + len(DEFAULT_CATEGORIES)
        assert stats2["llm"]["attempts"] == attempts[0]["llm"]["attempts"] + attempts[1]["llm"]["attempts"]
        assert reject_lines(out) == sorted(x for x in lines_before if not json.loads(x)["retryable"])
        assert run_cli("validate", str(out)).returncode == 0


def test_a_killed_llm_run_resumes_without_buying_answers_twice(llm_inputs: Path, tmp_path: Path):
    with FaultServer(latency_s=0.15) as srv:
        # a generous request timeout: with the recipe's 0.5 s, a busy machine let answered requests time out on
        # the client and be retried, which the server counts as bought twice though no kill was involved
        data = _recipe_data(llm_inputs, srv.base_url, tmp_path / "cache", concurrency=2, timeout_s=60)
        recipe = write_recipe(tmp_path / "recipe.yaml", data)
        out = tmp_path / "out"
        env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
        proc = subprocess.Popen([sys.executable, "-m", "facecorpus.cli", "run", str(recipe), "--out", str(out)], cwd=REPO,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        while proc.poll() is None and srv.count() < 16:  # a third of the answers bought
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        in_flight = srv.in_flight
        done = run_cli("run", str(recipe), "--out", str(out), "--resume", env={"SOURCE_DATE_EPOCH": EPOCH})
        assert done.returncode == 0, done.stderr[-3000:]
        bodies = Counter(json.dumps(r.body, sort_keys=True) for r in srv.chat_requests())
        twice = sum(n - 1 for n in bodies.values() if n > 1)
        print(f"killed after {sum(bodies.values()) - twice} distinct requests bought in all; {twice} bought twice "
              f"({in_flight} were in flight at the kill)")
        assert twice <= max(in_flight, 2), (twice, in_flight)  # at most the answers in flight at the kill

        ref = tmp_path / "ref"
        before = srv.count()
        assert run_cli("run", str(recipe), "--out", str(ref), env={"SOURCE_DATE_EPOCH": EPOCH}).returncode == 0
        assert srv.count() == before  # everything was in the cache already

        def without_usage(recs: dict[str, bytes]) -> dict[str, Any]:
            out_ = {}
            for k, v in recs.items():
                rec = json.loads(v)
                rec["provenance"].pop("usage")  # bought in one run, a cache hit in the other
                out_[k] = rec
            return out_

        assert without_usage(records(out)) == without_usage(records(ref))
        assert reject_lines(out) == reject_lines(ref)
        assert run_cli("validate", str(out)).returncode == 0
