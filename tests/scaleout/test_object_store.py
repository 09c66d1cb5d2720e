"""Object stores end to end: a real S3 API on loopback (moto's server, created with boto3) through
Beam's own S3 filesystem, configured only by the standard environment (AWS_ENDPOINT_URL_S3 and
AWS credentials).

`facecorpus run --out s3://…` is SIGKILLed while samples wait in staging objects, `--resume` finishes
it, and the result equals an uninterrupted run on local disk: same records byte for byte (timestamps
pinned), same reject lines, same counts. Then `validate`, `export` and the loader read the s3://
output, and a fresh run into it is refused ("already holds a run") — an object-store prefix has no
folder to `exists`, so that check must look for objects.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.support.helpers import REPO, run_cli, write_recipe
from tests.support.inprocess_cli import cli_in_process
from tests.validation.test_resume import EPOCH, records, reject_lines

BUCKET = "corpus"
pytestmark = pytest.mark.e2e  # every test here needs moto's server or a whole run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3() -> dict[str, str]:
    """moto's S3 server on 127.0.0.1 (its own process) with one bucket; returns the environment for it."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert server.poll() is None and time.monotonic() < deadline, "moto's server did not start"
        time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "loopback-test",
           "AWS_SECRET_ACCESS_KEY": "loopback-test-secret", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.kill()
    server.wait()


_clients: list = []


def _client():  # noqa: ANN202 - a boto3 S3 client (built once: building one costs a second of CPU)
    if not _clients:
        import boto3

        _clients.append(boto3.client("s3"))
    return _clients[0]


def _keys(prefix: str) -> list[str]:
    pages = _client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _download(prefix: str, dest: Path) -> Path:
    for key in _keys(prefix):
        target = dest / key[len(prefix):].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        _client().download_file(BUCKET, key, str(target))
    return dest


@pytest.fixture(scope="module")
def crops_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """18 crops of real photos and an exact copy of one (rejected `duplicate`), templates text."""
    from facecorpus.demo import photo_paths

    root = tmp_path_factory.mktemp("s3recipe")
    crops = root / "crops"
    crops.mkdir()
    for name in ("astronaut", "coffee", "cat", "rocket", "cameraman", "group6"):
        im = Image.open(photo_paths()[name]).convert("RGB")
        w, h = im.size
        for i in range(3):
            box = (i * w // 8, (i % 3) * h // 10, w // 2 + i * w // 8, h // 2 + (i % 3) * h // 10)
            im.crop(box).save(crops / f"{name}_{i}.jpg", quality=90)
    shutil.copy(crops / "cat_0.jpg", crops / "cat_copy.jpg")
    return write_recipe(root / "recipe.yaml", {
        "name": "s3-crops",
        "sources": [{"type": "folder", "path": str(crops), "dataset": "crops"}],
        "generation": {"generator": "templates"},
        "validation": {"dedup": {"near": True, "max_distance": 4}},
        "output": {"samples_per_shard": 3},
    })


def _main(*args: str) -> tuple[int, str, str]:
    """`facecorpus ARGS` inside this process (no interpreter start under a busy machine); timestamps pinned."""
    proc = cli_in_process(*args, env={"SOURCE_DATE_EPOCH": EPOCH})
    return proc.returncode, proc.stdout, proc.stderr


def _run_until(recipe: Path, out: str, resume: bool, condition) -> bool:  # noqa: ANN001 - a predicate
    """Start `facecorpus run`; SIGKILL its process group once `condition()` holds. True if killed."""
    args = [sys.executable, "-m", "facecorpus.cli", "run", str(recipe), "--out", out] + (["--resume"] if resume else [])
    proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    while proc.poll() is None:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.1)
    assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
    return False


@pytest.fixture(scope="module")
def reference(crops_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe run uninterrupted on local disk."""
    ref = tmp_path_factory.mktemp("s3ref") / "reference"
    code, _, err = _main("run", str(crops_recipe), "--out", str(ref))
    assert code == 0, err[-3000:]
    return ref


def test_reference_run_has_samples_and_rejects(reference: Path):
    stats = json.loads((reference / "stats.json").read_text())
    assert stats["written"] == 18 and stats["by_reason"] == {"duplicate": 1} and stats["invariant_ok"]


@pytest.fixture(scope="module")
def resumed(s3, reference: Path, crops_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same recipe into s3://, killed while samples wait in staging objects, then resumed."""
    root = tmp_path_factory.mktemp("s3runs")
    ref = reference
    out = f"s3://{BUCKET}/runs/crops"
    killed = _run_until(crops_recipe, out, False, lambda: bool(_keys("runs/crops/shards/_tmp/staging/")))
    code, _, err = _main("run", str(crops_recipe), "--out", out, "--resume")
    assert code == 0, err[-3000:]
    return {"ref": ref, "out": out, "killed": killed, "root": root}


def test_killed_and_resumed_on_s3_equals_an_uninterrupted_run(resumed):
    assert resumed["killed"], "the first run finished before it could be killed in staging"
    assert not _keys("runs/crops/shards/_tmp/"), "staging objects left behind"
    ref, local = resumed["ref"], _download("runs/crops/", resumed["root"] / "downloaded")
    assert records(local) == records(ref)
    assert reject_lines(local) == reject_lines(ref)
    got, want = json.loads((local / "stats.json").read_text()), json.loads((ref / "stats.json").read_text())
    for k in ("inputs", "written", "rejected", "by_reason", "shards"):
        assert got[k] == want[k], k
    assert got["invariant_ok"] and want["rejected"] > 0
    run_info = json.loads((local / "run.json").read_text())
    # killed before it finished a shard or a reject file, the first attempt left nothing that counts, so
    # --resume starts afresh (after removing its partial objects); killed later, it resumes
    assert [a["mode"] for a in run_info["attempts"]] in (["fresh"], ["fresh", "resume"])


def test_validate_reads_s3_and_a_fresh_run_into_it_is_refused(resumed, crops_recipe: Path):
    written = json.loads((resumed["ref"] / "stats.json").read_text())["written"]
    check = run_cli("validate", resumed["out"])  # the real command, in a fresh process: only the environment configures S3
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"valid: {written} samples" in check.stdout
    code, stdout, err = _main("stats", resumed["out"], "--json")
    assert code == 0 and json.loads(stdout)["written"] == written, err
    code, _, err = _main("run", str(crops_recipe), "--out", resumed["out"])
    assert code == 2 and "already holds a run" in err, err


def test_export_and_loader_read_s3(resumed, tmp_path: Path):
    want = json.loads((resumed["ref"] / "stats.json").read_text())
    dest = tmp_path / "export" / "data.json"
    code, _, err = _main("export", resumed["out"], "--format", "sharegpt", "--out", str(dest))
    assert code == 0, err
    data = json.loads(dest.read_text())
    assert len(data) == want["qa_pairs"] > 0  # one ShareGPT record per QA pair
    assert len(list((dest.parent / "images").iterdir())) == want["written"]

    from facecorpus.loader import make_dataset

    pairs = list(make_dataset(resumed["out"], format="record", shuffle=0, shard_shuffle=0))
    assert sorted(r["key"] for _, r in pairs) == sorted(records(resumed["ref"]))


def test_missing_s3_output_is_reported_not_crashed(s3):
    proc = run_cli("validate", f"s3://{BUCKET}/nothing/here")
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_shards_written_to_s3_are_whole_tars(s3, tmp_path: Path):
    """A shard read back through Beam's S3 filesystem is a complete tar (written aside, then renamed)."""
    from apache_beam.io.filesystems import FileSystems

    from facecorpus.sinks.shards import tar_bytes_for
    from facecorpus.storage import use_storage, write_atomically

    use_storage()
    data = tar_bytes_for([("k.txt", b"x" * 10_000)])
    write_atomically(f"s3://{BUCKET}/atomic/shards/a.tar", data, f"s3://{BUCKET}/atomic/shards/_tmp")
    with FileSystems.open(f"s3://{BUCKET}/atomic/shards/a.tar") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        assert [m.name for m in tar] == ["k.txt"]
    assert _keys("atomic/shards/_tmp") == []
