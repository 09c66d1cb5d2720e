"""Adaptive concurrency (generation/concurrency.py): the limit follows the endpoint — grows while
answers come back fast, halves on overload, shrinks when latency rises — and, against a loopback
server with 2 slots and a queue, a client allowed 16 in flight finishes without a single llm_error."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from facecorpus.generation.concurrency import OK, OTHER, OVERLOAD, ConcurrencyLimit
from facecorpus.recipe import GenerationConfig
from tests.support.generation_helpers import run_generation, work_items
from tests.support.llm_fault_server import FaultServer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def round_trip(limit: ConcurrencyLimit, clock: Clock, latency: float, signal: str = OK, n: int | None = None) -> None:
    """n requests (default: the whole limit) sent together, answered together after `latency`."""
    tickets = [limit.acquire() for _ in range(n or int(limit.limit))]
    clock.now += latency
    for t in tickets:
        limit.release(t, signal)


def test_slow_start_doubles_while_requests_wait():
    limit = ConcurrencyLimit(ceiling=64, initial=4, clock=lambda: 0.0)  # latency says nothing here

    def client() -> None:  # more demand than the limit: 32 threads, 20 requests each
        for _ in range(20):
            t = limit.acquire()
            time.sleep(0.002)
            limit.release(t)

    threads = [threading.Thread(target=client) for _ in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert limit.limit >= 32 and limit.max_in_flight >= 16  # from 4, by one per answer


def test_overload_halves_once_per_round_trip_within_bounds():
    clock = Clock()
    limit = ConcurrencyLimit(ceiling=64, initial=4, clock=clock)
    for _ in range(200):
        round_trip(limit, clock, 0.2)
    assert limit.limit == 64  # grown, and never above the ceiling
    round_trip(limit, clock, 0.2, OVERLOAD, n=10)  # ten 429s arriving together are one overload
    assert limit.limit == 32 and limit.decreases == 1
    clock.now += 1.0
    round_trip(limit, clock, 0.2, OVERLOAD, n=1)
    assert limit.limit == 16
    round_trip(limit, clock, 0.2, OTHER, n=1)  # a 400 says nothing about load
    assert limit.limit == 16
    for _ in range(20):
        clock.now += 10.0
        round_trip(limit, clock, 0.2, OVERLOAD, n=1)
    assert limit.limit == 1  # never below one


def test_rising_latency_shrinks_the_limit_and_additive_increase_follows():
    clock = Clock()
    limit = ConcurrencyLimit(ceiling=16, initial=8, clock=clock)
    for _ in range(10):  # a queue-free endpoint: 1 s answers
        round_trip(limit, clock, 1.0)
    before = limit.limit
    for _ in range(3):  # a queue builds: 3 s answers
        round_trip(limit, clock, 3.0)
    assert limit.limit < before and limit.decreases >= 1
    low = limit.limit
    for _ in range(3):  # back to normal: growth is additive now (+1/limit per answer that found the limit full)
        round_trip(limit, clock, 1.0)
    assert low < limit.limit <= low + 1


def test_fixed_mode_is_the_ceiling_and_waiters_get_slots_in_turn():
    limit = ConcurrencyLimit(ceiling=3, adaptive=False)
    assert limit.limit == 3
    got: list[int] = []

    def worker(i: int) -> None:
        t = limit.acquire()
        got.append(limit.in_flight)
        time.sleep(0.02)
        limit.release(t, OVERLOAD)  # ignored when not adaptive

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert max(got) <= 3 and limit.max_in_flight == 3 and limit.limit == 3 and limit.in_flight == 0


def test_ceiling_must_be_positive():
    with pytest.raises(ValueError):
        ConcurrencyLimit(ceiling=0)


def test_a_two_slot_server_with_a_queue_loses_nothing_at_concurrency_16(tmp_path: Path):
    """16 allowed in flight, 2 served at once for 1-3 s each, the rest queued: a fixed 16 would wait
    ~16 s per request and time out at 10 s; adapted, the run completes with no llm_error."""
    with FaultServer(slots=2, service_s=(1.0, 3.0)) as srv:
        cfg = GenerationConfig.model_validate({
            "generator": "openai", "prompt_set": "structured", "categories": ["expression"],
            "openai": {"base_url": srv.base_url, "api_key_env": None, "concurrency": 16, "timeout_s": 10},
            "retries": {"initial_s": 0.5, "max_s": 5},
        })
        items = work_items(20)
        for i, item in enumerate(items):
            item.source.text = f"queue test photo {i}"
        kept, rejects, totals = run_generation(cfg, items, str(tmp_path / "cache"))
        assert not rejects, [(r.reason, r.detail) for r in rejects]
        assert len(kept) == 20 and totals["failures"] == {}
        assert totals["requests"] == 20 == srv.served
        # the queue stayed short: what was sent was served, not abandoned
        assert srv.wasted <= 2 and srv.max_queued <= 6, (srv.wasted, srv.max_queued)
