"""Dedup and hold-out: the banded Beam transforms agree with brute force; a real run rejects real duplicates."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that

from facecorpus.image_check import hamming
from facecorpus.validation.dedup import ExactDuplicates, HoldoutMatches, NearDuplicates, band_keys
from facecorpus.validation.holdout import parse_holdout_line
from tests.support.helpers import write_recipe
from tests.support.inprocess_cli import cli_in_process


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`facecorpus ARGS` in this process (no interpreter start-up), reported like a finished subprocess."""
    return cli_in_process(*args)


def _flip(h: int, bits: list[int]) -> int:
    for b in bits:
        h ^= 1 << b
    return h


@pytest.mark.parametrize("d", [0, 1, 3, 4, 7])
def test_any_pair_within_the_distance_shares_a_band(d: int):
    rng = random.Random(d)
    for _ in range(2000):
        a = rng.getrandbits(64)
        b = _flip(a, rng.sample(range(64), rng.randint(0, d)))
        ka, kb = set(band_keys(f"{a:016x}", d)), set(band_keys(f"{b:016x}", d))
        assert ka & kb, (f"{a:016x}", f"{b:016x}")


def _synthetic(n_clusters: int = 300, seed: int = 7) -> list[tuple[str, str, str]]:
    """Light records (key, sha256, phash): clusters of near variants, exact byte copies, identical pHashes."""
    rng = random.Random(seed)
    rows = []
    for c in range(n_clusters):
        base = rng.getrandbits(64)
        for v in range(rng.randint(1, 5)):
            flips = rng.sample(range(64), rng.choice([0, 1, 2, 3, 4, 5, 6, 9]))
            ph = f"{_flip(base, flips):016x}"
            sha = f"{c:032x}{v:032x}"
            rows.append((f"k{rng.getrandbits(40):010x}", sha, ph))
            if rng.random() < 0.2:  # the same bytes again under another key
                rows.append((f"k{rng.getrandbits(40):010x}", sha, ph))
    blank = "0" * 16  # a hot pHash: many different files that all hash the same
    rows += [(f"b{i:04d}", f"{i:064x}", blank) for i in range(200)]
    return rows


def _expected_losers(rows, d: int) -> tuple[set[str], set[str]]:
    exact = {k for k, sha, _ in rows if any(k2 < k and s2 == sha for k2, s2, _ in rows)}
    near = {k for k, _, ph in rows if any(k2 < k and hamming(ph, p2) <= d for k2, _, p2 in rows)}
    return exact, near


def test_banded_beam_dedup_equals_brute_force():
    rows = _synthetic()
    d = 4
    exact, near = _expected_losers(rows, d)
    assert exact and near - exact  # the data has both kinds

    def keys_are(expected):
        def check(got):
            keys = [k for k, _ in got]
            assert len(keys) == len(set(keys)) or expected is None
            assert set(keys) == expected, (len(set(keys)), len(expected))
        return check

    with beam.Pipeline(runner="FnApiRunner") as p:
        light = p | beam.Create(rows)
        assert_that(light | "E" >> ExactDuplicates(), keys_are(exact), label="exact")
        assert_that(light | "N" >> NearDuplicates(d), lambda got: keys_are(near)([(k, v) for k, v in got]), label="near")


def test_banded_holdout_equals_brute_force():
    rows = _synthetic(n_clusters=120, seed=3)
    rng = random.Random(5)
    listed = []
    for k, sha, ph in rng.sample(rows, 15):
        listed.append((sha if rng.random() < 0.5 else None, f"{_flip(int(ph, 16), rng.sample(range(64), 3)):016x}", f"bench/{k}"))
    d = 4
    expected = {k for k, sha, ph in rows
                if any((s and s == sha) or hamming(ph, p2) <= d for s, p2, _ in listed)}

    def check(got):
        assert {k for k, _ in got} == expected
        assert all(v.reason == "holdout" for _, v in got)

    with beam.Pipeline(runner="FnApiRunner") as p:
        light = p | "Rows" >> beam.Create(rows)
        held = p | "Held" >> beam.Create(listed)
        assert_that(light | HoldoutMatches(held, d), check)


def test_holdout_list_lines_parse_and_fail_clearly():
    sha, ph = "a" * 64, "b" * 16
    assert parse_holdout_line(json.dumps({"sha256": sha, "phash": ph, "id": "x"}), "f:1") == (sha, ph, "x")
    assert parse_holdout_line(sha.upper(), "f:2") == (sha, None, "f:2")
    assert parse_holdout_line("# comment", "f:3") is None
    for bad in ('{"id": "no hashes"}', "not a hash", '{"sha256": "123"}'):
        with pytest.raises(ValueError, match="f:9"):
            parse_holdout_line(bad, "f:9")


def test_a_holdout_list_of_another_phash_version_is_refused(tmp_path: Path):
    from facecorpus.errors import UserError
    from facecorpus.records import PHASH_VERSION
    from facecorpus.validation.holdout import HEADER, read_holdout_list

    entry = json.dumps({"sha256": "a" * 64, "phash": "b" * 16, "id": "x"})
    old = tmp_path / "old.jsonl"
    old.write_text("# facecorpus hold-out list v1: sha256 of the file bytes, 64-bit DCT pHash (hex), id · 1 images\n" + entry + "\n")
    with pytest.raises(UserError, match=f"version 1, this facecorpus computes version {PHASH_VERSION}.*holdout build"):
        read_holdout_list(str(old))
    sha_only = tmp_path / "sha.jsonl"  # sha256 entries do not depend on the pHash: still usable
    sha_only.write_text(old.read_text().splitlines()[0] + "\n" + json.dumps({"sha256": "a" * 64, "id": "x"}) + "\n")
    assert read_holdout_list(str(sha_only)) == [("a" * 64, None, "x")]
    current = tmp_path / "new.jsonl"
    current.write_text(f"{HEADER} · 1 images\n{entry}\n")
    assert read_holdout_list(str(current)) == [("a" * 64, "b" * 16, "x")]
    plain = tmp_path / "plain.txt"  # a list of the user's own, without our header: taken as it is
    plain.write_text("b" * 16 + "\n")
    assert read_holdout_list(str(plain)) == [(None, "b" * 16, f"{plain} line 1")]


# ------------------------------------------------------------------------------------------ real runs


@pytest.fixture(scope="module")
def dedup_run(demo_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real run over the demo photos plus an exact copy, with a hold-out list built from a folder."""
    root = tmp_path_factory.mktemp("dedup")
    photos = root / "photos"
    shutil.copytree(demo_inputs / "photos", photos)
    (photos / "copy_of_t1.jpg").write_bytes((photos / "group" / "t1.jpg").read_bytes())
    bench = root / "bench"
    bench.mkdir()
    shutil.copy(photos / "cameraman_gray.png", bench / "cam.png")
    holdout = root / "holdout.jsonl"
    proc = run_cli("holdout", "build", str(bench), "--out", str(holdout))
    assert proc.returncode == 0, proc.stderr
    recipe = write_recipe(root / "r.yaml", {
        "name": "dedup", "sources": [{"type": "folder", "path": str(photos), "dataset": "photos"}],
        "validation": {"dedup": {"exact": True, "near": True, "max_distance": 4}, "holdout": {"lists": [str(holdout)]}},
        "output": {"samples_per_shard": 4},
    })
    out = root / "out"
    proc = run_cli("run", str(recipe), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rejects = [json.loads(x) for f in (out / "rejects").glob("*.jsonl") for x in f.read_text().splitlines() if x]
    return {"out": out, "rejects": {r["source_id"]: r for r in rejects}, "holdout": holdout, "bench": bench}


def test_real_duplicates_and_holdout_are_rejected(dedup_run: dict):
    rj = dedup_run["rejects"]
    assert rj["group/t1.jpg"]["reason"] == "duplicate" and "exact duplicate of photos_copy_of_t1" in rj["group/t1.jpg"]["detail"]
    # the same portrait in other formats: near duplicates of the smallest key among them
    # (the EXIF-rotated copy included: once its orientation is applied it is the same upright portrait)
    for name in ("astronaut_cmyk.jpg", "astronaut_palette.png", "astronaut_exif_rotated.jpg"):
        assert rj[name]["reason"] == "duplicate" and "photos_astronaut_alpha" in rj[name]["detail"], rj[name]
    # the benchmark's bytes (sha256) and a 16-bit copy of the same picture (pHash): hold-out wins over duplicate
    assert rj["cameraman_gray.png"]["reason"] == "holdout" and "same sha256" in rj["cameraman_gray.png"]["detail"]
    assert rj["cameraman_16bit.png"]["reason"] == "holdout" and "pHash distance" in rj["cameraman_16bit.png"]["detail"]
    assert all(r["stage"] == "dedup" and not r["retryable"] and r["key"] for r in rj.values())
    written = set(pq.read_table(dedup_run["out"] / "manifest").column("source_id").to_pylist())
    assert {"copy_of_t1.jpg", "astronaut_alpha.png", "group/t1_mirror.jpg", "rocket.jpg"} <= written
    stats = json.loads((dedup_run["out"] / "stats.json").read_text())
    assert stats["validation"]["holdout"] == 2 and stats["validation"]["duplicates"] == 4
    assert run_cli("validate", str(dedup_run["out"])).returncode == 0


def test_validate_finds_duplicates_a_recipe_let_through(demo_output: Path, tmp_path: Path):
    """The demo keeps near duplicates on purpose (near: false); recorded as asking for them gone, it is invalid."""
    out = tmp_path / "copy"
    shutil.copytree(demo_output, out)
    info = json.loads((out / "run.json").read_text())
    assert info["recipe_json"]["validation"]["dedup"]["near"] is False
    info["recipe_json"]["validation"]["dedup"]["near"] = True
    (out / "run.json").write_text(json.dumps(info))
    proc = run_cli("validate", str(out))
    assert proc.returncode == 1 and "near duplicates (pHash distance 0" in proc.stderr, proc.stderr


def test_holdout_build_reads_a_webdataset(demo_output: Path, tmp_path: Path):
    lst = tmp_path / "h.jsonl"
    proc = run_cli("holdout", "build", str(demo_output / "shards"), "--out", str(lst))
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(x) for x in lst.read_text().splitlines() if x.startswith("{")]
    manifest = {r["key"]: r["phash"] for r in pq.read_table(demo_output / "manifest").to_pylist()}
    assert len(entries) == len(manifest)
    for e in entries:  # the stored JPEG is a re-encoding: its pHash stays within the near threshold
        key = e["id"].split("/", 1)[1]
        assert hamming(e["phash"], manifest[key]) <= 4


def test_holdout_build_and_run_fail_clearly_on_bad_input(tmp_path: Path):
    proc = run_cli("holdout", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not a hash\n")
    (tmp_path / "p").mkdir()
    from facecorpus.demo import photo_paths

    shutil.copy(photo_paths()["rocket"], tmp_path / "p" / "rocket.jpg")
    recipe = write_recipe(tmp_path / "r.yaml", {"name": "x", "sources": [{"type": "folder", "path": str(tmp_path / "p")}],
                                                "validation": {"holdout": {"lists": [str(bad)]}}})
    proc = run_cli("run", str(recipe), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "bad.jsonl line 1" in proc.stderr and "Traceback" not in proc.stderr


def test_two_inputs_with_one_key_keep_one(tmp_path: Path):
    """Two folder sources under one dataset name holding the same file name: one key, so one is rejected."""
    from facecorpus.demo import photo_paths

    for sub, photo in (("a", "rocket"), ("b", "coffee")):
        (tmp_path / sub).mkdir()
        shutil.copy(photo_paths()[photo], tmp_path / sub / "same.jpg")
    recipe = write_recipe(tmp_path / "r.yaml", {"name": "k", "sources": [
        {"type": "folder", "path": str(tmp_path / "a"), "dataset": "web"},
        {"type": "folder", "path": str(tmp_path / "b"), "dataset": "web"}]})
    out = tmp_path / "out"
    proc = run_cli("run", str(recipe), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rejects = [json.loads(x) for f in (out / "rejects").glob("*.jsonl") for x in f.read_text().splitlines() if x]
    assert [(r["reason"], r["key"]) for r in rejects] == [("duplicate_key", None)]
    assert pq.read_table(out / "manifest").num_rows == 1
    assert run_cli("validate", str(out)).returncode == 0


def test_a_resume_dedups_against_images_its_source_skipped(tmp_path: Path):
    """A source that skips finished inputs before reading them (LAION: the download) leaves them out of the
    run; the hashes dedup committed for them in the earlier attempt still make their duplicates lose."""

    from PIL import Image

    from facecorpus.demo import photo_paths
    from facecorpus.image_check import CheckImage
    from facecorpus.image_config import ImageConfig
    from facecorpus.output.layout import HASHES_DIR
    from facecorpus.records import SourceInfo
    from facecorpus.stage import REJECTS, WorkItem
    from facecorpus.validation.config import ValidationConfig
    from facecorpus.validation.dedup_stage import Dedup

    def item(key: str, data: bytes) -> WorkItem:
        (it,) = list(CheckImage(ImageConfig()).run(WorkItem(key=key, source=SourceInfo(dataset="web", id=key), data=data)))
        return it

    astro = Image.open(photo_paths()["astronaut"])
    buf = io.BytesIO()
    astro.convert("P").save(buf, "PNG")  # the same picture, other bytes: a near duplicate
    first, later = item("a_first", photo_paths()["astronaut"].read_bytes()), item("b_later", buf.getvalue())
    assert hamming(first.image.phash, later.image.phash) <= 4
    out = tmp_path / "out"
    cfg = ValidationConfig()

    def check_rejects(rejects):
        assert [(r.key, r.reason) for r in rejects] == [("b_later", "duplicate")] and "a_first" in rejects[0].detail

    def nothing_kept(items):
        assert list(items) == []

    with beam.Pipeline(runner="FnApiRunner") as p:
        finished = p | "Finished" >> beam.Create([("a_first", "written")])
        recorded = p | "Recorded" >> beam.Create([("a_first", first.image.sha256, first.image.phash)])
        result = p | "Items" >> beam.Create([later]) | Dedup(cfg, str(out), True, finished, recorded)
        assert_that(result[REJECTS], check_rejects, label="rejects")
        assert_that(result["main"], nothing_kept, label="main")
    lines = [json.loads(x) for f in (out / HASHES_DIR).glob("*.jsonl") for x in f.read_text().splitlines()]
    assert lines == [["b_later", later.image.sha256, later.image.phash]]  # what this attempt's dedup saw, committed


def test_validate_tells_faces_of_one_photo_from_duplicates():
    """`faces.unit: face` writes one sample per face of a photo: same input sha256 and pHash, different
    crop.face_index. Those are not duplicates; two samples of the same face of the same photo are."""
    from facecorpus.output.check import Report
    from facecorpus.output.check_rules import SeenSample, check_duplicates
    from facecorpus.recipe import Recipe

    recipe = Recipe.model_validate({"name": "t", "sources": [{"type": "folder", "path": "x"}]})
    sha, phash = "ab" * 32, "0123456789abcdef"

    def seen(*faces: int | None) -> dict[str, SeenSample]:
        return {f"k{i}": SeenSample("s.tar", sha256=sha, phash=phash, face_index=f) for i, f in enumerate(faces)}

    rep = Report()
    check_duplicates(recipe, rep, seen(0, 1, 2))
    assert rep.problems == []
    rep = Report()
    check_duplicates(recipe, rep, seen(0, 1, 1))
    assert rep.problems == ["k2 and k1 are the same image (sha256 abababababab…)"]
    rep = Report()
    check_duplicates(recipe, rep, seen(None, None))  # whole-image samples
    assert len(rep.problems) == 1 and "same image" in rep.problems[0]
