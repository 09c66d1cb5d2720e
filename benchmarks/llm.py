"""The generate stage's throughput and CPU against an endpoint with fixed latency, vs the ideal C / L and peers.

A loopback OpenAI-compatible server (tests/support/llm_fault_server.py, in a child process so it does not share
our interpreter; benchmarks/_llm_server.py) answers every chat request after L seconds. With C
requests in flight the best any client can do is C / L requests per second. Side by side in one run,
each round against a fresh server:
  1. ours: the generate stage (render → RunInference(OpenAIChatHandler) → apply) in a Beam pipeline on
     FnApiRunner, N requests; its rate is measured from the server's first to last arrival + L (the
     stage's active window; Beam start-up is printed separately). The items come from memory
     (`_llm_server.from_memory`: FnApiRunner's worker reads the list built in this process), as the
     other sides' bodies do; BENCH_LLM_INPUT=create sends them through `beam.Create(items)` instead,
     which pickles and zlib-compresses every item twice and reshuffles them (~3.5 s of CPU for 4,000
     items: harness cost no pipeline reading a source pays, kept as an option to show it);
  2. plain: a bare ThreadPoolExecutor(C) calling `openai.OpenAI().chat.completions.create(**body)` N
     times with the very bodies ours sends (rendered beforehand, untimed; no Beam, no cache, no budgets);
  3. peer: the plain asyncio way — `openai.AsyncOpenAI` with an asyncio.Semaphore(C), the same bodies;
  4. curator: bespokelabs-curator's online path (`curator.LLM`, backend "openai": aiohttp, its rate
     limiter, retries, request/response files, the Arrow dataset it returns) with
     max_concurrent_requests = C, the same bodies, in its own venv (benchmarks/.venv-curator, created
     from PyPI on the first run) and process (benchmarks/_curator_side.py says what is changed so that
     it runs offline: its tiktoken encoding counts tokens the way this server reports them);
     BENCH_LLM_CURATOR=0 leaves it out;
  5. the cache-hit path, twice (round 1): the same Beam run again with every answer in the response
     cache (whole pipeline), and our client alone (`LLMClient.generate`, no Beam) on that cache, 3 passes.
Rounds: R (default 3), each with an empty cache; the medians are the result. Printed: ours / ideal
(aim ≥ 0.9 at C = 64, L = 200 ms), ours / each other side, and, as a figure that depends on neither
the endpoint nor the machine's other load, the CPU time each side's process spends per request
(user + system; curator's includes any child it starts), over its whole run (ours incl. Beam start-up
and rendering, curator incl. its set-up and dataset) and over its active window (the server's first
to last arrival of that side, read from a 20 ms CPU sampler), and ours / plain (issue 17's aim: ≤ 1.2).
The load average is printed: on a shared machine, compare runs taken at similar load. The response
cache goes to a temporary folder ($BENCH_CACHE_DIR, default $TMPDIR).
Run: .venv/bin/python benchmarks/llm.py [N] [C] [L] [R]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
import openai  # noqa: E402
from _llm_server import CpuSampler, cpu_s, drop_inputs, fault_server, from_memory, hold_inputs, server_stats  # noqa: E402
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from tests.support.generation_helpers import work_items  # noqa: E402

from facecorpus.generation.accounting import llm_totals  # noqa: E402
from facecorpus.generation.client import LLMClient  # noqa: E402
from facecorpus.generation.config import GenerationConfig  # noqa: E402
from facecorpus.generation.endpoint import chat_body, endpoint_id  # noqa: E402
from facecorpus.generation.llm_stage import GenerateWithLLM, render_item  # noqa: E402
from facecorpus.generation.preflight import load_checked_prompt_set  # noqa: E402


def generate_stage(cfg: GenerationConfig, items: list, cache: str) -> tuple[float, dict]:
    """Run the generate stage alone (rejects and kept items only counted); (seconds, llm totals).

    The items come from memory (`from_memory`), as the other sides' bodies do; BENCH_LLM_INPUT=create
    sends them through `beam.Create(items)` instead (pickled into the graph, compressed, reshuffled)."""
    t0 = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    token = uuid.uuid4().hex
    if os.environ.get("BENCH_LLM_INPUT") == "create":
        source = p | beam.Create(items)
    else:
        hold_inputs(token, items)
        source = p | beam.Create([token], reshuffle=False) | "FromMemory" >> beam.FlatMap(from_memory)
    result = source | GenerateWithLLM(cfg, cache)
    _ = result["main"] | "CountKept" >> beam.combiners.Count.Globally() | beam.Map(lambda k: Metrics.counter(
        "bench", "kept").inc(k))
    try:
        run = p.run()
        run.wait_until_finish()
    finally:
        drop_inputs(token)
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


def client_cache_hits(cfg: GenerationConfig, prompts: list, base_url: str, cache: str, passes: int = 3) -> list[float]:
    """Our client alone (no Beam) answering every prompt from a warm response cache, `passes` times
    (a fresh client each): requests/s of each pass (on a shared machine one pass can be off by 2x)."""
    rates = []
    for _ in range(passes):
        client = LLMClient(cfg, base_url, None, cache, endpoint_id(cfg.openai.base_url, cfg.openai.local_model))
        try:
            t0 = time.perf_counter()
            outcomes = client.generate(prompts)
            dt = time.perf_counter() - t0
        finally:
            client.close()
        assert all(o.failure is None for o in outcomes) and sum(o.usage.cache_hits for o in outcomes) == len(prompts)
        rates.append(len(prompts) / dt)
    return rates


CURATOR_VERSION = "0.1.31"
CURATOR_VENV = REPO / "benchmarks" / ".venv-curator"


def curator_python() -> tuple[Path | None, str]:
    """benchmarks/.venv-curator/bin/python with bespokelabs-curator installed from PyPI (created on the
    first run, reused after; never part of the project's own dependencies); (None, why) if it cannot be."""
    py = CURATOR_VENV / "bin" / "python"
    check = [str(py), "-c", "import importlib.metadata as m; print(m.version('bespokelabs-curator'))"]
    if py.exists() and subprocess.run(check, capture_output=True, text=True).stdout.strip() == CURATOR_VERSION:
        return py, ""
    print(f"setting up {CURATOR_VENV.relative_to(REPO)} (bespokelabs-curator=={CURATOR_VERSION} from PyPI, once)",
          flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [[base, "-m", "venv", str(CURATOR_VENV)],
             [str(py), "-m", "pip", "install", "-q", f"bespokelabs-curator=={CURATOR_VERSION}"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"{' '.join(step[:4])} failed: {last[:200]}"
    return py, ""


def curator_side(py: Path, base_url: str, bodies: list[dict], c: int, latency: float) -> dict:
    """bespokelabs-curator's online path in its own venv and process (benchmarks/_curator_side.py)."""
    before = server_stats(base_url)["chat_requests"]
    with tempfile.TemporaryDirectory(prefix="bench-curator-") as tmp:
        spec, out, log = Path(tmp, "bodies.json"), Path(tmp, "result.json"), Path(tmp, "curator.log")
        spec.write_text(json.dumps({"base_url": base_url, "concurrency": c, "bodies": bodies}))
        with log.open("w") as f:  # its progress bar writes a line per answer
            done = subprocess.run([str(py), str(REPO / "benchmarks" / "_curator_side.py"), str(spec), str(out)],
                                  stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"the curator side failed: {log.read_text()[-2000:]}")
        r = json.loads(out.read_text())
    s = server_stats(base_url, arrivals=True)
    sent = s["chat_requests"] - before
    assert r["answers"] == len(bodies) and sent >= len(bodies), (r["answers"], sent)
    # curator's own requests (its rate-limit probe, `messages: []`) go before the bodies: skip them
    first = sorted(s["arrivals"])[before + sent - len(bodies)]
    window = CpuSampler.of([(w, c) for w, c in r["samples"]])
    n = len(bodies)
    return {"curator": n / (s["last"] + latency - first), "curator_cpu_ms": r["cpu_s"] / n * 1000,
            "curator_active_cpu_ms": window.cpu_between(first, s["last"] + latency) / n * 1000,
            "curator_extra_requests": sent - n}


def one_round(n: int, c: int, latency: float, cache_hit: bool, curator: Path | None) -> dict:
    """ours, then plain, the asyncio peer and curator, against a fresh server; the cache-hit path too when asked."""
    with fault_server("--latency", str(latency)) as base_url:
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
            s = server_stats(base_url, arrivals=True)
            assert s["chat_requests"] == before + n
            # the server records arrivals only: its last arrival of this side is the overall last
            first = sorted(s["arrivals"])[before]
            r[f"{side}_active_cpu_ms"] = sampler.cpu_between(first, s["last"] + latency) / n * 1000
        if curator is not None:
            r.update(curator_side(curator, base_url, bodies, c, latency))
        return r


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    c = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    ideal = c / latency
    curator, why = (None, "BENCH_LLM_CURATOR=0") if os.environ.get("BENCH_LLM_CURATOR") == "0" else curator_python()
    if curator is None:
        print(f"no curator row: {why}")
    load_before = os.getloadavg()[0]
    print(f"N={n} requests, C={c} in flight, L={latency * 1000:.0f} ms → ideal C/L = {ideal:.0f} requests/s; "
          f"{rounds} rounds of ours, plain, peer{', curator' if curator else ''}; input "
          f"{'beam.Create(items)' if os.environ.get('BENCH_LLM_INPUT') == 'create' else 'from memory'}")
    sides = ["ours", "plain", "peer"] + (["curator"] if curator else [])
    results = []
    for i in range(rounds):
        r = one_round(n, c, latency, cache_hit=i == 0, curator=curator)
        results.append(r)
        print(f"round {i + 1}: ours {r['ours']:.1f} requests/s over its {r['active']:.2f} s active window "
              f"(whole pipeline incl. Beam start-up {r['wall']:.2f} s: {n / r['wall']:.1f}/s; server saw at most "
              f"{r['max_in_flight']} in flight), plain ThreadPoolExecutor({c}) + openai client {r['plain']:.1f}/s, "
              f"peer asyncio + AsyncOpenAI {r['peer']:.1f}/s"
              + (f", curator {r['curator']:.1f}/s ({r['curator_extra_requests']} requests of its own)" if curator else "")
              + f" → ours/ideal {r['ours'] / ideal:.2f}, ours/plain {r['ours'] / r['plain']:.2f}, ours/peer "
              f"{r['ours'] / r['peer']:.2f}" + (f", ours/curator {r['ours'] / r['curator']:.2f}" if curator else "")
              + "; CPU per request whole run: " + ", ".join(f"{k} {r[k + '_cpu_ms']:.2f} ms" for k in sides)
              + "; active window: " + ", ".join(f"{k} {r[k + '_active_cpu_ms']:.2f}" for k in sides), flush=True)
    cached = results[0]["cached_wall"]
    print(f"cache-hit path (round 1 again, all cached): whole pipeline {n / cached:.1f} requests/s ({cached:.2f} s "
          f"incl. Beam start-up); our client alone (LLMClient.generate, 3 passes) "
          f"{' / '.join(f'{x:.0f}' for x in results[0]['client_cache_hits'])} requests/s, median "
          f"{statistics.median(results[0]['client_cache_hits']):.0f} (aim ≥ 2000)")
    med = {f"{k}{w}": statistics.median(r[f"{k}{w}"] for r in results) for k in sides for w in ("_cpu_ms", "_active_cpu_ms")}
    for label, w in (("whole run", "_cpu_ms"), ("active window", "_active_cpu_ms")):
        print(f"CPU per request (user + system, median), {label}: "
              + ", ".join(f"{k} {med[k + w]:.2f} ms" for k in sides)
              + " → " + ", ".join(f"ours/{k} {med['ours' + w] / med[k + w]:.2f}" for k in sides[1:])
              + (" (aim ours/plain ≤ 1.2)" if w == "_cpu_ms" else ""))
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    eff = statistics.median(r["ours"] / ideal for r in results)
    print(f"median over {rounds} rounds: efficiency ours / ideal = {eff:.2f}   "
          + "   ".join(f"ours / {k} = {statistics.median(r['ours'] / r[k] for r in results):.2f}" for k in sides[1:])
          + f"   (plain / ideal = {statistics.median(r['plain'] / ideal for r in results):.2f})")


if __name__ == "__main__":
    main()
