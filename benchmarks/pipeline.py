"""The demo recipe's graph on N augmented photos: samples/s and peak RSS, for two input sizes side by side.

Each size runs in a fresh child process (FnApiRunner, templates generator, folder source) so its
peak RSS is its own. Memory must not grow with the input size: the sink groups keys, not images
(`output.grouping: staging`). Run: .venv/bin/python benchmarks/pipeline.py [N_SMALL N_LARGE]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def child(n: int, work: Path) -> None:
    from _photos import augmented_jpegs

    from facecorpus.pipeline import run_recipe
    from facecorpus.recipe import validate_recipe

    photos = work / "photos"
    photos.mkdir(parents=True)
    for name, data in augmented_jpegs(n):
        (photos / name).write_bytes(data)
    recipe = validate_recipe(
        {"name": "bench", "sources": [{"type": "folder", "path": str(photos)}], "output": {"samples_per_shard": 500}},
        "bench", work,
    )
    t = time.perf_counter()
    result = run_recipe(recipe, str(work / "out"))
    dt = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "written": result.stats["written"], "seconds": dt, "rss_mb": rss_mb}))


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:3]] if len(sys.argv) > 2 else [2000, 8000]
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            proc = subprocess.run([sys.executable, __file__, "--child", str(n), d], capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(proc.stderr[-3000:])
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for r in results:
        print(f"N={r['n']:6d}: {r['written'] / r['seconds']:7.1f} samples/s, peak RSS {r['rss_mb']:.0f} MiB")
    small, large = results
    print(f"throughput ratio large/small: {(large['written'] / large['seconds']) / (small['written'] / small['seconds']):.2f}")
    print(f"peak RSS ratio large/small ({large['n'] // small['n']}x the inputs): {large['rss_mb'] / small['rss_mb']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
