"""Download throughput: our LAION source (Beam, SSRF checks, per-domain gates, img2dataset's Resizer)
vs img2dataset, both in this process and both writing WebDataset tars, on the same URL list served by
loopback servers, in one run → images/s and the ratio.

Setup: 8 loopback web servers (127.0.0.1…127.0.0.8, i.e. 8 "domains") run in a separate process and
answer every /bench/<n>.jpg with insightface's t1.jpg after `--latency` seconds (a stand-in for the
network round trip). Both tools get the same parquet of URLs, 32 requests in flight (ours: 8 domains
× 4 per domain; img2dataset: thread_count 32), 1 process, no resize, no retries.

- **img2dataset**: its Python entry point `img2dataset.download(...)` (what its CLI calls), output
  format webdataset (tars + parquet + stats), into a temporary folder;
- **ours**: the LAION source on Beam's FnApiRunner (parquet reading, id grouping, batching, the
  download step), each downloaded image and its caption written into tars (one per bundle).

Figures, the same for both sides: **whole run** = N URLs / seconds from the call to the last tar
written (start-up included); **steady state** = the rate the servers answered at between the 10th and
the 90th percentile of that run's answers (their own clocks: start-up and the last stragglers left
out), at N and 2N; **marginal** = N / (time for 2N − time for N); **CPU per image** = the process's
user + system time over the run, with img2dataset's worker processes (its pool's children) added;
**in flight** = the servers' mean number of open requests over the steady window.
Runs alternate (img2dataset N, ours N, img2dataset 2N, ours 2N) after one untimed warm-up of each;
the load average is printed.

Work that differs on purpose: img2dataset decodes every image (OpenCV) even when it keeps the bytes;
ours reads a kept JPEG's header only (the image stage decodes it once, downstream: not part of this
benchmark) and decodes what it must resize or convert.

    .venv/bin/python benchmarks/download.py [--urls 2000] [--latency 0.02]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HOSTS = [f"127.0.0.{i}" for i in range(1, 9)]
THREADS = 32


def serve(latency: float, ports: mp.Queue, commands: Any, stop: mp.Event) -> None:
    """Child process: start one server per host, report their ports, then answer `commands` (a Pipe
    end): "answers" → the (start, end) times (time.monotonic, system-wide) of the /bench/ requests
    answered since the last call, sorted by end, which also forgets them."""
    from tests.support.loopback_web import WebServer

    servers = [WebServer(h) for h in HOSTS]
    for s in servers:
        s.set_delay(latency)
        s.__enter__()
    ports.put([s.port for s in servers])
    while not stop.is_set():
        if commands.poll(0.2) and commands.recv() == "answers":
            ended = sorted(((h.started, h.ended) for s in servers for h in s.hits if h.path.startswith("/bench/")),
                           key=lambda se: se[1])
            for s in servers:
                s.clear()
            commands.send(ended)
    for s in servers:
        s.__exit__(None, None, None)


def active_window(hits: list[tuple[float, float]]) -> tuple[float, float]:
    """(answers per second, mean requests in flight) between the 10th and 90th percentile answer (the run once going)."""
    if len(hits) < 10:
        return float("nan"), float("nan")
    ends = [e for _, e in hits]
    first, last = len(ends) // 10, (len(ends) * 9) // 10
    lo, hi = ends[first], ends[last]
    if hi <= lo:
        return float("inf"), float("nan")
    busy = sum(max(0.0, min(e, hi) - max(s, lo)) for s, e in hits)
    return (last - first) / (hi - lo), busy / (hi - lo)


def _cpu(children: bool) -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if children:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children only: the server runs on
        total += kids.ru_utime + kids.ru_stime
    return total


def write_urls(path: Path, ports: list[int], n: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    urls = [f"http://{HOSTS[i % len(HOSTS)]}:{ports[i % len(HOSTS)]}/bench/{i}.jpg" for i in range(n)]
    pq.write_table(pa.table({"SAMPLE_ID": list(range(n)), "URL": urls, "TEXT": [f"photo {i}" for i in range(n)],
                             "NSFW": ["UNLIKELY"] * n}), path)
    return urls


def run_img2dataset(parquet: Path, out: Path) -> tuple[float, int]:
    """(wall seconds, images written) for img2dataset's own download() in this process."""
    from img2dataset import download

    t0 = time.perf_counter()
    download(url_list=str(parquet), input_format="parquet", url_col="URL", caption_col="TEXT",
             output_format="webdataset", output_folder=str(out), processes_count=1, thread_count=THREADS,
             resize_mode="no", skip_reencode=True, timeout=10, retries=0, enable_wandb=False,
             number_sample_per_shard=100000,
             disallowed_header_directives=["noai", "noimageai", "noindex", "noimageindex"])
    wall = time.perf_counter() - t0
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    return wall, sum(s["successes"] for s in stats)


def _download_config():
    from facecorpus.download.config import DownloadConfig

    return DownloadConfig(allow_networks=["127.0.0.0/28"], threads=THREADS, per_domain=THREADS // len(HOSTS),
                          retries=0, resize_mode="no", batch_size=512)


def write_tars(out: str):  # noqa: ANN201 - a beam.DoFn; Beam is imported here, not in the server process
    """A DoFn writing each bundle's images (KEY.jpg) and captions (KEY.txt) as one tar, as img2dataset's shards hold them."""
    import apache_beam as beam

    from facecorpus.sinks.shards import tar_bytes_for

    class WriteTars(beam.DoFn):
        def start_bundle(self) -> None:
            self.members: list[tuple[str, bytes]] = []

        def process(self, item):  # noqa: ANN001, ANN201
            self.members += [(f"{item.key}.jpg", item.data or b""), (f"{item.key}.txt", (item.source.text or "").encode())]
            yield item.key

        def finish_bundle(self) -> None:
            if self.members:
                Path(out, f"{uuid.uuid4().hex}.tar").write_bytes(tar_bytes_for(self.members))

    return WriteTars()


def run_ours(parquet: Path, out: Path) -> tuple[float, int]:
    """(wall seconds, images written) for the LAION source on Beam's FnApiRunner, in this process."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from facecorpus.sources.config import LaionSource
    from facecorpus.sources.laion import ReadLaion

    out.mkdir(parents=True)
    cfg = LaionSource(type="laion", path=str(parquet), download=_download_config())
    t0 = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    result = p | ReadLaion(cfg)
    _ = result["main"] | "Write" >> beam.ParDo(write_tars(str(out)))
    p.run().wait_until_finish()
    wall = time.perf_counter() - t0
    written = 0
    for tar in out.glob("*.tar"):
        with tarfile.open(tar) as tf:
            written += sum(1 for m in tf if m.name.endswith(".jpg") and m.size > 0)
    return wall, written


def timed(name: str, fn: Any, parquet: Path, out: Path, commands: Any) -> dict[str, float]:
    """One run of one side: wall seconds, images written, CPU seconds, the servers' active-window rate."""
    commands.send("answers")
    commands.recv()  # forget earlier answers
    cpu0 = _cpu(children=True)
    wall, written = fn(parquet, out)
    cpu = _cpu(children=True) - cpu0
    commands.send("answers")
    hits = commands.recv()
    active, in_flight = active_window(hits)
    return {"wall": wall, "written": written, "cpu": cpu, "active": active, "in_flight": in_flight, "answers": len(hits)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--urls", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.02, help="Seconds each server waits before answering.")
    args = ap.parse_args()
    n = args.urls
    ctx = mp.get_context("spawn")
    ports_q, stop = ctx.Queue(), ctx.Event()
    commands, server_end = ctx.Pipe()
    server = ctx.Process(target=serve, args=(args.latency, ports_q, server_end, stop), daemon=True)
    server.start()
    sides = {"img2dataset": run_img2dataset, "ours": run_ours}
    runs: dict[str, dict[int, dict[str, float]]] = {name: {} for name in sides}
    load = [os.getloadavg()[0]]
    try:
        ports = ports_q.get(timeout=120)
        with tempfile.TemporaryDirectory() as tmp:
            lists = {}
            for k in (n, 2 * n):
                lists[k] = Path(tmp) / f"urls{k}.parquet"
                write_urls(lists[k], ports, k)
            for name, fn in sides.items():  # imports and first-use costs happen once, before any timer
                timed(name, fn, lists[n], Path(tmp) / f"warm-{name}", commands)
            for k in (n, 2 * n):
                for name, fn in sides.items():
                    runs[name][k] = timed(name, fn, lists[k], Path(tmp) / f"{name}{k}", commands)
    finally:
        stop.set()
        server.join(timeout=10)
    load.append(os.getloadavg()[0])
    for name, by_size in runs.items():
        for k, r in by_size.items():
            if r["written"] != k:
                raise SystemExit(f"{name} wrote {r['written']} of {k} images")
    print(f"{n} and {2 * n} URLs, 8 loopback hosts, {args.latency * 1000:.0f} ms latency, {THREADS} in flight, no resize; "
          f"both in-process, both writing tars; load average {load[0]:.1f} → {load[1]:.1f}")
    fig: dict[str, dict[str, float]] = {}
    for name, by_size in runs.items():
        a, b = by_size[n], by_size[2 * n]
        fig[name] = {"whole": n / a["wall"], "whole2": 2 * n / b["wall"], "steady": a["active"], "steady2": b["active"],
                     "marginal": n / (b["wall"] - a["wall"]) if b["wall"] > a["wall"] else float("inf"),
                     "cpu": a["cpu"] / n * 1000, "cpu2": b["cpu"] / (2 * n) * 1000, "flight": a["in_flight"],
                     "flight2": b["in_flight"]}
        f = fig[name]
        print(f"{name:12s} whole run {f['whole']:6.1f} / {f['whole2']:6.1f} images/s ({a['wall']:.1f} s for {n}, "
              f"{b['wall']:.1f} s for {2 * n}); steady {f['steady']:6.1f} / {f['steady2']:6.1f} images/s; "
              f"marginal {f['marginal']:6.1f}; CPU per image {f['cpu']:.2f} / {f['cpu2']:.2f} ms; "
              f"in flight (steady window) {f['flight']:.1f} / {f['flight2']:.1f} of {THREADS}")
    o, i = fig["ours"], fig["img2dataset"]
    print(f"ratio ours/img2dataset (N={n} / {2 * n}): whole run {o['whole'] / i['whole']:.2f} / {o['whole2'] / i['whole2']:.2f}, "
          f"steady {o['steady'] / i['steady']:.2f} / {o['steady2'] / i['steady2']:.2f}, "
          f"marginal {o['marginal'] / i['marginal']:.2f}; CPU per image {o['cpu'] / i['cpu']:.2f} / {o['cpu2'] / i['cpu2']:.2f}")


if __name__ == "__main__":
    main()
