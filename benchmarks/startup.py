"""Start-up: `facecorpus --help` as fresh processes, before and after, in one run → seconds and the ratio.

Four sides, interleaved, `--runs` times each (medians):
- **before, source only**: the package at `--before` (a temporary worktree), no bytecode anywhere
  (PYTHONPYCACHEPREFIX points at an empty folder and PYTHONDONTWRITEBYTECODE=1: every module is
  compiled from source at each start, as in an install without `--compile-bytecode`);
- **before, compiled**: the same code with bytecode;
- **after, source only** and **after, compiled**: this checkout (the installed, editable package).

Figures: wall seconds and CPU seconds (user + system of the child); the load average is printed,
because on a shared machine wall time mostly measures the queue for a core.

    .venv/bin/python benchmarks/startup.py [--runs 5] [--before REV]
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _before import checkout, describe, env_for  # noqa: E402

HELP = "import sys; from facecorpus.cli import console_main; sys.argv = ['facecorpus', '--help']; console_main()"


def once(env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one `facecorpus --help`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", HELP], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", default="dfd8378", help="the commit to compare with (default: before issue 17's work)")
    args = ap.parse_args()
    with checkout(args.before) as tree, tempfile.TemporaryDirectory() as empty:
        compileall.compile_dir(str(tree / "src"), quiet=1)
        no_pyc = {"PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        sides = {
            "before, source only": env_for(tree / "src", **no_pyc),
            "before, compiled": env_for(tree / "src"),
            "after, source only": env_for(None, **no_pyc),
            "after, compiled": env_for(None),
        }
        for env in sides.values():
            once(env)  # warm the page cache
        load = [os.getloadavg()[0]]
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
        for _ in range(args.runs):
            for name, env in sides.items():
                runs[name].append(once(env))
        load.append(os.getloadavg()[0])
    print(f"facecorpus --help, {args.runs} runs each; before = {describe(args.before)}")
    print(f"load average (1 min) {load[0]:.1f} → {load[1]:.1f} on {os.cpu_count()} cores")
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
    for name, (wall, cpu) in med.items():
        print(f"  {name:20s} wall {wall:5.2f} s   CPU {cpu:5.2f} s")
    b, a = med["before, source only"], med["after, compiled"]
    print(f"after (compiled) / before (source only): wall {a[0] / b[0]:.2f}, CPU {a[1] / b[1]:.2f}; "
          f"target: wall < 2.5 s → {'met' if a[0] < 2.5 else 'missed'} ({a[0]:.2f} s)")


if __name__ == "__main__":
    main()
