"""End to end on Beam's FnApiRunner: the demo inputs → shards, manifest, rejects, stats, index, card."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from facecorpus.records import Reject
from tests.support.helpers import REPO
from tests.support.inprocess_cli import cli_in_process
from tests.support.stage_labels import assert_reject_stages_are_labels

CONTRACT_COLUMNS = {"key", "shard", "source_dataset", "source_id", "split", "n_faces", "generator", "llm_model",
                    "n_qa", "categories", "prompt_sha256"}


def _stats(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())


def test_invariant_and_expected_rejects(demo_output: Path):
    s = _stats(demo_output)
    assert s["inputs"] == s["written"] + s["rejected"]
    assert s["inputs_counted_by"] == "run"
    rejects = [Reject.model_validate_json(line) for f in (demo_output / "rejects").glob("*.jsonl")
               for line in f.read_text().splitlines() if line.strip()]
    assert len(rejects) == s["rejected"]
    by = {(r.source_id, r.reason) for r in rejects}
    # every planted bad input ends in rejects with its reason (faces-free stages; the face stage adds no_face etc.)
    for expected in [("val/404.jpg", "missing_file"), ("val/1.jpg", "duplicate_row"), ("val/12.jpg", "unknown_label"),
                     ("../escape.jpg", "unsafe_path"), ("val/8.jpg", "corrupt_image"), ("val/9.jpg", "empty_file"),
                     ("val/10.jpg", "not_image"), ("val/11.jpg", "too_small")]:
        assert expected in by, expected
    assert any(r.reason == "bad_row" for r in rejects)
    assert all(r.detail and r.stage for r in rejects)


def test_every_reject_stage_is_the_label_of_a_stage_in_the_graph(demo_output: Path, face_models: dict[str, str],
                                                                 monkeypatch: pytest.MonkeyPatch):
    """The demo's rejects (source, image and faces stages) name the Beam label of the stage that
    stopped them, in the graph of the recipe the run recorded (rebuilt, not run)."""
    monkeypatch.setenv("FACECORPUS_MODELS", face_models["FACECORPUS_MODELS"])
    assert_reject_stages_are_labels(demo_output, {"source", "image", "faces"})


def test_shards_stream_with_webdataset(demo_output: Path):
    urls = sorted(str(p) for p in (demo_output / "shards").glob("*.tar"))
    ds = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "json", "txt")
    seen = []
    for key, img, record, caption in ds:
        assert "." not in key
        assert img.size == (record["image"]["width"], record["image"]["height"])
        assert caption == record["caption"]
        seen.append(key)
    assert len(seen) == len(set(seen)) == _stats(demo_output)["written"]
    assert not (demo_output / "shards" / "_tmp").exists()  # nothing half-written or staged, nor its empty folder


def test_wids_random_access_through_index(demo_output: Path):
    import wids

    ds = wids.ShardListDataset(str(demo_output / "index.json"))
    assert len(ds) == _stats(demo_output)["written"]
    sample = ds[len(ds) - 1]
    record = json.loads(sample[".json"].read()) if hasattr(sample[".json"], "read") else sample[".json"]
    assert record["key"] == sample["__key__"].rsplit("/", 1)[-1]


def test_every_record_validates_against_the_checked_in_schema(demo_output: Path):
    schema = json.loads((REPO / "schemas" / "sample.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    n = 0
    for shard in (demo_output / "shards").glob("*.tar"):
        with tarfile.open(shard) as tar:
            for m in tar:
                if m.name.endswith(".json"):
                    validator.validate(json.load(tar.extractfile(m)))
                    n += 1
    assert n == _stats(demo_output)["written"]


def test_manifest_has_contract_columns_and_one_row_per_sample(demo_output: Path):
    table = pq.read_table(demo_output / "manifest")
    assert CONTRACT_COLUMNS <= set(table.column_names)
    assert table.num_rows == _stats(demo_output)["written"]
    rows = table.to_pylist()
    assert all(r["n_qa"] == len(r["categories"]) for r in rows)
    assert {r["source_dataset"] for r in rows} == {"fairface", "photos"}


def test_web_formats_in_the_photo_folder_all_get_past_decoding(demo_output: Path):
    """Every web format is decoded and its face found; a sample the local LLM then wrote junk for may be
    rejected by validation (SmolLM2-135M sometimes answers "1"), never at the image or faces stage."""
    ids = set(pq.read_table(demo_output / "manifest", columns=["source_id"]).column("source_id").to_pylist())
    rejected = {}
    for path in (demo_output / "rejects").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["dataset"] == "photos":
                rejected.setdefault(r["source_id"], set()).add(r["stage"])
    formats = ("cameraman_16bit.png", "cameraman_gray.png", "astronaut_cmyk.jpg", "astronaut_palette.png",
               "astronaut_alpha.png", "astronaut_exif_rotated.jpg", "group/t1.jpg")
    for name in formats:
        assert name in ids or rejected.get(name, set()) <= {"generate", "validate"}, (name, rejected.get(name))
        assert name in ids or name in rejected, name
    assert len(ids & set(formats)) >= len(formats) - 2, ids  # most are written whole
    assert rejected.get("rocket.jpg") == {"faces"}  # the photo without a face is the faces stage's reject


def test_card_and_index(demo_output: Path):
    card = (demo_output / "README.md").read_text()
    assert "inputs == written + rejected: yes" in card
    # its licence, declared: named in full under its source (sinks/card_hub.py licences_section)
    assert re.search(r"- fairface: \d+ samples\n  - licence: Creative Commons Attribution 4\.0 \(CC BY 4\.0\) — ", card)
    index = json.loads((demo_output / "index.json").read_text())
    assert index["__kind__"] == "wids-shard-index-v1"
    assert sum(s["nsamples"] for s in index["shardlist"]) == _stats(demo_output)["written"]


def test_validate_accepts_the_demo(demo_output: Path):
    proc = cli_in_process("validate", str(demo_output))
    assert proc.returncode == 0, proc.stderr
    assert "valid:" in proc.stdout


def _corrupt_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _first_shard(out: Path) -> Path:
    return sorted((out / "shards").glob("*.tar"))[0]


def _truncate_tar(out: Path) -> str:
    shard = _first_shard(out)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2 + 7])
    return "not a readable tar"


def _drop_manifest_row(out: Path) -> str:
    import pyarrow.parquet as pq2

    path = sorted((out / "manifest").glob("*.parquet"))[0]
    t = pq2.read_table(path)
    pq2.write_table(t.slice(1), path)
    return "has no manifest row"


def _edit_json(out: Path) -> str:
    shard = _first_shard(out)
    members = []
    edited = False
    with tarfile.open(shard) as tar:
        for m in tar:
            data = tar.extractfile(m).read()
            if m.name.endswith(".json") and not edited:
                edited = True
                rec = json.loads(data)
                rec["qa"] = []  # schema says at least one QA pair
                data = json.dumps(rec).encode()
            members.append((m, data))
    with tarfile.open(shard, "w") as tar:
        for m, data in members:
            m.size = len(data)
            import io

            tar.addfile(m, io.BytesIO(data))
    return "fails the schema"


def _break_stats(out: Path) -> str:
    s = json.loads((out / "stats.json").read_text())
    s["inputs"] += 1
    (out / "stats.json").write_text(json.dumps(s))
    return "inputs"


def _bad_reject(out: Path) -> str:
    f = next((out / "rejects").glob("*.jsonl"))
    f.write_text(f.read_text() + json.dumps({"source_id": "x", "stage": "image", "reason": "Not Snake"}) + "\n")
    return "not a valid reject"


def _index_lies(out: Path) -> str:
    idx = json.loads((out / "index.json").read_text())
    idx["shardlist"][0]["nsamples"] += 5
    (out / "index.json").write_text(json.dumps(idx))
    return "index.json says"


@pytest.mark.parametrize("corrupt", [_truncate_tar, _drop_manifest_row, _edit_json, _break_stats, _bad_reject, _index_lies])
def test_validate_rejects_corrupted_outputs(demo_output: Path, tmp_path: Path, corrupt):
    out = _corrupt_copy(demo_output, tmp_path / "copy")
    expected = corrupt(out)
    proc = cli_in_process("validate", str(out))
    assert proc.returncode == 1
    assert expected in proc.stderr, proc.stderr
