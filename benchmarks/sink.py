"""Our shard writer vs plain `tarfile` writing the same samples, in one process → the throughput ratio.

Ours: `WriteShardBucket` (sorted members, reproducible headers, manifest parquet, write aside + rename
through Beam FileSystems). Plain: `tarfile.open(path, "w")` + `addfile` of the same members.
Run: .venv/bin/python benchmarks/sink.py [N]
"""

from __future__ import annotations

import io
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _photos import augmented_jpegs  # noqa: E402

from facecorpus.image_check import decode_image  # noqa: E402
from facecorpus.image_config import ImageConfig  # noqa: E402
from facecorpus.records import Provenance, QAPair, Sample, SourceInfo  # noqa: E402
from facecorpus.sinks.shards import ShardSample, WriteShardBucket  # noqa: E402


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


def plain(samples: list[ShardSample], path: Path) -> None:
    with tarfile.open(path, "w") as tar:
        for s in samples:
            for name, data in s.members():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def ours(samples: list[ShardSample], out: Path) -> None:
    (out / "shards" / "_tmp").mkdir(parents=True, exist_ok=True)
    (out / "manifest").mkdir(exist_ok=True)
    list(WriteShardBucket(str(out), 1_000_000_000).process((0, samples)))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    samples = make_samples(n)
    best = {"ours": float("inf"), "plain": float("inf")}
    with tempfile.TemporaryDirectory() as d:
        for rep in range(3):  # interleaved, best of 3: the machine is shared
            t = time.perf_counter()
            plain(samples, Path(d) / f"plain{rep}.tar")
            best["plain"] = min(best["plain"], time.perf_counter() - t)
            t = time.perf_counter()
            ours(samples, Path(d) / f"ours{rep}")
            best["ours"] = min(best["ours"], time.perf_counter() - t)
    rate = {k: n / v for k, v in best.items()}
    print(f"samples: {n}")
    print(f"plain tarfile : {rate['plain']:9.0f} samples/s")
    print(f"ours (shard)  : {rate['ours']:9.0f} samples/s  (+ manifest parquet, atomic rename)")
    print(f"ratio ours/plain: {rate['ours'] / rate['plain']:.2f}")


if __name__ == "__main__":
    main()
