"""Our shard sink on the path local runs take (staging) vs plain `tarfile`, both writing the same samples to
disk, in one process → samples/s and the ratio.

- **ours, staged** (what `facecorpus run` does on local runners, `output.grouping: staging`): each sample
  packed once (tar members + manifest row) and appended to a staging file (`StageSample`), the locators
  grouped into buckets, each bucket read back and written as a shard tar + manifest parquet, aside and
  renamed into place (`WriteStagedBucket`), the staging folder removed at the end (`remove_staging`);
  only Beam's shuffle between the two steps is left out (a dict of lists here);
- **ours, in memory** (`output.grouping: shuffle`, Dataflow): the same writer on samples in memory;
- **plain**: `tarfile.open(path, "w")` + `addfile` of the same members, one tar.

Rounds are interleaved; the first round is the whole-run figure (cold files), the median of the
others the steady state. Run: .venv/bin/python benchmarks/sink.py [N] [--rounds R]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _photos import augmented_jpegs  # noqa: E402

from facecorpus.image_check import decode_image  # noqa: E402
from facecorpus.image_config import ImageConfig  # noqa: E402
from facecorpus.records import Provenance, QAPair, Sample, SourceInfo  # noqa: E402
from facecorpus.sinks.shards import (  # noqa: E402
    ShardSample,
    StageSample,
    WriteShardBucket,
    WriteStagedBucket,
    bucket_of,
    n_buckets_for,
    remove_staging,
)

PER_SHARD = 1000


def make_samples(n: int) -> list[ShardSample]:
    out = []
    for name, data in augmented_jpegs(n):
        info = decode_image(data, ImageConfig()).info
        key = name.split(".")[0]
        sample = Sample(
            key=key, source=SourceInfo(dataset="bench", id=name), image=info, caption="A photo of a person.",
            qa=[QAPair(category="detail", question="Describe the image.", answer="A face photo, evenly lit.")],
            provenance=Provenance(generator="templates", prompt_set="templates", prompt_version="1",
                                  prompt_sha256="0" * 64, pipeline_version="bench", recipe="bench",
                                  recipe_sha256="0" * 64, created_at=datetime(2026, 1, 1, tzinfo=UTC)),
        )
        out.append(ShardSample(sample=sample, jpeg=data))
    return out


def plain(samples: list[ShardSample], out: Path) -> None:
    out.mkdir(parents=True)
    with tarfile.open(out / "plain.tar", "w") as tar:
        for s in samples:
            for name, data in s.members():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _dirs(out: Path) -> None:
    (out / "shards" / "_tmp" / "staging").mkdir(parents=True)
    (out / "manifest").mkdir()


def staged(samples: list[ShardSample], out: Path) -> None:
    _dirs(out)
    stage = StageSample(str(out))
    stage.start_bundle()
    locators = [loc for s in samples for loc in stage.process(s)]
    stage.finish_bundle()
    n = n_buckets_for(len(locators), PER_SHARD)
    buckets: dict[int, list] = {}
    for loc in locators:  # Beam's GroupByKey in a run
        buckets.setdefault(bucket_of(loc.key, n), []).append(loc)
    writer = WriteStagedBucket(str(out), 1_000_000_000)
    for bucket, locs in buckets.items():
        list(writer.process((bucket, locs)))
    remove_staging(str(out))


def in_memory(samples: list[ShardSample], out: Path) -> None:
    _dirs(out)
    n = n_buckets_for(len(samples), PER_SHARD)
    buckets: dict[int, list] = {}
    for s in samples:
        buckets.setdefault(bucket_of(s.key, n), []).append(s)
    writer = WriteShardBucket(str(out), 1_000_000_000)
    for bucket, group in buckets.items():
        list(writer.process((bucket, group)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    samples = make_samples(args.n)
    sides: dict[str, Callable[[list[ShardSample], Path], None]] = {
        "plain tarfile": plain, "ours, staged": staged, "ours, in memory": in_memory}
    times: dict[str, list[float]] = {k: [] for k in sides}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as d:
        for rep in range(args.rounds):
            for name, fn in sides.items():
                t = time.perf_counter()
                fn(samples, Path(d) / f"{name.replace(' ', '_').replace(',', '')}-{rep}")
                times[name].append(time.perf_counter() - t)
    load.append(os.getloadavg()[0])
    print(f"samples: {args.n} (256 px JPEGs); load average {load[0]:.1f} → {load[1]:.1f}")
    rate = {k: (args.n / v[0], args.n / statistics.median(v[1:] or v)) for k, v in times.items()}
    for name, (whole, steady) in rate.items():
        print(f"{name:16s}: whole run {whole:8.0f} samples/s   steady {steady:8.0f} samples/s")
    p = rate["plain tarfile"]
    for name in ("ours, staged", "ours, in memory"):
        print(f"ratio {name}/plain: whole run {rate[name][0] / p[0]:.2f}, steady {rate[name][1] / p[1]:.2f}")


if __name__ == "__main__":
    main()
