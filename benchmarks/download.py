"""Download throughput: our LAION source (Beam, SSRF checks, per-domain gates, img2dataset's Resizer)
vs img2dataset's own CLI, on the same URL list served by loopback servers, in one run → images/s ratio.

Setup: 8 loopback web servers (127.0.0.1…127.0.0.8, i.e. 8 "domains") run in a separate process and
answer every /bench/<n>.jpg with insightface's t1.jpg after `--latency` seconds (a stand-in for the
network round trip). Both tools get the same parquet of URLs, 32 requests in flight (ours: 8 domains
× 4 per domain; img2dataset: thread_count 32), 1 process, no resize, no retries.

Two figures per side:
- end to end: process/pipeline start to finish (img2dataset CLI incl. its start-up; ours: the whole
  Beam pipeline on FnApiRunner incl. parquet reading, id grouping and batching);
- download only: img2dataset's own shard timer (from its _stats.json) vs our download step on the
  same thread pool without Beam around it.

    .venv/bin/python benchmarks/download.py [--urls 2000] [--latency 0.02]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HOSTS = [f"127.0.0.{i}" for i in range(1, 9)]
THREADS = 32


def serve(latency: float, ports: mp.Queue, stop: mp.Event) -> None:
    """Child process: start one server per host, report their ports, serve until told to stop."""
    from tests.loopback_web import WebServer

    servers = [WebServer(h) for h in HOSTS]
    for s in servers:
        s.set_delay(latency)
        s.__enter__()
    ports.put([s.port for s in servers])
    stop.wait()
    for s in servers:
        s.__exit__(None, None, None)


def write_urls(path: Path, ports: list[int], n: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    urls = [f"http://{HOSTS[i % len(HOSTS)]}:{ports[i % len(HOSTS)]}/bench/{i}.jpg" for i in range(n)]
    pq.write_table(pa.table({"SAMPLE_ID": list(range(n)), "URL": urls, "TEXT": [f"photo {i}" for i in range(n)],
                             "NSFW": ["UNLIKELY"] * n}), path)
    return urls


def run_img2dataset(parquet: Path, out: Path) -> tuple[float, int, float]:
    """(wall seconds, successes, img2dataset's own shard seconds)."""
    cmd = [
        str(REPO / ".venv" / "bin" / "img2dataset"), "--url_list", str(parquet), "--input_format", "parquet",
        "--url_col", "URL", "--caption_col", "TEXT", "--output_format", "webdataset", "--output_folder", str(out),
        "--processes_count", "1", "--thread_count", str(THREADS), "--resize_mode", "no", "--skip_reencode", "True",
        "--timeout", "10", "--retries", "0", "--enable_wandb", "False", "--number_sample_per_shard", "100000",
        "--disallowed_header_directives", '["noai","noimageai","noindex","noimageindex"]',
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"img2dataset failed: {proc.stderr[-2000:]}")
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    successes = sum(s["successes"] for s in stats)
    shard_s = sum(s["end_time"] - s["start_time"] for s in stats)
    return wall, successes, shard_s


def _download_config():
    from facecorpus.download.config import DownloadConfig

    return DownloadConfig(allow_networks=["127.0.0.0/28"], threads=THREADS, per_domain=THREADS // len(HOSTS),
                          retries=0, resize_mode="no", batch_size=512)


def run_ours_pipeline(parquet: Path) -> tuple[float, int]:
    """(wall seconds, images) for the LAION source on Beam's FnApiRunner, in this process."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from facecorpus.sources.config import LaionSource
    from facecorpus.sources.laion import ReadLaion
    from facecorpus.stage import METRICS_NAMESPACE

    cfg = LaionSource(type="laion", path=str(parquet), download=_download_config())
    t0 = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    result = p | ReadLaion(cfg)
    _ = result["main"] | "Drop" >> beam.Filter(lambda _: False)
    result = p.run()
    result.wait_until_finish()
    wall = time.perf_counter() - t0

    def counter(name: str) -> int:
        found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name(name))["counters"]
        return int(sum(c.committed or c.attempted or 0 for c in found))

    if counter("download.rejected"):
        raise SystemExit(f"our pipeline rejected {counter('download.rejected')} URLs; the benchmark expects none")
    return wall, counter("download.kept")


def run_ours_direct(urls: list[str]) -> tuple[float, int]:
    """(seconds, images): our download step on its worker pool, without Beam around it."""
    from concurrent.futures import as_completed

    from facecorpus.download.fetch import Fetcher
    from facecorpus.download.politeness import DomainGates
    from facecorpus.download.transform import (
        WebRow,
        download_row,
        fetch_settings,
        resize_settings,
        worker_pool,
    )

    cfg = _download_config()
    fetcher = Fetcher(fetch_settings(cfg), DomainGates(cfg.per_domain))
    resize, pool = resize_settings(cfg), worker_pool(cfg.threads)
    rows = [WebRow(source_id=str(i), url=u, dataset="laion") for i, u in enumerate(urls)]
    t0 = time.perf_counter()
    outs = [f.result() for f in as_completed([pool.submit(download_row, r, fetcher, resize) for r in rows])]
    seconds = time.perf_counter() - t0
    failed = [o.reject for o in outs if o.reject is not None]
    if failed:
        raise SystemExit(f"our download step rejected {len(failed)} URLs, e.g. {failed[0].reason}: {failed[0].detail}")
    return seconds, len(outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--urls", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.02, help="Seconds each server waits before answering.")
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    ports_q, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(args.latency, ports_q, stop), daemon=True)
    server.start()
    try:
        ports = ports_q.get(timeout=120)
        with tempfile.TemporaryDirectory() as tmp:
            parquet = Path(tmp) / "urls.parquet"
            urls = write_urls(parquet, ports, args.urls)
            run_ours_direct(urls[:64])  # warm-up: imports (img2dataset's Resizer) happen once, outside the timers
            i2d_wall, i2d_ok, i2d_shard = run_img2dataset(parquet, Path(tmp) / "img2dataset")
            ours_wall, ours_ok = run_ours_pipeline(parquet)
            direct_s, direct_ok = run_ours_direct(urls)
    finally:
        stop.set()
        server.join(timeout=10)
    if not (i2d_ok == ours_ok == direct_ok == args.urls):
        raise SystemExit(f"not every URL was fetched: img2dataset {i2d_ok}, ours {ours_ok}, direct {direct_ok}")
    n = args.urls
    print(f"{n} URLs, 8 loopback hosts, {args.latency * 1000:.0f} ms latency, {THREADS} in flight, no resize")
    print(f"end to end    img2dataset CLI {n / i2d_wall:7.1f} images/s ({i2d_wall:.1f} s)   "
          f"ours (Beam LAION source) {n / ours_wall:7.1f} images/s ({ours_wall:.1f} s)   "
          f"ratio ours/img2dataset {i2d_wall / ours_wall:.2f}")
    print(f"download only img2dataset shard {n / i2d_shard:7.1f} images/s ({i2d_shard:.1f} s)   "
          f"ours (download step)      {n / direct_s:7.1f} images/s ({direct_s:.1f} s)   "
          f"ratio ours/img2dataset {i2d_shard / direct_s:.2f}")


if __name__ == "__main__":
    main()
