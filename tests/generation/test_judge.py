"""The LLM judge (generation/judge.py) on Beam's FnApiRunner against the loopback fault server (a real
HTTP server speaking the OpenAI API to the real openai client, standing in for a judging model, which
cannot run offline here; the real local server is in test_generation_local.py). The scripted judge
scores each sample from a hash of its texts, so which samples must pass, be rejected or flagged is
known to the test; faults (an invalid verdict, a 500, a 400) go through the client's re-ask, retry
and failure paths."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from facecorpus.generation.accounting import TokenUsage
from facecorpus.generation.config import JUDGE_CRITERIA
from facecorpus.generation.judge import judge_config, low_criteria, read_verdict, verdict_format
from facecorpus.generation.judging import judge
from facecorpus.generation.ledger import ledger_totals
from facecorpus.generation.outcome import Completion
from facecorpus.pipeline import run_recipe
from facecorpus.recipe import validate_recipe
from facecorpus.records import Reject, Sample
from tests.support.llm_fault_server import FaultServer, Rule
from tests.support.stage_labels import assert_reject_stages_are_labels


def _texts(body: dict[str, Any]) -> str:
    user = body["messages"][1]["content"]
    return user if isinstance(user, str) else next(p["text"] for p in user if p.get("type") == "text")


class ScriptedJudge:
    """Scores 5 everywhere except: on_topic 2 for texts whose hash is 0 mod 3, consistent 1 for 1 mod 5."""

    def __init__(self) -> None:
        self.low: dict[str, list[str]] = {}  # the texts' caption → the criteria it scored low on

    def __call__(self, body: dict[str, Any]) -> str | None:
        rf = body.get("response_format") or {}
        if (rf.get("json_schema") or {}).get("name") != "SampleVerdict":
            return None
        text = _texts(body)
        caption = text.split("Caption: ", 1)[1].split("\n", 1)[0]
        h = int(hashlib.sha256(caption.encode()).hexdigest()[:8], 16)
        verdict = {c: {"reason": f"{c} looks fine", "score": 5} for c in JUDGE_CRITERIA}
        if h % 3 == 0:
            verdict["on_topic"] = {"reason": "the demographics answer talks about the lighting", "score": 2}
        if h % 5 == 1:
            verdict["consistent"] = {"reason": "the caption says a man, the facts say a woman", "score": 1}
        self.low[caption] = [c for c in JUDGE_CRITERIA if verdict[c]["score"] < 3]
        return json.dumps(verdict)


def _recipe(demo_inputs: Path, base_url: str, cache: Path, **judge: Any):  # noqa: ANN202 - a Recipe
    ff = demo_inputs / "fairface"
    return validate_recipe({
        "name": "judged",
        "sources": [{"type": "fairface", "images": str(ff / "fairface-img-margin025-trainval.zip"),
                     "labels": [str(ff / "fairface_label_val.csv")], "split": "val", "limit": 12}],
        "faces": {"backend": "none"},
        "generation": {"generator": "templates", "categories": ["demographics", "detail"],
                       "cache": {"dir": str(cache)},
                       "openai": {"base_url": base_url, "api_key_env": None, "model": "fake-judge", "concurrency": 4},
                       "judge": {"enabled": True, **judge}},
        "validation": {"dedup": {"near": False}},
        "runner": {"runner": "FnApiRunner"},
    }, "test", demo_inputs)


def _samples(out: Path) -> list[Sample]:
    found = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            found += [Sample.model_validate_json(tar.extractfile(m).read())  # type: ignore[union-attr]
                      for m in tar.getmembers() if m.name.endswith(".json")]
    return found


def _rejects(out: Path) -> list[Reject]:
    return [Reject.model_validate_json(line) for f in (out / "rejects").glob("*.jsonl")
            for line in f.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def judged(demo_inputs: Path, tmp_path_factory) -> dict[str, Any]:
    """Run 1 rejects low samples; one verdict is invalid JSON once (re-asked), one request gets a 500
    (retried), one a 400 (no verdict: judge_failed). Run 2, same cache, flags instead of rejecting."""
    root = tmp_path_factory.mktemp("judge")
    scripted = ScriptedJudge()
    # the 500 and the 400 never meet the re-ask of the invalid verdict (in flight at once, they could: the
    # re-ask then failed with the 400, was not bought and not counted, and the counts below were off by one)
    rules = [Rule("invalid_json", times=1), Rule("500", times=1, first_turn_only=True),
             Rule("400", times=1, first_turn_only=True)]
    with FaultServer(rules=rules, answer=scripted, model="fake-judge") as srv:
        first = run_recipe(_recipe(demo_inputs, srv.base_url, root / "cache"), str(root / "out1")).stats
        sent_first = srv.count()
        second = run_recipe(_recipe(demo_inputs, srv.base_url, root / "cache", on_low="flag"), str(root / "out2")).stats
        sent_second = srv.count() - sent_first
    return {"root": root, "scripted": scripted, "first": first, "second": second,
            "sent_first": sent_first, "sent_second": sent_second}


def test_low_samples_are_rejected_with_their_reasons_and_passing_ones_keep_their_scores(judged: dict[str, Any]):
    out, scripted, stats = judged["root"] / "out1", judged["scripted"], judged["first"]
    samples, rejects = _samples(out), _rejects(out)
    assert stats["inputs"] == stats["written"] + stats["rejected"] == 12
    low = [r for r in rejects if r.reason == "judge_low_score"]
    failed = [r for r in rejects if r.reason == "judge_failed"]
    assert len(failed) == 1 and failed[0].retryable and "400" in failed[0].detail
    assert all(r.stage == "judge" for r in low + failed)
    expected_low = {c for c, crit in scripted.low.items() if crit}
    assert low and samples  # the scripted hash gives both
    for r in low:
        assert "on_topic 2/5: the demographics answer talks about the lighting" in r.detail or \
            "consistent 1/5: the caption says a man, the facts say a woman" in r.detail
    for s in samples:
        assert s.caption not in expected_low
        j = s.judgement
        assert j is not None and j.passed and set(j.scores) == set(JUDGE_CRITERIA) and min(j.scores.values()) >= 3
        assert j.reasons["on_topic"] == "on_topic looks fine" and j.min_score == 3
        assert j.llm_model == "fake-judge" and j.prompt_set == "judge" and len(j.prompt_sha256) == 64
        assert j.usage.requests + j.usage.cache_hits >= 1
    before = [r for r in rejects if r.stage != "judge"]  # the demo's broken files, rejected by the image checks
    assert {r.stage for r in before} == {"image"} and len(samples) + len(low) + len(failed) == 12 - len(before)
    assert_reject_stages_are_labels(out, {"image", "judge"})  # the graph of its recorded recipe, rebuilt, not run
    j = stats["llm"]["judge"]
    assert (j["judged"], j["passed"], j["low"], j["failed"]) == (len(samples) + len(low), len(samples), len(low), 1)
    assert j["failed_by"] == {"llm_error": 1}
    for criterion, score in (("on_topic", 2), ("consistent", 1)):
        assert j["low_by"].get(criterion, 0) == sum(f"{criterion} {score}/5" in r.detail for r in low)
    assert set(j["mean_score"]) == set(JUDGE_CRITERIA) and all(1 <= v <= 5 for v in j["mean_score"].values())


def test_every_judge_request_is_in_the_ledger_stats_and_card(judged: dict[str, Any]):
    out, stats = judged["root"] / "out1", judged["first"]
    ledger = ledger_totals(str(out))
    assert ledger is not None
    # every chat request the server saw came from the judge (the templates generator asks nothing)
    assert ledger["attempts"] == judged["sent_first"] == ledger["by_stage"]["judge"]["attempts"]
    j = stats["llm"]["judge"]
    assert j["attempts"] == judged["sent_first"]
    assert j["requests"] == ledger["by_stage"]["judge"]["requests"] == judged["sent_first"] - 2  # the 500 and the 400
    assert stats["llm"]["reasks"] == 1 and stats["llm"]["retries"] >= 1
    card = (out / "README.md").read_text()
    assert "## LLM judge" in card and f"{j['judged']} samples were scored" in card and "| on_topic |" in card


def test_a_rerun_is_judged_from_the_cache_and_flag_mode_keeps_low_samples(judged: dict[str, Any]):
    out, first, second = judged["root"] / "out2", judged["first"], judged["second"]
    assert judged["sent_second"] == 1  # only the request that got no verdict (the 400) is asked again
    assert second["rejected"] == first["rejected"] - len([r for r in _rejects(judged["root"] / "out1")
                                                          if r.stage == "judge"])
    samples = _samples(out)
    flagged = [s for s in samples if any(f.startswith("judge_low:") for f in s.flags)]
    assert flagged and all(s.judgement is not None and not s.judgement.passed for s in flagged)
    for s in flagged:
        low = judged["scripted"].low[s.caption]
        assert sorted(f.split(":", 1)[1] for f in s.flags if f.startswith("judge_low:")) == sorted(low)
    assert second["llm"]["judge"]["cache_hits"] >= second["llm"]["judge"]["judged"] - 1


def test_verdicts_outside_the_schema_are_refused_and_thresholds_apply():
    rf = verdict_format()
    good = {c: {"reason": "fine", "score": 4} for c in JUDGE_CRITERIA}

    def completion(data: Any) -> Completion:
        return Completion(key="k", content=json.dumps(data), refusal=None, finish_reason="stop", model="m",
                          usage=TokenUsage(), cost_usd=0.0, from_cache=False)

    value, failure = judge(completion(good), rf, 100)
    assert failure is None and read_verdict(value) == ({c: 4 for c in JUDGE_CRITERIA}, {c: "fine" for c in JUDGE_CRITERIA})
    for bad in ({**good, "on_topic": {"reason": "x", "score": 7}}, {**good, "extra": 1},
                {c: v for c, v in good.items() if c != "no_identity"}, {**good, "consistent": {"score": 3}}):
        _, failure = judge(completion(bad), rf, 100)
        assert failure is not None and failure.reason == "llm_invalid_json"
    assert low_criteria({**{c: 4 for c in JUDGE_CRITERIA}, "no_identity": 2}, 3) == ["no_identity"]
    assert low_criteria({c: 4 for c in JUDGE_CRITERIA}, 5) == list(JUDGE_CRITERIA)


def test_the_judge_may_use_its_own_endpoint(demo_inputs: Path, tmp_path: Path):
    recipe = _recipe(demo_inputs, "http://127.0.0.1:9/v1", tmp_path,
                     openai={"base_url": "http://127.0.0.1:8/v1", "model": "judge-model", "api_key_env": None},
                     max_tokens=321)
    cfg = judge_config(recipe)
    assert (cfg.openai.base_url, cfg.openai.model, cfg.openai.max_tokens) == ("http://127.0.0.1:8/v1", "judge-model", 321)
    assert cfg.prompt_set == "judge" and cfg.mode == "online" and recipe.generation.prompt_set == "fairfacegpt"


def test_request_timeouts_default_per_endpoint():
    from facecorpus.generation.config import LOCAL_TIMEOUT_S, REMOTE_TIMEOUT_S, OpenAIConfig

    assert OpenAIConfig().request_timeout() == REMOTE_TIMEOUT_S == 120.0
    assert OpenAIConfig(base_url="local").request_timeout() == LOCAL_TIMEOUT_S  # the run's own server: slow, not broken
    assert OpenAIConfig(base_url="local", timeout_s=30).request_timeout() == 30.0
