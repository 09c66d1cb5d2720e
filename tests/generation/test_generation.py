"""The LLM engine against the loopback fault server (tests/support/llm_fault_server.py): retries with one layer,
Retry-After, budgets, bounded concurrency, the response cache, re-asks and rejects, accounting."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from facecorpus.generation.accounting import TokenUsage, cost_usd, price_for
from facecorpus.generation.cache import ResponseCache, cache_key
from facecorpus.generation.client import LLMClient
from facecorpus.generation.config import GenerationConfig, PriceConfig
from facecorpus.generation.endpoint import endpoint_id
from facecorpus.generation.handler import OpenAIChatHandler
from facecorpus.generation.limits import TokenBucket
from facecorpus.generation.outcome import GenerationOutcome
from facecorpus.generation.retries import redact, retry_after_s
from facecorpus.prompting.promptset import load_prompt_set
from facecorpus.prompting.render import ImageOptions, RenderedPrompt, render_prompt
from facecorpus.records import AttributeValue
from tests.support.llm_fault_server import REFUSAL, FaultServer, Rule

LABELS = {"gender": AttributeValue(value="male", source="label"), "age": AttributeValue(value="50-59", source="label")}


def config(srv: FaultServer, **over: Any) -> GenerationConfig:
    data: dict[str, Any] = {
        "generator": "openai",
        "prompt_set": over.pop("prompt_set", "fairfacegpt"),
        "categories": over.pop("categories", ["demographics", "pose"]),
        "openai": {"base_url": srv.base_url, "api_key_env": None, "timeout_s": 0.5, "concurrency": 4,
                   **over.pop("openai", {})},
        "retries": {"initial_s": 0.01, "max_s": 2.0, "max_attempts": 4, **over.pop("retries", {})},
        **over,
    }
    return GenerationConfig.model_validate(data)


def client(cfg: GenerationConfig, cache: Path | None = None, key: str | None = None) -> LLMClient:
    return LLMClient(cfg, cfg.openai.base_url, key, str(cache) if cache else None, endpoint_id(cfg.openai.base_url, "smollm2"))


def prompts(cfg: GenerationConfig, n: int = 1, marker: str = "") -> list[RenderedPrompt]:
    """n distinct items (a marker in the labels' place keeps their requests apart)."""
    ps = load_prompt_set(cfg.prompt_set, extra_topics=cfg.topics)
    out = []
    for i in range(n):
        labels = {**LABELS, "race": AttributeValue(value=["white", "black", "indian", "east_asian"][i % 4], source="label")}
        p = render_prompt(ps, cfg.categories, labels, None, None, ImageOptions(send=False))
        if marker or n > 4:  # make every item's text unique so the cache cannot merge them
            for r in p.requests:
                r.messages[1]["content"] += f" [{marker}{i}]"
        out.append(p)
    return out


def one(cfg: GenerationConfig, c: LLMClient, marker: str = "") -> GenerationOutcome:
    return c.generate(prompts(cfg, 1, marker))[0]


# ------------------------------------------------------------------------------------------- retries


def test_429_with_retry_after_is_waited_out(tmp_path: Path):
    with FaultServer(rules=[Rule("429", times=1, retry_after=0.6)]) as srv:
        cfg = config(srv, categories=["pose"])
        out = one(cfg, client(cfg))
        assert out.failure is None and out.qa[0].category == "pose"
        first, second = srv.chat_requests()
        assert first.fault == "429" and second.fault == "ok"
        assert second.t - first.t >= 0.6  # exactly the server's wish, not our own (0.01 s) backoff
        assert out.spend.counts["retries"] == 1 and out.spend.counts["retry.429"] == 1


@pytest.mark.parametrize("fault", ["500", "503", "timeout", "disconnect", "bad_body"])
def test_transient_failures_are_retried_then_succeed(fault: str):
    with FaultServer(rules=[Rule(fault, times=2)], timeout_sleep_s=1.0) as srv:
        cfg = config(srv, categories=["pose"])
        out = one(cfg, client(cfg))
        assert out.failure is None, out.failure
        assert [r.fault for r in srv.chat_requests()] == [fault, fault, "ok"]
        assert out.spend.counts["retries"] == 2 and out.usage.requests == 1


def test_exactly_one_retry_layer():
    with FaultServer(rules=[Rule("500")]) as srv:
        cfg = config(srv, categories=["pose"], retries={"max_attempts": 3})
        c = client(cfg)
        assert c.openai.max_retries == 0  # the openai client's own retries are off
        assert OpenAIChatHandler(cfg, None, "per_category").num_retries == 0  # and Beam's
        out = one(cfg, c)
        assert srv.count() == 3  # 3 attempts in all, not 3 x 3 or 3 x 2
        assert out.failure is not None and out.failure.reason == "llm_error" and out.failure.retryable
        assert "HTTP 500" in out.failure.detail and "category pose" in out.failure.detail


@pytest.mark.parametrize("fault", ["400", "401"])
def test_other_client_errors_are_not_retried(fault: str):
    with FaultServer(rules=[Rule(fault)]) as srv:
        cfg = config(srv, categories=["pose"])
        out = one(cfg, client(cfg, key="sk-test-verysecret-0123456789"))
        assert srv.count() == 1
        assert out.failure is not None and out.failure.reason == "llm_error" and not out.failure.retryable
        assert f"HTTP {fault}" in out.failure.detail
        assert "0123456789" not in out.failure.detail and "sk-" not in out.failure.detail  # 401 echoes the key


def test_retry_after_forms():
    class Exc:
        def __init__(self, headers: dict[str, str]) -> None:
            self.response = type("R", (), {"headers": headers})()

    assert retry_after_s(Exc({"retry-after": "2"})) == 2.0
    assert retry_after_s(Exc({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert retry_after_s(Exc({"retry-after": "Wed, 21 Oct 2015 07:28:05 GMT"}), now=1445412480.0) == 5.0
    assert retry_after_s(Exc({})) is None and retry_after_s(None) is None


def test_redact_removes_keys_and_echoes():
    text = "Incorrect API key provided: sk-abc********wxyz. Also sk-proj-0123456789abcdef and mysecret"
    clean = redact(text, ("mysecret",))
    assert "sk-" not in clean and "mysecret" not in clean and "wxyz" not in clean


# ------------------------------------------------------------------------------- budgets, concurrency


def test_token_bucket_never_exceeds_rate_plus_burst():
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)

    bucket = TokenBucket(per_minute=600, clock=lambda: now[0], sleep=sleep)  # 10/s, burst 10
    starts = []
    for _ in range(40):
        w = bucket.reserve(1)
        starts.append(now[0] + w)
    assert starts[:10] == [0.0] * 10
    assert starts[-1] == pytest.approx(3.0)  # 30 more at 10/s
    for t in starts:  # any 1-second window holds at most rate*1 + burst
        assert sum(1 for s in starts if t <= s < t + 1.0) <= 20
    bucket.refund(5)
    now[0] = 10.0
    assert bucket.reserve(1) == 0.0


def test_rpm_budget_holds_against_the_server():
    with FaultServer() as srv:
        cfg = config(srv, categories=["pose"], openai={"concurrency": 8}, limits={"rpm": 1200})  # 20/s, burst 20
        c = client(cfg)
        t0 = time.monotonic()
        outs = c.generate(prompts(cfg, 40, marker="rpm"))
        elapsed = time.monotonic() - t0
        assert all(o.failure is None for o in outs)
        times = sorted(r.t for r in srv.chat_requests())
        assert len(times) >= 40  # more when a request timed out (0.5 s) on a busy machine and was retried
        assert elapsed >= (40 - 20) / 20 * 0.95  # the 20 beyond the burst waited for refills
        for t in times:
            assert sum(1 for s in times if t <= s < t + 1.0) <= 20 + 20 + 1


def test_tpm_budget_slows_big_requests():
    with FaultServer() as srv:
        cfg = config(srv, categories=["pose"], openai={"max_tokens": 300}, limits={"tpm": 60_000})  # 1000/s
        c = client(cfg)
        t0 = time.monotonic()
        outs = c.generate(prompts(cfg, 8, marker="tpm"))
        assert all(o.failure is None for o in outs)
        # each request reserves ~300 + its prompt (~400) tokens: 8 of them ≈ 5,600 tokens, burst 1,000
        assert time.monotonic() - t0 >= 3.0


def test_concurrency_is_bounded_and_used():
    with FaultServer(latency_s=0.25) as srv:
        cfg = config(srv, categories=["pose", "expression", "detail"], openai={"concurrency": 6})
        c = client(cfg)
        outs = c.generate(prompts(cfg, 8, marker="conc"))  # 24 requests
        assert all(o.failure is None for o in outs)
        # The server saw six at once and never more: concurrency is used up to its bound. No wall-clock
        # bound here; a busy machine slows the run without changing what the server saw.
        assert srv.max_in_flight == 6


# -------------------------------------------------------------------------------------------- cache


def test_cache_makes_a_rerun_free_and_a_changed_prompt_buys_again(tmp_path: Path):
    with FaultServer() as srv:
        cfg = config(srv)
        items = prompts(cfg, 3, marker="cache")
        first = client(cfg, tmp_path).generate(items)
        assert srv.count() == 6 and all(o.usage.requests == 2 for o in first)
        again = client(cfg, tmp_path).generate(items)  # a new worker, same cache folder
        assert srv.count() == 6
        assert all(o.usage.cache_hits == 2 and o.usage.requests == 0 for o in again)
        assert [o.qa for o in again] == [o.qa for o in first]
        assert all(o.usage.prompt_tokens == f.usage.prompt_tokens for o, f in zip(again, first, strict=True))
        assert sum(o.spend.counts["cache_hits"] for o in again) == 6 and not any(o.spend.counts["requests"] for o in again)
        changed = prompts(cfg, 3, marker="cache-v2")
        client(cfg, tmp_path).generate(changed)
        assert srv.count() == 12
        hotter = cfg.model_copy(deep=True)
        hotter.openai.temperature = 0.9
        client(hotter, tmp_path).generate(items)  # a different parameter is a different request
        assert srv.count() == 18


def test_identical_requests_in_flight_are_bought_once(tmp_path: Path):
    with FaultServer(latency_s=0.2) as srv:
        cfg = config(srv, categories=["pose"])
        same = prompts(cfg, 1, marker="twin") * 4  # four items with the same image and labels
        outs = client(cfg, tmp_path).generate(same)
        assert srv.count() == 1
        assert sum(o.usage.requests for o in outs) == 1 and sum(o.usage.cache_hits for o in outs) == 3


def test_cache_key_covers_image_model_schema_and_version():
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]}],
        "max_tokens": 10}
    k = cache_key("e", body, "1")
    other_image = json.loads(json.dumps(body))
    other_image["messages"][0]["content"][1]["image_url"]["url"] = "data:image/jpeg;base64,AAAB"
    assert len({k, cache_key("e", other_image, "1"), cache_key("e", {**body, "model": "n"}, "1"),
                cache_key("e", {**body, "response_format": {"type": "json_object"}}, "1"),
                cache_key("e", body, "2"), cache_key("f", body, "1")}) == 6
    assert endpoint_id("http://127.0.0.1:1234/v1", "x") == endpoint_id("http://localhost:999/v1", "x")
    assert endpoint_id("local", "smollm2") == "local:smollm2"


def test_cache_key_is_the_key_caches_were_written_under():
    # the value json.dumps({"body", "endpoint", "prompt_version"}, sort_keys=True, ensure_ascii=False) gave
    # before the key was built piece by piece: caches already written stay valid (no cache version bump)
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    body = {"model": "m", "messages": [{"role": "system", "content": "Describe – the face."}, {"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]}],
        "max_tokens": 10, "temperature": 0.2, "seed": 7, "response_format": schema}
    pinned = "f0fc49defd7eba0cf929cedabae810084c9c15429c1d41da2874626b34d8f3aa"
    assert cache_key("loopback/v1", body, "3") == cache_key("loopback/v1", dict(reversed(body.items())), "3") == pinned
    schema["json_schema"]["name"] = "b"  # the remembered serialisation of a schema object follows a change to it
    assert cache_key("loopback/v1", body, "3") != pinned


def test_damaged_cache_entry_is_a_miss_and_is_rewritten(tmp_path: Path):
    with FaultServer() as srv:
        cfg = config(srv, categories=["pose"])
        items = prompts(cfg, 1, marker="torn")
        client(cfg, tmp_path).generate(items)
        files = list(tmp_path.rglob("*.json"))
        assert len(files) == 1
        files[0].write_text('{"content": "half', encoding="utf-8")
        out = client(cfg, tmp_path).generate(items)[0]
        assert out.failure is None and srv.count() == 2
        assert json.loads(files[0].read_text())["content"]
        assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes leave no temporary files


def test_paid_answers_are_cached_even_when_rejected(tmp_path: Path):
    with FaultServer(rules=[Rule("truncated")]) as srv:
        cfg = config(srv, categories=["pose"])
        out = one(cfg, client(cfg, tmp_path), marker="paid")
        assert out.failure is not None and out.failure.reason == "llm_truncated"
        assert srv.count() == 2 and len(list(tmp_path.rglob("*.json"))) == 2  # question + re-ask, both kept
        one(cfg, client(cfg, tmp_path), marker="paid")
        assert srv.count() == 2


# ------------------------------------------------------------------------------------ judge / re-ask


@pytest.mark.parametrize(
    ("fault", "reason", "prompt_set"),
    [
        ("truncated", "llm_truncated", "fairfacegpt"),
        ("refusal", "refusal", "fairfacegpt"),
        ("empty", "llm_empty", "fairfacegpt"),
        ("invalid_json", "llm_invalid_json", "structured"),
        ("truncated", "llm_truncated", "structured"),
    ],
)
def test_bad_answers_get_one_reask_then_reject(fault: str, reason: str, prompt_set: str):
    with FaultServer(rules=[Rule(fault, times=1)]) as srv:
        cfg = config(srv, prompt_set=prompt_set, categories=["pose"])
        out = one(cfg, client(cfg), marker=fault + "1")
        assert out.failure is None, out.failure
        assert srv.count() == 2
        second = srv.chat_requests()[1].body["messages"]
        assert second[-2]["role"] == "assistant" and second[-1]["role"] == "user"
        assert out.spend.counts["reasks"] == 1 and out.spend.counts[f"reask.{reason}"] == 1
    with FaultServer(rules=[Rule(fault)]) as srv:
        cfg = config(srv, prompt_set=prompt_set, categories=["pose"])
        out = one(cfg, client(cfg), marker=fault + "2")
        assert srv.count() == 2  # asked, re-asked once, gave up
        assert out.failure is not None and out.failure.reason == reason and out.failure.detail
        assert out.spend.counts[f"failure.{reason}"] == 1


def test_refusal_in_text_is_reasked_then_left_to_validation():
    with FaultServer(rules=[Rule("refusal_text")]) as srv:
        cfg = config(srv, categories=["pose"])
        out = one(cfg, client(cfg), marker="rt")
        assert srv.count() == 2
        assert "consented research dataset" in srv.chat_requests()[1].body["messages"][-1]["content"]
        # kept: validation (issue 5) rejects it `refusal` and counts it per category
        assert out.failure is None and out.qa[0].answer == REFUSAL


def test_skip_policy_keeps_the_categories_that_worked():
    with FaultServer(rules=[Rule("400", when="Describe only the face pose")]) as srv:
        cfg = config(srv, categories=["pose", "expression"], openai={"on_category_failure": "skip"})
        out = one(cfg, client(cfg), marker="skip")
        assert out.failure is None and [q.category for q in out.qa] == ["expression"]
        assert "skipped:pose" in out.flags


def test_structured_answer_becomes_caption_and_qa():
    with FaultServer() as srv:
        cfg = config(srv, prompt_set="structured", categories=["demographics", "pose"])
        out = one(cfg, client(cfg), marker="s")
        assert out.failure is None
        assert out.caption and [q.category for q in out.qa] == ["demographics", "pose"]
        assert all(q.question and q.answer for q in out.qa)
        assert srv.chat_requests()[0].body["response_format"]["json_schema"]["strict"] is True


# ----------------------------------------------------------------------------------------- accounting


def test_costs_use_the_price_table_with_cached_tokens_and_batch_discount():
    price = PriceConfig(input=2.5, cached_input=1.25, output=10.0)
    usage = TokenUsage(prompt=1_000_000, completion=100_000, cached=400_000)
    assert cost_usd(price, usage, batch=False, batch_discount=0.5) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25 + 1.0)
    assert cost_usd(price, usage, batch=True, batch_discount=0.5) == pytest.approx((1.5 + 0.5 + 1.0) / 2)
    prices = GenerationConfig().prices
    assert price_for(prices, "gpt-4o-2024-11-20").input == 2.5
    assert price_for(prices, "gpt-4o-mini-2024-07-18").input == 0.15  # longest prefix wins
    assert price_for(prices, "unknown-model") is None


def test_usage_per_record_and_spend_per_run(tmp_path: Path):
    with FaultServer(model="gpt-4o-2024-11-20") as srv:
        cfg = config(srv, categories=["pose", "detail"], openai={"model": "gpt-4o-2024-11-20"})
        out = one(cfg, client(cfg, tmp_path), marker="acct")
        bodies = [r.body for r in srv.chat_requests()]
        assert all(b["model"] == "gpt-4o-2024-11-20" for b in bodies)
        assert out.llm_model == "gpt-4o-2024-11-20"
        u = out.usage
        assert u.requests == 2 and u.prompt_tokens > 0 and u.completion_tokens > 0
        assert u.cost_usd == pytest.approx((u.prompt_tokens * 2.5 + u.completion_tokens * 10.0) / 1e6, rel=1e-6)
        assert out.spend.counts["prompt_tokens"] == u.prompt_tokens
        assert out.spend.counts["cost_microusd"] == round(u.cost_usd * 1e6)
        assert out.caption and out.caption == out.qa[1].answer.split("\n\n")[0]  # caption from 'detail'


def test_a_bug_in_one_request_does_not_lose_the_batch(monkeypatch: pytest.MonkeyPatch):
    with FaultServer() as srv:
        cfg = config(srv, categories=["pose"])
        c = client(cfg)
        real = c.answer
        calls = {"n": 0}
        lock = threading.Lock()

        def flaky(*a: Any, **k: Any):  # noqa: ANN202
            with lock:
                calls["n"] += 1
                n = calls["n"]
            if n == 2:
                raise RuntimeError("boom")
            return real(*a, **k)

        monkeypatch.setattr(c, "answer", flaky)
        outs = c.generate(prompts(cfg, 3, marker="bug"))
        assert [o.failure.reason if o.failure else None for o in outs].count("internal_error") == 1
        assert sum(1 for o in outs if o.failure is None) == 2


def test_cache_files_hold_no_request_and_no_key(tmp_path: Path):
    key = "sk-test-FACECORPUS-0123456789abcdef"
    with FaultServer(require_key=key) as srv:
        cfg = config(srv, categories=["pose"])
        out = one(cfg, client(cfg, tmp_path, key=key), marker="k")
        assert out.failure is None
        assert all(r.headers["authorization"] == f"Bearer {key}" for r in srv.chat_requests())
    entry = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert set(entry) == {"key", "content", "refusal", "finish_reason", "model", "usage", "cost_usd", "batch_id", "created_at"}
    assert key not in json.dumps(entry) and "messages" not in entry
    assert ResponseCache(str(tmp_path)).get(entry["key"]) == entry


def test_fixed_question_answers_and_extra_body_fields():
    with FaultServer() as srv:
        cfg = config(srv, prompt_set="compact", categories=["expression", "pose"],
                     openai={"extra_body": {"repeat_penalty": 1.3}})
        out = one(cfg, client(cfg), marker="fixed")
        assert out.failure is None
        assert [q.question for q in out.qa] == [
            "What can be said about the expression and emotion of the face in this image?",
            "What can be said about the head pose of the face in this image?",
        ]
        body = srv.chat_requests()[0].body
        assert body["repeat_penalty"] == 1.3 and body["response_format"]["json_schema"]["name"] == "FaceAnswers"


def _answers_to_check(categories: list[str]) -> list[Any]:
    """Valid structured answers and one broken variant per way an LLM gets the schema wrong."""
    valid = {"caption": "A calm face.", "qa": {c: {"question": "What shows?", "answer": "Calm."} for c in categories}}
    out: list[Any] = [valid]
    for mutate in (
        lambda d: d.pop("caption"),                                    # required key missing
        lambda d: d.update(extra="x"),                                 # extra key, additionalProperties false
        lambda d: d.update(caption=""),                                # minLength
        lambda d: d.update(caption="x" * 301),                         # maxLength (characters)
        lambda d: d.update(caption=7),                                 # wrong type
        lambda d: d["qa"][categories[0]].update(answer=None),          # nested wrong type
        lambda d: d["qa"].pop(categories[-1]),                         # nested required
        lambda d: d["qa"][categories[0]].update(note="x"),             # nested extra key
        lambda d: d.update(qa=[]),                                     # array instead of object
    ):
        broken = json.loads(json.dumps(valid))
        mutate(broken)
        out.append(broken)
    out += [[], "text", None, {"caption": "é" * 300, "qa": valid["qa"]}]  # 300 characters, more bytes: valid
    return out


@pytest.mark.parametrize("fixed", [False, True])
def test_the_judge_accepts_exactly_what_the_schema_allows(fixed: bool):
    """One validator decides: every way a model gets the schema wrong is `llm_invalid_json` with a place."""
    import jsonschema

    from facecorpus.generation.judging import judge
    from facecorpus.generation.outcome import Completion
    from facecorpus.prompting.render import response_format_for, structured_output_model

    categories = ["age", "expression"]
    bounds = {"caption_max_chars": 300, "answer_max_chars": 400, "question_max_chars": 150}
    response_format = response_format_for(structured_output_model(categories, bounds, fixed))
    validator = jsonschema.Draft202012Validator(response_format["json_schema"]["schema"])
    verdicts = []
    for answer in _answers_to_check(categories):
        if fixed and isinstance(answer, dict) and "qa" in answer:  # the fixed-question shape
            qa = answer.pop("qa")
            answer["answers"] = {k: v["answer"] if isinstance(v, dict) else v for k, v in qa.items()} if isinstance(qa, dict) else qa
        reply = Completion(key="k", content=json.dumps(answer), refusal=None, finish_reason="stop",
                           usage=TokenUsage(), cost_usd=0.0, model="m", from_cache=False)
        value, failure = judge(reply, response_format, max_tokens=100)
        if validator.is_valid(answer):
            assert failure is None and value == answer
        else:
            assert failure is not None and failure.reason == "llm_invalid_json" and value is None, answer
            assert "does not follow the schema at" in failure.detail
        verdicts.append(failure is None)
    # the valid answer and the 300-character (more bytes) one pass (and, with fixed questions, the extra
    # key that the reshaping above drops); every other variant is caught
    assert verdicts[0] and verdicts[-1] and verdicts.count(False) == (11 if fixed else 12)
