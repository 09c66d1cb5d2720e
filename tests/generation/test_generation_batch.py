"""Batch API mode. Offline, the Batch API (files + batches endpoints) can only be exercised against a
loopback fake — tests/support/llm_fault_server.py implements /v1/files and /v1/batches the way OpenAI documents
them (JSONL in, output and error files out, statuses validating → in_progress → completed/failed/expired).
These tests prove the client side: limits per file, persisted batch ids, resume without resubmitting,
mapping by custom_id, failures to rejects, the batch discount."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from facecorpus.errors import UserError
from facecorpus.generation.batch import batch_name, plan_files
from facecorpus.generation.config import GenerationConfig
from facecorpus.preflight import preflight
from tests.support.generation_helpers import run_generation, work_items
from tests.support.llm_fault_server import FaultServer, Rule


def batch_config(srv: FaultServer, state: Path, **batch: Any) -> GenerationConfig:
    return GenerationConfig.model_validate({
        "generator": "openai", "mode": "batch", "prompt_set": "fairfacegpt", "categories": ["pose", "detail"],
        "openai": {"base_url": srv.base_url, "api_key_env": None, "model": "gpt-4o-2024-11-20"},
        "retries": {"initial_s": 0.01},
        "batch": {"poll_initial_s": 0.05, "poll_max_s": 0.1, "state_dir": str(state), **batch},
    })


def uploaded_lines(srv: FaultServer) -> list[list[dict[str, Any]]]:
    return [[json.loads(x) for x in f["content"].splitlines()] for f in srv.files.values() if f["meta"]["purpose"] == "batch"]


def states(state: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(state.glob("*.json"))]


def test_files_respect_the_limits_and_answers_come_back_by_custom_id(tmp_path: Path):
    state, cache = tmp_path / "state", tmp_path / "cache"
    with FaultServer(model="gpt-4o-2024-11-20") as srv:
        cfg = batch_config(srv, state, max_requests_per_file=5)
        kept, rejects, totals = run_generation(cfg, work_items(7), str(cache))
        assert len(kept) == 7 and not rejects
        assert srv.count() == 0  # nothing went to the online endpoint
        files = uploaded_lines(srv)
        assert sorted(len(f) for f in files) == [4, 5, 5] and len(srv.batches) == 3
        lines = [line for f in files for line in f]
        assert len({line["custom_id"] for line in lines}) == 14
        assert all(line["method"] == "POST" and line["url"] == "/v1/chat/completions" for line in lines)
        assert all(line["body"]["model"] == "gpt-4o-2024-11-20" for line in lines)
        assert {line["custom_id"] for line in lines} == {p.stem for p in cache.rglob("*.json")}
        saved = states(state)
        assert len(saved) == 3 and all(s["downloaded"] and s["status"] == "completed" for s in saved)
        assert {s["batch_id"] for s in saved} == set(srv.batches)
        assert totals["requests"] == totals["batch_requests"] == 14 and totals["cache_hits"] == 0
        for item in kept:  # half price: the batch discount
            u = item.provenance.usage
            assert u.requests == 2 and u.cache_hits == 0
            assert u.cost_usd == pytest.approx((u.prompt_tokens * 2.5 + u.completion_tokens * 10.0) / 1e6 * 0.5, rel=1e-6)
        assert totals["cost_usd"] == pytest.approx(sum(i.provenance.usage.cost_usd for i in kept), abs=1e-5)

        kept2, _, totals2 = run_generation(cfg, work_items(7), str(cache))
        assert len(srv.batches) == 3 and srv.count() == 0  # the re-run submits nothing
        assert totals2["requests"] == 0 and totals2["cache_hits"] == 14
        assert [i.qa for i in kept2] == [i.qa for i in kept]


def test_failed_lines_become_rejects_and_bad_answers_are_reasked_online(tmp_path: Path):
    items = work_items(4)
    items[1].labels["age"].value = "60-69"
    items[2].labels["age"].value = "20-29"
    rules = [Rule("500", when="in her sixties"), Rule("500", when="in his sixties"),
             Rule("truncated", when="in his twenties", times=1), Rule("truncated", when="in her twenties", times=1)]
    with FaultServer(rules=rules) as srv:
        cfg = batch_config(srv, tmp_path / "state")
        kept, rejects, totals = run_generation(cfg, items, str(tmp_path / "cache"))
        assert [r.key for r in rejects] == [items[1].key]
        r = rejects[0]
        assert r.reason == "llm_error" and r.retryable and "Batch API: HTTP 500" in r.detail
        assert {i.key for i in kept} == {items[0].key, items[2].key, items[3].key}
        assert srv.count() == 1  # the cut-off answer's re-ask went online, once
        assert totals["batch_requests"] == 6 and totals["requests"] == 7 and totals["reasks"] == 1


def test_an_interrupted_run_picks_up_its_batch_instead_of_submitting_again(tmp_path: Path):
    state, cache = tmp_path / "state", tmp_path / "cache"
    with FaultServer(batch_fault="stuck") as srv:
        cfg = batch_config(srv, state, max_wait_h=0.0002)  # give up waiting after ~0.7 s
        kept, rejects, _ = run_generation(cfg, work_items(3), str(cache))
        assert not kept and len(rejects) == 3
        assert all(r.retryable and "still running" in r.detail and "run again" in r.detail for r in rejects)
        saved = states(state)
        assert len(saved) == 1 and saved[0]["batch_id"] in srv.batches and not saved[0]["downloaded"]
        assert len(saved[0]["custom_ids"]) == 6

        srv.batch_fault = None  # the provider finishes the batch meanwhile
        kept, rejects, totals = run_generation(cfg, work_items(3), str(cache))
        assert len(kept) == 3 and not rejects
        assert len(srv.batches) == 1 and len(uploaded_lines(srv)) == 1  # picked up, not resubmitted
        assert totals["batch_requests"] == 6
        assert states(state)[0]["downloaded"]


def test_a_failed_batch_rejects_its_items_and_a_later_run_resubmits(tmp_path: Path):
    state, cache = tmp_path / "state", tmp_path / "cache"
    with FaultServer(batch_fault="failed") as srv:
        cfg = batch_config(srv, state)
        kept, rejects, _ = run_generation(cfg, work_items(2), str(cache))
        assert not kept and len(rejects) == 2
        assert all("ended 'failed'" in r.detail and "scripted batch failure" in r.detail for r in rejects)
        srv.batch_fault = None
        kept, rejects, _ = run_generation(cfg, work_items(2), str(cache))
        assert len(kept) == 2 and not rejects and len(srv.batches) == 2


def test_an_expired_batch_keeps_what_finished(tmp_path: Path):
    with FaultServer(batch_fault="expired") as srv:
        cfg = batch_config(srv, tmp_path / "state", files=1)
        kept, rejects, totals = run_generation(cfg, work_items(4), str(tmp_path / "cache"))
        assert totals["batch_requests"] == 4  # half of the 8 lines finished before expiry
        assert len(kept) + len(rejects) == 4 and rejects
        assert all(r.retryable and "ended 'expired'" in r.detail for r in rejects)


def test_plan_files_is_deterministic_and_within_limits():
    sizes = {f"{i:04x}": 100 + i for i in range(23)}
    files = plan_files(sizes, max_requests=5, max_bytes=10_000)
    assert [len(f) for f in files] == [5, 5, 5, 5, 3]
    assert plan_files(dict(reversed(list(sizes.items()))), 5, 10_000) == files
    by_bytes = plan_files(sizes, max_requests=50_000, max_bytes=450)
    assert all(sum(sizes[c] for c in f) <= 450 for f in by_bytes) and sum(map(len, by_bytes)) == 23
    with pytest.raises(UserError, match="over generation.batch.max_bytes_per_file"):
        plan_files({"a": 1000}, 5, 999)
    assert batch_name(["b", "a"]) == batch_name(["a", "b"])


def test_batch_mode_needs_openai_not_the_local_server():
    cfg = GenerationConfig.model_validate({"generator": "openai", "mode": "batch", "openai": {"base_url": "local"}})
    from facecorpus.recipe import Recipe

    recipe = Recipe.model_validate({"name": "x", "sources": [{"type": "folder", "path": "/nonexistent"}], "generation": cfg.model_dump()})
    with pytest.raises(UserError, match="Batch API"):
        preflight(recipe)
