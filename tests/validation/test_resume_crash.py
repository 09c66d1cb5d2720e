"""Crash safety: SIGKILL a real run at random moments, resume, and compare with an uninterrupted run.

Every repetition kills the run (and each resume) up to four times, in random order: twice at random
times, once while items wait for their dedup verdict, once after a random number of shards has
landed — then lets a resume finish. After every kill no partial shard is visible; at the
end the keys, the records (timestamps pinned by SOURCE_DATE_EPOCH, so byte for byte), the reject lines
and the counts equal the uninterrupted run's, shards finished before a kill were never touched, and
`facecorpus validate` passes. FACECORPUS_CRASH_REPEATS sets the number of repetitions (default 1, to keep
the suite fast; run it with more locally) and FACECORPUS_CRASH_SEED the random plan.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.support.helpers import REPO, run_cli, write_recipe
from tests.validation.test_resume import EPOCH, records, reject_lines, shard_fingerprints

REPEATS = int(os.environ.get("FACECORPUS_CRASH_REPEATS", "1"))
RANDOM_KILLS = 2


@pytest.fixture(scope="module")
def crash_recipe(demo_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo inputs plus 30 crops of real photos (some overlap enough to be near duplicates)."""
    from facecorpus.demo import photo_paths

    root = tmp_path_factory.mktemp("crash")
    crops = root / "crops"
    crops.mkdir()
    photos = photo_paths()
    for name in ("astronaut", "coffee", "cat", "rocket", "cameraman", "group6"):
        im = Image.open(photos[name]).convert("RGB")
        w, h = im.size
        for i in range(5):
            box = (i * w // 12, (i % 3) * h // 10, w // 2 + i * w // 12, h // 2 + (i % 3) * h // 10)
            im.crop(box).save(crops / f"{name}_{i}.jpg", quality=90)
    ff = demo_inputs / "fairface"
    return write_recipe(root / "recipe.yaml", {
        "name": "crash",
        "sources": [
            {"type": "fairface", "images": str(ff / "fairface-img-margin025-trainval.zip"),
             "labels": [str(ff / "fairface_label_val.csv")], "split": "val"},
            {"type": "folder", "path": str(demo_inputs / "photos"), "dataset": "photos"},
            {"type": "folder", "path": str(crops), "dataset": "crops"},
        ],
        "validation": {"dedup": {"near": True, "max_distance": 4}},
        "output": {"samples_per_shard": 3},
    })


def _start(recipe: Path, out: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "facecorpus.cli", "run", str(recipe), "--out", str(out)] + (["--resume"] if resume else [])
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _kill_when(proc: subprocess.Popen, out: Path, kind: str, value: float) -> bool:
    """SIGKILL the run's process group when the condition holds; False if the run finished first.

    kinds: 'time' (seconds after start), 'parking' (items waiting for their dedup verdict in
    shards/_tmp/screen), 'writing' (`value` more shards than when the run started).
    """
    started = time.monotonic()
    shards_at_start = len(list(out.glob("shards/*.tar")))
    while proc.poll() is None:
        if kind == "time":
            hit = time.monotonic() - started >= value
        elif kind == "parking":
            hit = any(out.glob("shards/_tmp/screen/*.pkl"))
        else:
            hit = len(list(out.glob("shards/*.tar"))) >= shards_at_start + value
        if hit:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    return False


def _visible_shards_are_whole(out: Path) -> None:
    for shard in (out / "shards").glob("*.tar"):
        with tarfile.open(shard) as tar:  # a partial tar would raise here
            names = [m.name for m in tar]
        assert len(names) % 3 == 0 and names, shard


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(crash_recipe: Path, tmp_path: Path):
    ref = tmp_path / "reference"
    t0 = time.monotonic()
    proc = run_cli("run", str(crash_recipe), "--out", str(ref), env={"SOURCE_DATE_EPOCH": EPOCH})
    duration = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref_records, ref_rejects = records(ref), reject_lines(ref)
    ref_stats = json.loads((ref / "stats.json").read_text())
    assert ref_stats["validation"]["duplicates"] > 0  # dedup is part of what must survive the kills

    rng = random.Random(int(os.environ.get("FACECORPUS_CRASH_SEED", "20261124")))
    n_shards = len(list(ref.glob("shards/*.tar")))
    kills_landed = 0
    for rep in range(REPEATS):
        out = tmp_path / f"run{rep}"
        finished: dict[str, tuple[int, str]] = {}
        plan = [("time", rng.uniform(0.15, 0.9) * duration) for _ in range(RANDOM_KILLS)]
        plan += [("parking", 0.0), ("writing", rng.randint(1, max(1, n_shards - 1)))]
        rng.shuffle(plan)
        rep_kills = 0
        for kind, value in plan:
            proc = _start(crash_recipe, out, resume=out.exists())
            started = time.monotonic()
            killed = _kill_when(proc, out, kind, value)
            if not killed:
                assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
            kills_landed += killed
            rep_kills += killed
            tmp_files = [p for p in (out / "shards" / "_tmp").rglob("*") if p.is_file()] if out.exists() else []
            print(f"rep {rep} {kind:8s} {'killed' if killed else 'finished'} at {time.monotonic() - started:5.1f}s "
                  f"(uninterrupted run: {duration:.1f}s): {len(list(out.glob('shards/*.tar')))} shards, "
                  f"{len(list(out.glob('manifest/*.parquet')))} manifests, {len(tmp_files)} partial files")
            if (out / "shards").exists():
                _visible_shards_are_whole(out)
                with_manifest = {n: v for n, v in shard_fingerprints(out).items()
                                 if (out / "manifest" / (n[:-4] + ".parquet")).exists()}
                finished.update({n: v for n, v in with_manifest.items() if n not in finished})
            if not killed and rep_kills == 0:
                # the run beat the timer (on a busy machine the reference run took longer than this one did):
                # nothing was interrupted yet, so start afresh and let the plan's next kill land
                shutil.rmtree(out)
                finished.clear()
                continue
            if not killed:
                break  # the output is complete; further kills would only interrupt no-op resumes
        proc = _start(crash_recipe, out, resume=out.exists())
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-3000:]

        assert records(out) == ref_records, f"repetition {rep}: records differ from the uninterrupted run"
        assert reject_lines(out) == ref_rejects, f"repetition {rep}: reject lines differ"
        stats = json.loads((out / "stats.json").read_text())
        for k in ("inputs", "written", "rejected", "by_reason"):
            assert stats[k] == ref_stats[k], (rep, k)
        after = shard_fingerprints(out)
        assert {n: after.get(n) for n in finished} == finished, "a shard finished before a kill was rewritten"
        check = run_cli("validate", str(out))
        assert check.returncode == 0, check.stderr
    assert kills_landed >= REPEATS  # the runs were really interrupted, not just re-run
