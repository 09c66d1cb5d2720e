"""Per-core throughput of a LAION-Face run, for the cost estimate in docs/dataflow.md.

The whole `facecorpus run` of the LAION source on N loopback URLs (8 hosts in a separate process,
`--latency` per request, real group photo t1.jpg, 1280×886, resized to 512 like the shipped recipe),
image check, templates text and the shard sink — once without face analysis and once with the
portable face models (BlazeFace + O-Net + FaceMesh + expression, one sample per image). Reported:
wall time, and the CPU seconds of the run's whole process tree (user + system, from the child's
rusage), so `URLs per CPU-second` is a per-core figure that a busy machine does not distort much
(wall time it does). Each configuration runs at N and 3N URLs: the difference is the marginal
(steady-state) cost per URL, without the interpreter and Beam start-up that a long run pays once.

    .venv/bin/python benchmarks/throughput.py [--urls 200] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from download import HOSTS, serve, write_urls  # noqa: E402


def run(recipe: dict, work: Path, env: dict[str, str]) -> dict:
    import yaml

    path = work / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "facecorpus.cli", "run", str(path), "--out", str(work / recipe["name"])],
                          capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    stats = json.loads((work / recipe["name"] / "stats.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"name": recipe["name"], "inputs": stats["inputs"], "written": stats["written"], "wall": wall, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--urls", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.05)
    args = ap.parse_args()
    from tests.support.model_packs import cached_store

    env = {"FACECORPUS_MODELS": str(cached_store("portable"))}
    load_before = os.getloadavg()[0]
    ports: mp.Queue = mp.Queue()
    stop = mp.Event()
    commands, server_end = mp.Pipe()  # serve() answers commands on it; this benchmark sends none
    server = mp.Process(target=serve, args=(args.latency, ports, server_end, stop), daemon=True)
    server.start()
    try:
        got = ports.get(timeout=120)
        with tempfile.TemporaryDirectory() as d:
            work = Path(d)
            results = []
            for n in (args.urls, 3 * args.urls):
                parquet = work / f"laion-{n}.parquet"
                write_urls(parquet, got, n)
                for faces in ("none", "portable"):
                    results.append(run(_recipe(parquet, f"{faces}_{n}", faces), work, env) | {"faces": faces, "n": n})
    finally:
        stop.set()
        server.join(timeout=10)
    print(f"load average (1 min): {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {os.cpu_count()} cores; "
          f"{len(HOSTS)} hosts, {args.latency * 1000:.0f} ms latency")
    for r in results:
        print(f"faces {r['faces']:8s} N={r['n']:5d}: {r['inputs']} inputs, {r['written']} written, wall {r['wall']:6.1f} s, "
              f"CPU {r['cpu']:6.1f} s")
    per_url = {}
    for faces in ("none", "portable"):
        small, large = (r for r in results if r["faces"] == faces)
        marginal = per_url[faces] = (large["cpu"] - small["cpu"]) / (large["inputs"] - small["inputs"])
        print(f"faces {faces:8s}: marginal {marginal * 1000:6.1f} ms CPU per URL → {1 / marginal:6.2f} URLs per core-second "
              f"(whole run at N={large['n']}: {large['inputs'] / large['cpu']:.2f}) → "
              f"{marginal * 1e6 / 3600:.1f} vCPU-hours per million URLs")
    print(f"ratio portable faces / no faces, CPU per URL (steady): {per_url['portable'] / per_url['none']:.2f}")


def _recipe(parquet: Path, name: str, faces: str) -> dict:
    return {
        "name": name,
        "sources": [{"type": "laion", "path": str(parquet), "download": {
            "allow_networks": ["127.0.0.0/28"], "threads": 32, "per_domain": 4, "retries": 0, "image_size": 512}}],
        "image": {"min_side": 64},
        "generation": {"generator": "templates"},
        "validation": {"dedup": {"exact": False, "near": False}},  # one photo behind every URL
        "output": {"samples_per_shard": 1000},
        "faces": {"backend": "none"} if faces == "none" else {"backend": "portable", "providers": "cpu"},
    }


if __name__ == "__main__":
    main()
