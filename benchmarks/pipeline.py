"""The demo recipe's graph (folder source, image check, dedup, templates, staging sink, card) on N augmented
photos, before and after, in one run → CPU per input, peak RSS and the ratios.

Each (side, size) runs in a fresh child process (FnApiRunner) so its CPU time and peak RSS are its own.
The **before** side is the package at `--before` (a temporary git worktree, its `src/` first on
PYTHONPATH, same virtualenv), the **after** side this checkout. Sides alternate (before N, after N,
before M, after M) so both see the same machine load; the load average is printed with every row.

Figures per side: **whole run** = the child's CPU seconds (user + system: Beam's start-up, the card and
all) / inputs, at each size; **steady state** = (CPU at M − CPU at N) / (M − N): what one more input
costs once the run is going. Memory must not grow with the input size (the sink groups locators, not
images): peak RSS at M over peak RSS at N.

    .venv/bin/python benchmarks/pipeline.py [N M] [--side PX] [--before REV]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _before import checkout, describe, env_for  # noqa: E402


def child(n: int, side: int, work: Path) -> None:
    from _photos import augmented_jpegs

    from facecorpus.pipeline import run_recipe
    from facecorpus.recipe import validate_recipe

    photos = work / "photos"
    photos.mkdir(parents=True)
    for name, data in augmented_jpegs(n, side=side):
        (photos / name).write_bytes(data)
    recipe = validate_recipe(
        {"name": "bench", "sources": [{"type": "folder", "path": str(photos)}], "output": {"samples_per_shard": 500}},
        "bench", work,
    )
    c0 = time.process_time()
    t = time.perf_counter()
    result = run_recipe(recipe, str(work / "out"))
    dt = time.perf_counter() - t
    usage = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # none on FnApiRunner in memory; counted if a runner spawns any
    print(json.dumps({"n": n, "written": result.stats["written"], "seconds": dt, "cpu_run": time.process_time() - c0,
                      "cpu_total": usage.ru_utime + usage.ru_stime + kids.ru_utime + kids.ru_stime,
                      "rss_mb": usage.ru_maxrss / 1024}))


def run_side(env: dict[str, str], n: int, side: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.run([sys.executable, __file__, "--child", str(n), str(side), d], capture_output=True, text=True,
                              env=env)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["load"] = os.getloadavg()[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[2000, 8000])
    ap.add_argument("--side", type=int, default=256, help="photo side in px (JPEG, quality 90)")
    ap.add_argument("--before", default="dfd8378", help="the commit to compare with (default: before issue 17's work)")
    args = ap.parse_args()
    small, large = args.sizes[:2]
    rows: dict[tuple[str, int], dict] = {}
    with checkout(args.before) as tree:
        # both sides start from bytecode: the start-up benchmark measures installs, this one the pipeline
        compileall.compile_dir(str(tree / "src"), quiet=1)
        sides = {"before": env_for(tree / "src"), "after": env_for(None)}
        for n in (small, large):
            for name, env in sides.items():
                rows[(name, n)] = run_side(env, n, args.side)
                r = rows[(name, n)]
                print(f"{name:6s} N={n:6d}: written {r['written']}, {r['seconds']:.0f} s wall, CPU {r['cpu_total']:.0f} s "
                      f"({r['cpu_total'] / n * 1000:.1f} ms/input), peak RSS {r['rss_mb']:.0f} MiB, load {r['load']:.1f}",
                      flush=True)
    print(f"\nbefore = {describe(args.before)}; {args.side} px JPEG photos; CPU = user + system of each run's process and its children")
    per: dict[str, dict[str, float]] = {}
    for name in ("before", "after"):
        a, b = rows[(name, small)], rows[(name, large)]
        steady = (b["cpu_total"] - a["cpu_total"]) / (large - small)
        per[name] = {"whole_small": a["cpu_total"] / small, "whole_large": b["cpu_total"] / large, "steady": steady}
        print(f"{name:6s}: CPU per input, whole run {per[name]['whole_small'] * 1000:.1f} ms (N={small}), "
              f"{per[name]['whole_large'] * 1000:.1f} ms (N={large}); steady state {steady * 1000:.1f} ms; "
              f"peak RSS ratio {b['rss_mb'] / a['rss_mb']:.2f} for {large / small:g}x the inputs")
    print(f"ratio after/before: whole run {per['after']['whole_small'] / per['before']['whole_small']:.2f} (N={small}), "
          f"{per['after']['whole_large'] / per['before']['whole_large']:.2f} (N={large}); "
          f"steady state {per['after']['steady'] / per['before']['steady']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
