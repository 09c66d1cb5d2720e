"""The generate stage's throughput against an endpoint with fixed latency, vs the ideal C / L.

A loopback OpenAI-compatible server (tests/llm_fault_server.py, in a child process so it does not share
our interpreter) answers every chat request after L seconds. With C requests in flight the best any
client can do is C / L requests per second. Side by side in one run:
  1. ours: the generate stage (render → RunInference(OpenAIChatHandler) → apply) in a Beam pipeline on
     FnApiRunner, N requests; its rate is measured from the server's first to last arrival + L (the
     stage's active window; Beam start-up is printed separately);
  2. plain: a bare ThreadPoolExecutor(C) calling the same openai client N times (no Beam, no cache, no
     budgets) — what the endpoint allows from this machine;
  3. the cache-hit path: the same Beam run again, every answer already in the response cache.
1 and 2 are repeated in R rounds (default 3, each against a fresh server and an empty cache), since on
a shared machine one run of either can be off by several percent; the medians are the result.
Prints ours / ideal (the efficiency; aim ≥ 0.9 at C = 64, L = 200 ms) and ours / plain, and, as a
figure that depends on neither the endpoint nor the machine's other load, the CPU time our process
spends per request (user + system, whole stage incl. Beam start-up; plain likewise), with the rate
one core could sustain at that cost. The load average is printed: on a shared machine, compare runs
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
from tests.generation_helpers import work_items  # noqa: E402

from facecorpus.generation.accounting import llm_totals  # noqa: E402
from facecorpus.generation.config import GenerationConfig  # noqa: E402
from facecorpus.generation.llm_stage import GenerateWithLLM  # noqa: E402


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats", timeout=10) as r:
        return json.loads(r.read())


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.llm_fault_server", "--latency", str(latency)],
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


def plain(base_url: str, n: int, c: int) -> float:
    client = openai.OpenAI(api_key="none", base_url=base_url, max_retries=0, timeout=60)
    body = {"model": "m", "messages": [{"role": "user", "content": "Describe the face."}], "max_tokens": 50}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        list(pool.map(lambda i: client.chat.completions.create(**{**body, "seed": i}), range(n)))
    return n / (time.perf_counter() - t0)


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
        r: dict = {}
        with tempfile.TemporaryDirectory(prefix="bench-llm-", dir=os.environ.get("BENCH_CACHE_DIR")) as cache:
            cpu0 = cpu_s()
            r["wall"], totals = generate_stage(cfg, items, cache)
            r["ours_cpu_ms"] = (cpu_s() - cpu0) / n * 1000
            s = server_stats(base_url)
            assert totals["requests"] == s["chat_requests"] == n and not totals["failures"], (totals, s)
            r["active"] = s["last"] - s["first"] + latency
            r["ours"] = n / r["active"]
            r["max_in_flight"] = s["max_in_flight"]
            if cache_hit:
                r["cached_wall"], totals2 = generate_stage(cfg, items, cache)
                assert totals2["cache_hits"] == n and server_stats(base_url)["chat_requests"] == n
        cpu0 = cpu_s()
        r["plain"] = plain(base_url, n, c)
        r["plain_cpu_ms"] = (cpu_s() - cpu0) / n * 1000
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
              f"(whole pipeline incl. Beam start-up {r['wall']:.2f} s; server saw at most {r['max_in_flight']} in "
              f"flight), plain ThreadPoolExecutor({c}) + openai client {r['plain']:.1f} requests/s → "
              f"ours/ideal {r['ours'] / ideal:.2f}, ours/plain {r['ours'] / r['plain']:.2f}; CPU per request "
              f"ours {r['ours_cpu_ms']:.2f} ms, plain {r['plain_cpu_ms']:.2f} ms")
    cached = results[0]["cached_wall"]
    print(f"cache-hit path (round 1 again, all cached, whole pipeline): {n / cached:.1f} requests/s ({cached:.2f} s)")
    ours_cpu = statistics.median(r["ours_cpu_ms"] for r in results)
    plain_cpu = statistics.median(r["plain_cpu_ms"] for r in results)
    print(f"CPU per request (this process, user + system, median): ours {ours_cpu:.2f} ms (one core: "
          f"{1000 / ours_cpu:.0f} requests/s), plain {plain_cpu:.2f} ms ({1000 / plain_cpu:.0f} requests/s)")
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    eff = statistics.median(r["ours"] / ideal for r in results)
    vs_plain = statistics.median(r["ours"] / r["plain"] for r in results)
    plain_eff = statistics.median(r["plain"] / ideal for r in results)
    print(f"median over {rounds} rounds: efficiency ours / ideal = {eff:.2f}   ours / plain = {vs_plain:.2f}   "
          f"(plain / ideal = {plain_eff:.2f})")


if __name__ == "__main__":
    main()
