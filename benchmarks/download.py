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

Figures: **whole run** = N URLs from the call to the last tar written (start-up included);
**steady state** = N / (time for 2N − time for N), what the tool sustains once running. Runs
alternate (img2dataset N, ours N, img2dataset 2N, ours 2N); the load average is printed.

    .venv/bin/python benchmarks/download.py [--urls 2000] [--latency 0.02]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HOSTS = [f"127.0.0.{i}" for i in range(1, 9)]
THREADS = 32


def serve(latency: float, ports: mp.Queue, stop: mp.Event) -> None:
    """Child process: start one server per host, report their ports, serve until told to stop."""
    from tests.support.loopback_web import WebServer

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--urls", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.02, help="Seconds each server waits before answering.")
    args = ap.parse_args()
    n = args.urls
    ctx = mp.get_context("spawn")
    ports_q, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(args.latency, ports_q, stop), daemon=True)
    server.start()
    runs: dict[str, dict[int, tuple[float, int]]] = {"img2dataset": {}, "ours": {}}
    load = [os.getloadavg()[0]]
    try:
        ports = ports_q.get(timeout=120)
        with tempfile.TemporaryDirectory() as tmp:
            lists = {}
            for k in (n, 2 * n):
                lists[k] = Path(tmp) / f"urls{k}.parquet"
                write_urls(lists[k], ports, k)
            run_ours(lists[n], Path(tmp) / "warm")  # imports (img2dataset's Resizer, Beam) happen once, before any timer
            for k in (n, 2 * n):
                runs["img2dataset"][k] = run_img2dataset(lists[k], Path(tmp) / f"i2d{k}")
                runs["ours"][k] = run_ours(lists[k], Path(tmp) / f"ours{k}")
    finally:
        stop.set()
        server.join(timeout=10)
    load.append(os.getloadavg()[0])
    for name, by_size in runs.items():
        for k, (_, ok) in by_size.items():
            if ok != k:
                raise SystemExit(f"{name} wrote {ok} of {k} images")
    print(f"{n} and {2 * n} URLs, 8 loopback hosts, {args.latency * 1000:.0f} ms latency, {THREADS} in flight, no resize; "
          f"both in-process, both writing tars; load average {load[0]:.1f} → {load[1]:.1f}")
    rate = {}
    for name, by_size in runs.items():
        t1, t2 = by_size[n][0], by_size[2 * n][0]
        rate[name] = (n / t1, n / (t2 - t1) if t2 > t1 else float("inf"))
        print(f"{name:12s} whole run {rate[name][0]:7.1f} images/s ({t1:.1f} s for {n}); steady {rate[name][1]:7.1f} images/s "
              f"({t2:.1f} s for {2 * n})")
    print(f"ratio ours/img2dataset: whole run {rate['ours'][0] / rate['img2dataset'][0]:.2f}, "
          f"steady {rate['ours'][1] / rate['img2dataset'][1]:.2f}")


if __name__ == "__main__":
    main()
