"""The exports read by their real consumers: LLaMA-Factory's own data path (parser, ShareGPT converter,
multimodal message check, SFT tokenisation) and Hugging Face `datasets` (shards and parquet export).

LLaMA-Factory runs in a subprocess (tests/support/llamafactory_check.py says what stands in for what and why).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from facecorpus.export.writer import ExportFilter, export
from facecorpus.output.readers import iter_output_samples
from facecorpus.records import Sample
from tests.support.helpers import REPO
from tests.support.inprocess_cli import cli_in_process, run_main

#: LLaVA-1.5 at 336 px, patch 14: (336/14)^2 = 576 image tokens per <image>
LLAVA_IMAGE_TOKENS = 576


def _samples(out: Path) -> dict[str, Sample]:
    return {k: Sample.model_validate_json(m["json"]) for k, m in iter_output_samples(str(out))}


# ------------------------------------------------------------------------------------------- Hugging Face


@pytest.fixture(scope="module")
def hf_datasets(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("hf-cache")
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets

    return datasets, str(cache)


def test_hf_datasets_reads_the_shards(demo_output: Path, hf_datasets) -> None:
    datasets, cache = hf_datasets
    shards = sorted(str(p) for p in (demo_output / "shards").glob("*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train", cache_dir=cache)
    samples = _samples(demo_output)
    assert len(ds) == len(samples)
    for row in ds:
        s = samples[row["__key__"]]
        assert row["jpg"].size == (s.image.width, s.image.height)  # decoded to PIL by datasets itself
        assert row["json"]["key"] == s.key and row["txt"] == s.caption


def test_hf_datasets_reads_the_parquet_export(demo_output: Path, tmp_path: Path, hf_datasets, monkeypatch, capsys) -> None:
    datasets, cache = hf_datasets
    dest = tmp_path / "hub"
    code, out, err = run_main(["export", str(demo_output), "--format", "parquet", "--out", str(dest)], monkeypatch, capsys)
    assert code == 0, err
    assert f"datasets.load_dataset('{dest.resolve()}')" in out
    samples = _samples(demo_output)
    jpgs = dict(iter_output_samples(str(demo_output)))
    ds = datasets.load_dataset(str(dest), cache_dir=cache)  # the card's configs name the files per split
    by_split: dict[str, int] = {}
    for s in samples.values():
        by_split[s.source.split or "train"] = by_split.get(s.source.split or "train", 0) + 1
    assert {k: len(v) for k, v in ds.items()} == by_split
    assert isinstance(ds["train"].features["image"], datasets.Image)
    for split in ds.values():
        for row in split:
            s = samples[row["key"]]
            assert isinstance(row["image"], Image.Image) and row["image"].size == (s.image.width, s.image.height)
            assert [(q["question"], q["answer"]) for q in row["qa"]] == [(q.question, q.answer) for q in s.qa]
            assert row["messages"][0]["role"] == "user" and row["messages"][0]["content"][0]["type"] == "image"
            assert {lab["name"]: lab["value"] for lab in row["labels"]} == {
                k: str(a.value) for k, a in s.attributes.items() if a.source == "label"}
        for row in split.cast_column("image", datasets.Image(decode=False)):
            assert row["image"]["bytes"] == jpgs[row["key"]]["jpg"]  # the shard's bytes, not a re-encode
    readme = (dest / "README.md").read_text()
    assert "## This export" in readme and "## Label balance" in readme
    for link in [line for line in readme.splitlines() if line.startswith("![")]:
        assert (dest / link.split("(", 1)[1].rstrip(")")).is_file()  # the card's figures came along
    assert Image.open(io.BytesIO((dest / "plots" / "qa_per_category.png").read_bytes())).format == "PNG"


# ------------------------------------------------------------------------------------------- LLaMA-Factory


@pytest.fixture(scope="module")
def fairface_output(demo_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FairFace run: the FairFaceGPT recipe over the demo's FairFace zip (both splits), templates text."""
    out = tmp_path_factory.mktemp("fairface") / "out"
    ff = demo_inputs / "fairface"
    proc = cli_in_process("run", str(REPO / "pipelines" / "fairfacegpt.yaml"), "--out", str(out),
                   "--set", "generation.generator=templates", "--set", "faces.backend=none",
                   "--set", "sources.0.split=all",
                   "--set", f"sources.0.images={ff / 'fairface-img-margin025-trainval.zip'}",
                   "--set", f"sources.0.labels=[{ff / 'fairface_label_val.csv'},{ff / 'fairface_label_train.csv'}]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_the_fairface_run_is_a_labelled_fairface_corpus(fairface_output: Path) -> None:
    samples = _samples(fairface_output)
    assert samples and {s.source.dataset for s in samples.values()} == {"fairface"}
    assert {s.source.split for s in samples.values()} == {"train", "val"}
    assert all({"age", "gender", "race"} <= set(s.attributes) and s.qa for s in samples.values())


@pytest.fixture(scope="module")
def llamafactory(demo_output: Path, fairface_output: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """LLaMA-Factory's reports on five exports: demo (one QA pair per conversation, and one conversation
    per image), the FairFace run, the demo with its images moved under another media_dir, and the
    FairFaceGPT layout."""
    root = tmp_path_factory.mktemp("lf")
    jobs, expected = [], {}
    for name, out, fmt, turns in [("demo_qa", demo_output, "sharegpt", None), ("demo_sample", demo_output, "sharegpt", "sample"),
                                  ("fairface", fairface_output, "sharegpt", None), ("moved", demo_output, "sharegpt", None),
                                  ("fairfacegpt", demo_output, "fairfacegpt", None)]:
        folder = root / name
        rep = export(str(out), fmt, folder / f"{name}.json", ExportFilter(), turns=turns, name=name)
        expected[name] = rep
        job = {"dataset_dir": str(folder), "name": name, "media_dir": None}
        if name == "moved":  # images live elsewhere on the training machine: only media_dir says where
            shutil.move(folder / "images", root / "media" / "images")
            job["media_dir"] = str(root / "media")
        jobs.append(job)
    (root / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "HF_DATASETS_CACHE": str(root / "hf-cache")}
    proc = subprocess.run([sys.executable, "-m", "tests.support.llamafactory_check", str(root / "jobs.json")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = {}
    for line in proc.stdout.splitlines():
        if line.startswith("LLAMAFACTORY_REPORT "):
            r = json.loads(line.removeprefix("LLAMAFACTORY_REPORT "))
            reports[r["name"]] = r
    assert set(reports) == {j["name"] for j in jobs}, proc.stdout[-2000:]
    return {"reports": reports, "expected": expected, "root": root}


@pytest.mark.parametrize("name", ["demo_qa", "demo_sample", "fairface", "moved"])
def test_llamafactory_accepts_every_exported_record(llamafactory: dict, name: str) -> None:
    r, rep = llamafactory["reports"][name], llamafactory["expected"][name]
    assert r["columns"] == {"messages": "conversations", "images": "images"}
    assert rep.records > 0 and r["records"] == rep.records
    assert r["errors"] == [] and r["accepted"] == r["records"]  # 100% through _validate_messages and the processor
    # the converter resolved every path against media_dir (an unresolved one stays relative)
    media = Path(llamafactory["root"] / ("media" if name == "moved" else name))
    assert all(Path(p).is_absolute() and Path(p).is_file() and Path(p).parent.parent == media for p in r["images"])
    # and the SFT preprocessing LLaMA-Factory runs before training read every image and kept every record,
    # each with one image expanded once and answer tokens to learn
    assert r["tokenized"] == r["records"] and r["tokenized_image_tokens"] == [LLAVA_IMAGE_TOKENS]
    assert r["trained_label_tokens"] > 0


def test_llamafactory_counts_match_the_run(llamafactory: dict, demo_output: Path, fairface_output: Path) -> None:
    reports = llamafactory["reports"]
    for name, out in [("demo_qa", demo_output), ("fairface", fairface_output)]:
        assert reports[name]["records"] == sum(len(s.qa) for s in _samples(out).values())
    assert reports["demo_sample"]["records"] == len(_samples(demo_output))


def test_llamafactory_ignores_the_fairfacegpt_layout_as_the_warning_says(llamafactory: dict) -> None:
    r = llamafactory["reports"]["fairfacegpt"]
    assert r["columns"]["images"] is None  # its `image` column is not a LLaMA-Factory column
    assert r["records"] > 0 and r["accepted"] == 0 and r["tokenized"] == 0
    assert "number of images does not match" in r["errors"][0]


def test_fairfacegpt_format_warns_and_writes_its_entry(demo_output: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    dest = tmp_path / "ff.json"
    code, _, err = run_main(["export", str(demo_output), "--format", "fairfacegpt", "--out", str(dest), "--name", "ffgpt"],
                            monkeypatch, capsys)
    assert code == 0, err
    assert "LLaMA-Factory reads neither" in err and err.count("\n") == 1
    entry = json.loads((tmp_path / "dataset_info.json").read_text())["ffgpt"]
    assert entry["columns"] == {"messages": "conversations", "image": "image"}
    assert Path(entry["image_root"]) == tmp_path.resolve()
    assert all(set(r) == {"conversations", "image"} for r in json.loads(dest.read_text()))
