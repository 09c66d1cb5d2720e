"""The launcher's end-of-run work (index.json, stats.json, the card and its figures) and `facecorpus
validate`, each on a small and a large synthetic output: peak RSS and seconds, each in a fresh child
process.

finalize — small: 10,000 manifest rows (1,000 rows per manifest) and 50,000 reject lines; large:
200,000 manifest rows and 1,000,000 reject lines. Rows carry realistic values (labels, QA categories
and answer lengths, head pose, flags, tokens), reject lines the shape of real ones. The output is
built first (not measured), then `sinks.finalize.finalize` runs on it in a child.

validate — a *valid* output written by the real sink (`WriteShardBucket`: tar shards of 1,000
samples with a JPEG, the record and the caption; their manifests), its stats, index and run.json with
the recipe (so record rules, dedup and hold-out are re-checked too): small 1,000 samples and 10,000
reject lines, large 10,000 samples and 200,000 reject lines; then `output.check.check_output` in a
child, which must find it valid.

Each child reports its peak RSS (ru_maxrss) and, beside it, the RSS it had once its imports were
done (the interpreter with Beam, pyarrow, PIL…), so the growth with the output shows apart from
that base. The ratio large/small of the peaks is issue 14's figure (bound 1.2 for finalize).

Run: .venv/bin/python benchmarks/finalize.py [finalize|validate|both]
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


def build_valid(out: Path, samples: int, rejects: int, seed: int = 0) -> None:
    """A valid output as the sink writes it (see the module docstring), with stats, index and run.json."""
    from datetime import UTC, datetime

    from PIL import Image

    from facecorpus.output.fingerprint import fingerprint
    from facecorpus.recipe import Recipe
    from facecorpus.records import ImageInfo, Provenance, QAPair, Sample, SourceInfo
    from facecorpus.sinks.finalize import finalize
    from facecorpus.sinks.shards import WriteShardBucket, pack
    from facecorpus.stage import ShardSample

    rng = random.Random(seed)
    for sub in ("shards/_tmp", "manifest", "rejects"):
        (out / sub).mkdir(parents=True)
    recipe = Recipe.model_validate({"name": "bench", "sources": [{"type": "folder", "path": "x"}],
                                    "generation": {"generator": "templates", "categories": ["detail"]}})
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 90, 60)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    created = datetime(2026, 1, 1, tzinfo=UTC)
    writer = WriteShardBucket(str(out), 10**12)
    for b in range(-(-samples // ROWS_PER_SHARD)):
        packed = []
        for i in range(b * ROWS_PER_SHARD, min(samples, (b + 1) * ROWS_PER_SHARD)):
            s = Sample(key=f"b{i:08d}", source=SourceInfo(dataset="bench", id=str(i)),
                       image=ImageInfo(width=32, height=32, sha256=f"{rng.getrandbits(256):064x}",
                                       phash=f"{rng.getrandbits(64):016x}", bytes=len(jpeg)),
                       caption=f"A close portrait photograph of a person, number {i}, facing the camera.",
                       qa=[QAPair(category="detail", question="What stands out in this face?",
                                  answer=f"The face in picture {i} is evenly lit, with a calm look and a clear view of both eyes.")],
                       provenance=Provenance(generator="templates", prompt_set="templates", prompt_version="1",
                                             prompt_sha256="0" * 64, pipeline_version="bench", recipe="bench",
                                             recipe_sha256="0" * 64, created_at=created))
            packed.append(pack(ShardSample(sample=s, jpeg=jpeg)))
        list(writer.write(b, packed))
    per_file = 100_000
    for f in range(0, rejects, per_file):
        with open(out / "rejects" / f"rejects-{f // per_file:05d}.jsonl", "w") as fh:
            for i in range(f, min(rejects, f + per_file)):
                stage, reason, retryable = rng.choice(REASONS[:5])
                fh.write(json.dumps({"source_id": str(i), "dataset": "bench", "key": f"r{i:08d}", "stage": stage,
                                     "reason": reason, "detail": f"{reason} for http://example.com/img/{i}.jpg",
                                     "retryable": retryable}, sort_keys=True) + "\n")
    (out / "run.json").write_text(json.dumps({"recipe": "bench", "fingerprint": fingerprint(recipe),
                                              "recipe_json": json.loads(recipe.canonical_json()), "attempts": []}))
    finalize(str(out), None, {"recipe": "bench"}, "name: bench\n", plots=False)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(what: str, out: Path) -> None:
    if what == "finalize":
        from facecorpus.sinks.finalize import finalize

        base = _rss_mb()
        t = time.perf_counter()
        stats = finalize(str(out), None, {"recipe": "bench"}, "name: bench\n")
        result = {"written": stats["written"], "rejected": stats["rejected"]}
    else:
        from facecorpus.output.check import check_output

        base = _rss_mb()
        t = time.perf_counter()
        rep = check_output(str(out))
        if not rep.ok:
            sys.exit(f"the synthetic output is not valid: {rep.problems[:3]}")
        result = {"written": rep.samples, "rejected": rep.rejects}
    print(json.dumps({**result, "seconds": time.perf_counter() - t, "rss_mb": _rss_mb(), "base_mb": base}))


def measure(what: str, rows: int, rejects: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        (build if what == "finalize" else build_valid)(out, rows, rejects)
        proc = subprocess.run([sys.executable, __file__, "--child", what, str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])


SIZES = {"finalize": (10_000, 50_000, 200_000, 1_000_000), "validate": (1_000, 10_000, 10_000, 200_000)}


def report(what: str) -> None:
    rows_s, rej_s, rows_l, rej_l = SIZES[what]
    print(f"{what}: load average before {os.getloadavg()[0]:.1f}")
    small, large = measure(what, rows_s, rej_s), measure(what, rows_l, rej_l)
    for r in (small, large):
        print(f"  {r['written']:7d} samples, {r['rejected']:8d} reject lines: {r['seconds']:6.1f} s, "
              f"peak RSS {r['rss_mb']:.0f} MiB (after imports {r['base_mb']:.0f} MiB, growth {r['rss_mb'] - r['base_mb']:.0f} MiB)")
    print(f"  {what} peak RSS ratio large/small ({rows_l // rows_s}x the samples, {rej_l // rej_s}x the rejects): "
          f"{large['rss_mb'] / small['rss_mb']:.2f}; load average after {os.getloadavg()[0]:.1f}")


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "both"
    for what in ("finalize", "validate"):
        if which in (what, "both"):
            report(what)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
