"""The launcher's end-of-run work (index.json, stats.json, the card and its figures) on a small and a
large synthetic output: peak RSS and seconds, each in a fresh child process.

small: 10,000 manifest rows (10 per shard file… 1,000 rows per manifest) and 50,000 reject lines;
large: 200,000 manifest rows and 1,000,000 reject lines. Rows carry realistic values (labels, QA
categories and answer lengths, head pose, flags, tokens), reject lines the shape of real ones. The
output is built first (not measured), then `output.finalize.finalize` runs on it in a child whose
peak RSS (ru_maxrss) is reported; memory must not grow with the output.

Run: .venv/bin/python benchmarks/finalize.py [ROWS_SMALL REJECTS_SMALL ROWS_LARGE REJECTS_LARGE]
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROWS_PER_SHARD = 1000
CATEGORIES = ("demographics", "expression", "pose", "appearance", "quality")
REASONS = [("download", "http_404", False), ("download", "timeout", True), ("download", "not_image", False),
           ("image", "too_small", False), ("faces", "no_face", False), ("validate", "duplicate", False),
           ("generate", "refusal", False)]


def build(out: Path, rows: int, rejects: int, seed: int = 0) -> None:
    """A synthetic output folder: manifest/*.parquet, shards/*.tar (one tiny member each), rejects/*.jsonl."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from facecorpus.output.manifest import MANIFEST_SCHEMA

    rng = random.Random(seed)
    for sub in ("manifest", "shards", "rejects"):
        (out / sub).mkdir(parents=True)
    for s in range(rows // ROWS_PER_SHARD):
        shard = f"shard-{s:05d}.tar"
        batch = []
        for i in range(ROWS_PER_SHARD):
            cats = rng.sample(CATEGORIES, 3)
            batch.append({
                "key": f"laion-{s:05d}{i:04d}", "shard": shard, "source_dataset": "laion", "source_id": str(s * 10_000 + i),
                "n_faces": rng.choice([1, 1, 1, 2, 3]), "generator": "openai", "llm_model": "m", "n_qa": 3,
                "categories": cats, "answer_chars": [rng.randint(20, 400) for _ in cats], "prompt_set": "compact",
                "label_age": rng.choice([None, "20-29", "30-39"]), "label_gender": rng.choice([None, "Male", "Female"]),
                "label_race": rng.choice([None, "White", "Black", "East Asian"]), "expression": rng.choice(["happy", "neutral"]),
                "pose_yaw": rng.uniform(-60, 60), "pose_pitch": rng.uniform(-30, 30), "pose_roll": rng.uniform(-20, 20),
                "flags": rng.choice([[], [], ["label_conflict:age"]]), "prompt_tokens": 900, "completion_tokens": 120,
                "cost_usd": 0.0004, "width": 512, "height": 512, "caption_chars": 80, "n_conflicts": 0,
            })
        pq.write_table(pa.Table.from_pylist(batch, schema=MANIFEST_SCHEMA), out / "manifest" / f"{shard[:-4]}.parquet",
                       compression="zstd")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(f"laion-{s:05d}0000.txt")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        (out / "shards" / shard).write_bytes(buf.getvalue())
    per_file = 100_000
    for f in range(0, rejects, per_file):
        with open(out / "rejects" / f"rejects-{f // per_file:05d}.jsonl", "w") as fh:
            for i in range(f, min(rejects, f + per_file)):
                stage, reason, retryable = rng.choice(REASONS)
                fh.write(json.dumps({"source_id": str(i), "dataset": "laion", "key": f"laion-r{i}", "stage": stage,
                                     "reason": reason, "detail": f"{reason} for http://example.com/img/{i}.jpg",
                                     "retryable": retryable, "url": f"http://example.com/img/{i}.jpg",
                                     "categories": ["pose"] if reason == "refusal" else []}) + "\n")
    (out / "run.json").write_text(json.dumps({"recipe": "bench", "attempts": []}))


def child(out: Path) -> None:
    from facecorpus.sinks.finalize import finalize

    t = time.perf_counter()
    stats = finalize(str(out), None, {"recipe": "bench"}, "name: bench\n")
    dt = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"written": stats["written"], "rejected": stats["rejected"], "seconds": dt, "rss_mb": rss_mb}))


def measure(rows: int, rejects: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        build(out, rows, rejects)
        proc = subprocess.run([sys.executable, __file__, "--child", str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    args = [int(a) for a in sys.argv[1:5]] if len(sys.argv) > 4 else [10_000, 50_000, 200_000, 1_000_000]
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    small, large = measure(args[0], args[1]), measure(args[2], args[3])
    for r in (small, large):
        print(f"{r['written']:7d} rows, {r['rejected']:8d} reject lines: {r['seconds']:6.1f} s, peak RSS {r['rss_mb']:.0f} MiB")
    print(f"peak RSS ratio large/small ({args[2] // args[0]}x the rows, {args[3] // args[1]}x the rejects): "
          f"{large['rss_mb'] / small['rss_mb']:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
    else:
        main()
