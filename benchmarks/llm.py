"""The generate stage's throughput against an endpoint with fixed latency, vs the ideal C / L.

A loopback OpenAI-compatible server (tests/support/llm_fault_server.py, in a child process so it does not share
our interpreter) answers every chat request after L seconds. With C requests in flight the best any
client can do is C / L requests per second. Side by side in one run:
  1. ours: the generate stage (render → RunInference(OpenAIChatHandler) → apply) in a Beam pipeline on
     FnApiRunner, N requests; its rate is measured from the server's first to last arrival + L (the
     stage's active window; Beam start-up is printed separately);
  2. plain: a bare ThreadPoolExecutor(C) calling `openai.OpenAI().chat.completions.create(**body)` N
     times with the very bodies ours sends (rendered beforehand, untimed; no Beam, no cache, no budgets);
  3. peer: the plain asyncio way — `openai.AsyncOpenAI` with an asyncio.Semaphore(C), the same bodies;
  4. the cache-hit path, twice: the same Beam run again with every answer in the response cache (whole
     pipeline), and our client alone (`LLMClient.generate`, no Beam) on that cache.
1 and 2 are repeated in R rounds (default 3, each against a fresh server and an empty cache), since on
a shared machine one run of either can be off by several percent; the medians are the result.
Prints ours / ideal (the efficiency; aim ≥ 0.9 at C = 64, L = 200 ms) and ours / plain, and, as a
figure that depends on neither the endpoint nor the machine's other load, the CPU time our process
spends per request (user + system), both over the whole run (ours incl. Beam start-up) and over the
active window only (from the server's first to its last arrival, read from a 20 ms CPU sampler), with
the rate one core could sustain at that cost, and the ratio ours / plain (issue 17's aim: ≤ 1.2). The load average is printed: on a shared machine, compare runs
taken at similar load. The response cache goes to a temporary folder ($BENCH_CACHE_DIR, default $TMPDIR).
Run: .venv/bin/python benchmarks/llm.py [N] [C] [L] [R]
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
import openai  # noqa: E402
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from tests.support.generation_helpers import work_items  # noqa: E402

from facecorpus.generation.accounting import llm_totals  # noqa: E402
from facecorpus.generation.client import LLMClient  # noqa: E402
from facecorpus.generation.config import GenerationConfig  # noqa: E402
from facecorpus.generation.endpoint import chat_body, endpoint_id  # noqa: E402
from facecorpus.generation.llm_stage import GenerateWithLLM, render_item  # noqa: E402
from facecorpus.generation.preflight import load_checked_prompt_set  # noqa: E402


class CpuSampler:
    """(wall clock, this process's CPU seconds) every 20 ms, to read the CPU spent inside a window."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), cpu_s()))
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_between(self, t0: float, t1: float) -> float:
        def at(t: float) -> float:
            before = [c for w, c in self.samples if w <= t]
            after = [c for w, c in self.samples if w >= t]
            return (before[-1] if before else self.samples[0][1]) if not after else after[0]
        return at(t1) - at(t0)


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats", timeout=10) as r:
        return json.loads(r.read())


def server_arrivals(base_url: str) -> list[float]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats?arrivals=1", timeout=30) as r:
        return json.loads(r.read())["arrivals"]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.llm_fault_server", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def generate_stage(cfg: GenerationConfig, items: list, cache: str) -> tuple[float, dict]:
    """Run the generate stage alone (rejects and kept items only counted); (seconds, llm totals)."""
    t0 = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    result = p | beam.Create(items) | GenerateWithLLM(cfg, cache)
    _ = result["main"] | "CountKept" >> beam.combiners.Count.Globally() | beam.Map(lambda k: Metrics.counter(
        "bench", "kept").inc(k))
    run = p.run()
    run.wait_until_finish()
    return time.perf_counter() - t0, llm_totals(run)


def plain(base_url: str, bodies: list[dict], c: int) -> float:
    client = openai.OpenAI(api_key="none", base_url=base_url, max_retries=0, timeout=60)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        list(pool.map(lambda body: client.chat.completions.create(**body), bodies))
    return len(bodies) / (time.perf_counter() - t0)


def peer_asyncio(base_url: str, bodies: list[dict], c: int) -> float:
    """The plain asyncio way: one AsyncOpenAI client, a semaphore of C, gather."""
    import asyncio

    async def run() -> None:
        client = openai.AsyncOpenAI(api_key="none", base_url=base_url, max_retries=0, timeout=60)
        gate = asyncio.Semaphore(c)

        async def one(body: dict) -> None:
            async with gate:
                await client.chat.completions.create(**body)

        await asyncio.gather(*(one(b) for b in bodies))
        await client.close()

    t0 = time.perf_counter()
    asyncio.run(run())
    return len(bodies) / (time.perf_counter() - t0)


def rendered(cfg: GenerationConfig, items: list) -> list:
    prompt_set = load_checked_prompt_set(cfg)
    return [render_item(item, prompt_set, cfg) for item in items]


def client_cache_hits(cfg: GenerationConfig, prompts: list, base_url: str, cache: str) -> float:
    """Our client alone (no Beam) answering every prompt from a warm response cache: requests/s."""
    client = LLMClient(cfg, base_url, None, cache, endpoint_id(cfg.openai.base_url, cfg.openai.local_model))
    try:
        t0 = time.perf_counter()
        outcomes = client.generate(prompts)
        dt = time.perf_counter() - t0
    finally:
        client.close()
    assert all(o.failure is None for o in outcomes)
    return len(prompts) / dt


def one_round(n: int, c: int, latency: float, cache_hit: bool) -> dict:
    """ours, then plain, against a fresh server; the cache-hit path too when asked."""
    proc, base_url = start_server(latency)
    try:
        cfg = GenerationConfig.model_validate({
            "generator": "openai", "prompt_set": "structured", "categories": ["expression"],
            "openai": {"base_url": base_url, "api_key_env": None, "concurrency": c, "image": {"send": "always"}},
        })
        items = work_items(n)
        for i, item in enumerate(items):  # unique requests: the cache must not merge any two
            item.source.text = f"benchmark photo {i}"
        prompts = rendered(cfg, items)
        bodies = [chat_body(cfg, p.requests[0].messages, p.requests[0].response_format) for p in prompts]
        r: dict = {}
        with tempfile.TemporaryDirectory(prefix="bench-llm-", dir=os.environ.get("BENCH_CACHE_DIR")) as cache:
            sampler = CpuSampler()
            cpu0 = cpu_s()
            r["wall"], totals = generate_stage(cfg, items, cache)
            r["ours_cpu_ms"] = (cpu_s() - cpu0) / n * 1000
            sampler.stop()
            s = server_stats(base_url)
            assert totals["requests"] == s["chat_requests"] == n and not totals["failures"], (totals, s)
            r["active"] = s["last"] - s["first"] + latency
            r["ours_active_cpu_ms"] = sampler.cpu_between(s["first"], s["last"] + latency) / n * 1000
            r["ours"] = n / r["active"]
            r["max_in_flight"] = s["max_in_flight"]
            if cache_hit:
                r["cached_wall"], totals2 = generate_stage(cfg, items, cache)
                assert totals2["cache_hits"] == n and server_stats(base_url)["chat_requests"] == n
                r["client_cache_hits"] = client_cache_hits(cfg, prompts, base_url, cache)
                assert server_stats(base_url)["chat_requests"] == n
        for side, fn in (("plain", plain), ("peer", peer_asyncio)):
            before = server_stats(base_url)["chat_requests"]
            sampler = CpuSampler()
            cpu0 = cpu_s()
            r[side] = fn(base_url, bodies, c)
            r[f"{side}_cpu_ms"] = (cpu_s() - cpu0) / n * 1000
            sampler.stop()
            s = server_stats(base_url)
            assert s["chat_requests"] == before + n
            # the server records arrivals only: its last arrival of this side is the overall last
            first = sorted(x for x in server_arrivals(base_url))[before]
            r[f"{side}_active_cpu_ms"] = sampler.cpu_between(first, s["last"] + latency) / n * 1000
        return r
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    c = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    ideal = c / latency
    load_before = os.getloadavg()[0]
    print(f"N={n} requests, C={c} in flight, L={latency * 1000:.0f} ms → ideal C/L = {ideal:.0f} requests/s; "
          f"{rounds} rounds of ours then plain")
    results = []
    for i in range(rounds):
        r = one_round(n, c, latency, cache_hit=i == 0)
        results.append(r)
        print(f"round {i + 1}: ours {r['ours']:.1f} requests/s over its {r['active']:.2f} s active window "
              f"(whole pipeline incl. Beam start-up {r['wall']:.2f} s: {n / r['wall']:.1f}/s; server saw at most "
              f"{r['max_in_flight']} in flight), plain ThreadPoolExecutor({c}) + openai client {r['plain']:.1f}/s, "
              f"peer asyncio + AsyncOpenAI {r['peer']:.1f}/s → ours/ideal {r['ours'] / ideal:.2f}, ours/plain "
              f"{r['ours'] / r['plain']:.2f}, ours/peer {r['ours'] / r['peer']:.2f}; CPU per request whole run: ours "
              f"{r['ours_cpu_ms']:.2f} ms, plain {r['plain_cpu_ms']:.2f}, peer {r['peer_cpu_ms']:.2f}; active window: "
              f"ours {r['ours_active_cpu_ms']:.2f}, plain {r['plain_active_cpu_ms']:.2f}, peer {r['peer_active_cpu_ms']:.2f}")
    cached = results[0]["cached_wall"]
    print(f"cache-hit path (round 1 again, all cached): whole pipeline {n / cached:.1f} requests/s ({cached:.2f} s "
          f"incl. Beam start-up); our client alone {results[0]['client_cache_hits']:.0f} requests/s (aim ≥ 2000)")
    med = {k: statistics.median(r[k] for r in results) for k in
           ("ours_cpu_ms", "plain_cpu_ms", "peer_cpu_ms", "ours_active_cpu_ms", "plain_active_cpu_ms", "peer_active_cpu_ms")}
    print(f"CPU per request (this process, user + system, median), whole run: ours {med['ours_cpu_ms']:.2f} ms "
          f"(one core: {1000 / med['ours_cpu_ms']:.0f} requests/s), plain {med['plain_cpu_ms']:.2f} ms, peer "
          f"{med['peer_cpu_ms']:.2f} ms → ours/plain {med['ours_cpu_ms'] / med['plain_cpu_ms']:.2f}, ours/peer "
          f"{med['ours_cpu_ms'] / med['peer_cpu_ms']:.2f} (aim ≤ 1.2)")
    print(f"CPU per request, active window: ours {med['ours_active_cpu_ms']:.2f} ms, plain "
          f"{med['plain_active_cpu_ms']:.2f} ms, peer {med['peer_active_cpu_ms']:.2f} ms → ours/plain "
          f"{med['ours_active_cpu_ms'] / med['plain_active_cpu_ms']:.2f}, ours/peer "
          f"{med['ours_active_cpu_ms'] / med['peer_active_cpu_ms']:.2f}")
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    eff = statistics.median(r["ours"] / ideal for r in results)
    vs_plain = statistics.median(r["ours"] / r["plain"] for r in results)
    plain_eff = statistics.median(r["plain"] / ideal for r in results)
    print(f"median over {rounds} rounds: efficiency ours / ideal = {eff:.2f}   ours / plain = {vs_plain:.2f}   "
          f"(plain / ideal = {plain_eff:.2f})")


if __name__ == "__main__":
    main()
