"""Resume: finish what is missing, never a key twice, finished shards untouched, fingerprints enforced,
retryable rejects re-run, partial files reconciled — and `validate` catching every corruption planted here."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.helpers import write_recipe
from tests.support.inprocess_cli import cli_in_process, run_main

EPOCH = "1767225600"  # SOURCE_DATE_EPOCH: records of different attempts compare byte for byte


def _recipe(root: Path, inputs: Path, **extra) -> Path:
    ff = inputs / "fairface"
    data = {
        "name": "resume",
        "sources": [
            {"type": "fairface", "images": str(ff / "fairface-img-margin025-trainval.zip"),
             "labels": [str(ff / "fairface_label_val.csv")], "split": "val"},
            {"type": "folder", "path": str(inputs / "photos"), "dataset": "photos"},
        ],
        "validation": {"dedup": {"near": True}},
        "output": {"samples_per_shard": 3},
        **extra,
    }
    return write_recipe(root / "recipe.yaml", data)


def records(out: Path) -> dict[str, bytes]:
    """key → KEY.json bytes + KEY.jpg sha256, across all shards (a key twice fails the test)."""
    found: dict[str, bytes] = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                data = tar.extractfile(m).read()
                if ext == "json":
                    assert key not in found, f"{key} written twice"
                    found[key] = data
    return found


def reject_lines(out: Path) -> list[str]:
    return sorted(x for f in (out / "rejects").glob("*.jsonl") for x in f.read_text().splitlines() if x.strip())


def shard_fingerprints(out: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in (out / "shards").glob("*.tar")}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)

    def call(*args: str) -> tuple[int, str, str]:
        return run_main(list(args), monkeypatch, capsys)

    return call


@pytest.fixture(scope="module")
def reference(demo_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run (subprocess, pinned timestamps) to compare resumed outputs with."""

    root = tmp_path_factory.mktemp("resume_ref")
    out = root / "out"
    proc = cli_in_process("run", str(_recipe(root, demo_inputs)), "--out", str(out), env={"SOURCE_DATE_EPOCH": EPOCH})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_resume_of_a_finished_run_adds_nothing(reference: Path, tmp_path: Path, cli, demo_inputs: Path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = shard_fingerprints(out)
    code, stdout, err = cli("run", str(_recipe(tmp_path, demo_inputs)), "--out", str(out), "--resume")
    assert code == 0, err
    assert shard_fingerprints(out) == before  # finished shards untouched, no new ones
    assert records(out) == records(reference) and reject_lines(out) == reject_lines(reference)
    stats, ref = json.loads((out / "stats.json").read_text()), json.loads((reference / "stats.json").read_text())
    assert (stats["inputs"], stats["written"], stats["rejected"]) == (ref["inputs"], ref["written"], ref["rejected"])
    assert stats["invariant_ok"]
    info = json.loads((out / "run.json").read_text())
    assert [a["mode"] for a in info["attempts"]] == ["fresh", "resume"] and info["fingerprint"]["sha256"]
    assert cli("validate", str(out))[0] == 0


def test_a_run_never_overwrites_an_output_silently(reference: Path, tmp_path: Path, cli, demo_inputs: Path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    code, _, err = cli("run", str(_recipe(tmp_path, demo_inputs)), "--out", str(out))
    assert code == 2 and "already holds a run" in err and "--resume" in err


def test_a_changed_recipe_is_refused_unless_new_version(reference: Path, tmp_path: Path, cli, demo_inputs: Path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    recipe = _recipe(tmp_path, demo_inputs)
    code, _, err = cli("run", str(recipe), "--out", str(out), "--resume", "--set", "generation.seed=7")
    assert code == 2 and "recipe changed" in err and "--new-version" in err, err
    code, _, err = cli("run", str(recipe), "--out", str(out), "--resume", "--new-version",
                       "--set", "sources.1.limit=3")
    assert code == 2 and "different sources" in err, err
    code, _, err = cli("run", str(recipe), "--out", str(out), "--resume", "--new-version", "--set", "generation.seed=7")
    assert code == 0, err
    info = json.loads((out / "run.json").read_text())
    assert info["attempts"][-1]["mode"] == "new_version"
    assert info["attempts"][-1]["fingerprint"] != info["attempts"][0]["fingerprint"]
    assert records(out) == records(reference)  # finished samples stay; nothing was missing


def _break_member(zpath: Path, member: str) -> bytes:
    """Flip one byte inside a stored member: reading it fails its CRC (a transient-looking read error)."""
    with zipfile.ZipFile(zpath) as zf:
        info = zf.getinfo(member)
    raw = bytearray(zpath.read_bytes())
    original = bytes(raw)
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    at = info.header_offset + 30 + name_len + extra_len + 100
    raw[at] ^= 0xFF
    zpath.write_bytes(bytes(raw))
    return original


def test_retryable_rejects_are_re_run_and_the_rest_kept(demo_inputs: Path, tmp_path: Path, cli):
    inputs = tmp_path / "inputs"
    shutil.copytree(demo_inputs / "fairface", inputs / "fairface")
    shutil.copytree(demo_inputs / "photos", inputs / "photos")
    zpath = inputs / "fairface" / "fairface-img-margin025-trainval.zip"
    original = _break_member(zpath, "val/6.jpg")
    recipe = _recipe(tmp_path, inputs)
    out = tmp_path / "out"
    assert cli("run", str(recipe), "--out", str(out))[0] == 0
    first = [json.loads(x) for x in reject_lines(out)]
    broken = [r for r in first if r["source_id"] == "val/6.jpg"]
    assert [(r["reason"], r["retryable"]) for r in broken] == [("read_error", True)], broken
    kept_before = {x for x in reject_lines(out) if '"val/6.jpg"' not in x}
    zpath.write_bytes(original)  # the storage hiccup is over
    code, _, err = cli("run", str(recipe), "--out", str(out), "--retry-rejects")
    assert code == 0, err
    written = set(pq.read_table(out / "manifest").column("source_id").to_pylist())
    assert "val/6.jpg" in written
    assert set(reject_lines(out)) == kept_before  # the other rejects were not re-run nor repeated
    assert cli("validate", str(out))[0] == 0


def test_partial_files_of_a_killed_run_are_reconciled(reference: Path, tmp_path: Path, cli, demo_inputs: Path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    shards = sorted((out / "shards").glob("*.tar"))
    lost = shards[0]  # killed between the shard's rename and its manifest's: the tar alone is not finished
    (out / "manifest" / (lost.stem + ".parquet")).unlink()
    gone = shards[1]  # a manifest whose shard never landed
    gone.unlink()
    (out / "shards" / "_tmp" / "screen").mkdir(parents=True, exist_ok=True)
    (out / "shards" / "_tmp" / "screen" / "half.pkl").write_bytes(b"\x80\x04partial")
    (out / "shards" / "_tmp" / "shard-00009.tar.1234").write_bytes(b"partial tar")
    (out / "rejects" / "beam-temp-rejects-r1-abc").mkdir()
    (out / "rejects" / "beam-temp-rejects-r1-abc" / "part").write_text("{}")
    (out / "stats.json").unlink()
    (out / "stats.json.tmp-1a2b3c4d").write_text('{"inputs": ')  # killed while writing it aside
    untouched = {k: v for k, v in shard_fingerprints(out).items() if k != lost.name}

    code, _, err = cli("validate", str(out))
    assert code == 1 and "partial file" in err and "has no manifest row" in err and "stats.json is missing" in err

    code, _, err = cli("run", str(_recipe(tmp_path, demo_inputs)), "--out", str(out), "--resume")
    assert code == 0, err
    after = shard_fingerprints(out)
    assert {k: after[k] for k in untouched} == untouched
    assert any(name.startswith("shard-r1-") for name in after)
    assert records(out) == records(reference)
    assert reject_lines(out) == reject_lines(reference)
    assert not [p for p in (out / "shards" / "_tmp").rglob("*") if p.is_file()]
    assert not list((out / "rejects").glob("beam-temp-*")) and not list(out.glob("*.tmp-*"))
    assert cli("validate", str(out))[0] == 0


# ------------------------------------------------------------------------------- corruptions validate finds


def _rewrite_member(out: Path, suffix: str, edit) -> str:
    """Rewrite the first KEY<suffix> member of the first shard with edit(bytes) → bytes; returns the key."""
    shard = sorted((out / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    key = next(m.name.split(".")[0] for m, _ in members if m.name.endswith(suffix))
    with tarfile.open(shard, "w") as tar:
        import io

        for m, data in members:
            if m.name == key + suffix:
                data = edit(data)
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    return key


def _same_length_answer_edit(out: Path) -> str:
    def edit(data: bytes) -> bytes:
        rec = json.loads(data)
        a = rec["qa"][0]["answer"]
        rec["qa"][0]["answer"] = ("X" + a[1:]) if a[0] != "X" else ("Y" + a[1:])
        return json.dumps(rec).encode()
    _rewrite_member(out, ".json", edit)
    return "was changed after it was written"


def _swapped_jpeg(out: Path) -> str:
    from PIL import Image

    def edit(data: bytes) -> bytes:
        import io

        im = Image.open(io.BytesIO(data))
        buf = io.BytesIO()
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(buf, "JPEG")
        return buf.getvalue()
    _rewrite_member(out, ".jpg", edit)
    return ".jpg was changed after it was written"


def _refusal_with_hashes_fixed(out: Path) -> str:
    """A refusal edited into a record, the manifest hash updated to match: the record rules still catch it."""
    key = _rewrite_member(out, ".json", lambda d: json.dumps({**json.loads(d), "qa": [
        {**json.loads(d)["qa"][0], "answer": "I'm sorry, but I can't help with identifying people."}]}).encode())
    shard = sorted((out / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        new = hashlib.sha256(tar.extractfile(f"{key}.json").read()).hexdigest()
    mpath = out / "manifest" / (shard.stem + ".parquet")
    t = pq.read_table(mpath).to_pylist()
    for row in t:
        if row["key"] == key:
            row["record_sha256"] = new
    import pyarrow as pa

    from facecorpus.output.manifest import MANIFEST_SCHEMA

    pq.write_table(pa.Table.from_pylist(t, schema=MANIFEST_SCHEMA), mpath)
    return "breaks the recipe's record rules (refusal)"


def _duplicate_shard(out: Path) -> str:
    shard = sorted((out / "shards").glob("*.tar"))[0]
    shutil.copy(shard, out / "shards" / "shard-r9-00000.tar")
    shutil.copy(out / "manifest" / (shard.stem + ".parquet"), out / "manifest" / "shard-r9-00000.parquet")
    return "appears in"


def _rejected_twice(out: Path) -> str:
    f = sorted((out / "rejects").glob("*.jsonl"))[0]
    keyed = next(x for x in f.read_text().splitlines() if json.loads(x)["key"])
    f.write_text(f.read_text() + keyed + "\n")
    return "is rejected twice"


def _written_and_rejected(out: Path) -> str:
    key = pq.read_table(out / "manifest").column("key").to_pylist()[0]
    f = sorted((out / "rejects").glob("*.jsonl"))[0]
    line = {"source_id": "x", "key": key, "stage": "generate", "reason": "llm_error", "detail": "planted", "retryable": True}
    f.write_text(f.read_text() + json.dumps(line) + "\n")
    return "and also written"


def _stats_by_reason(out: Path) -> str:
    s = json.loads((out / "stats.json").read_text())
    s["by_reason"]["duplicate"] = s["by_reason"].get("duplicate", 0) + 1
    s["by_reason"]["too_small"] = s["by_reason"].get("too_small", 0) - 1
    (out / "stats.json").write_text(json.dumps(s))
    return "stats: by_reason"


def _no_run_json(out: Path) -> str:
    (out / "run.json").unlink()
    return "run.json is missing"


def _manifest_row_edited(out: Path) -> str:
    path = sorted((out / "manifest").glob("*.parquet"))[0]
    import pyarrow as pa

    from facecorpus.output.manifest import MANIFEST_SCHEMA

    rows = pq.read_table(path).to_pylist()
    rows[0]["label_gender"] = "female" if rows[0]["label_gender"] != "female" else "male"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), path)
    return "disagrees with its record on label_gender"


@pytest.mark.parametrize("corrupt", [_same_length_answer_edit, _swapped_jpeg, _refusal_with_hashes_fixed, _duplicate_shard,
                                     _rejected_twice, _written_and_rejected, _stats_by_reason, _no_run_json,
                                     _manifest_row_edited])
def test_validate_catches_planted_corruption(reference: Path, tmp_path: Path, cli, corrupt):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    expected = corrupt(out)
    code, _, err = cli("validate", str(out))
    assert code == 1 and expected in err, err


def test_the_prompt_fingerprint_covers_the_prompt_set_in_use_only(tmp_path: Path):
    """Editing the prompt set a recipe uses changes its fingerprint; editing another set does not."""
    from facecorpus.output.fingerprint import fingerprint
    from facecorpus.prompting.promptset import lock_manifest
    from facecorpus.recipe import Recipe
    from facecorpus.resources import data_dir

    prompts = tmp_path / "prompts"
    shutil.copytree(data_dir("prompts"), prompts)

    def recipe(generator: str) -> Recipe:
        return Recipe.model_validate({"name": "fp", "sources": [{"type": "folder", "path": str(tmp_path)}],
                                      "generation": {"generator": generator, "prompt_set": "fairfacegpt",
                                                     "prompts_dir": str(prompts)}})

    before = {g: fingerprint(recipe(g))["prompts_sha256"] for g in ("openai", "templates")}
    (prompts / "structured" / "system.j2").write_text("Another set, edited.\n")
    lock_manifest(prompts)
    assert {g: fingerprint(recipe(g))["prompts_sha256"] for g in ("openai", "templates")} == before
    with (prompts / "fairfacegpt" / "system.j2").open("a") as f:
        f.write("\nOne more sentence.\n")
    lock_manifest(prompts)
    assert fingerprint(recipe("openai"))["prompts_sha256"] != before["openai"]
    assert fingerprint(recipe("templates"))["prompts_sha256"] == before["templates"]
