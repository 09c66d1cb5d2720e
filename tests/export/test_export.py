"""`facecorpus export`: the files each format writes (LLaMA-Factory ShareGPT, FairFaceGPT's layout, LLaVA, JSON lines,
parquet) and the filters. tests/export/test_export_consumers.py has the real consumers read them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facecorpus.export.writer import ExportFilter, export
from facecorpus.output.readers import iter_output_samples
from facecorpus.records import Sample
from facecorpus.review.queue import sample_candidates
from facecorpus.review.verdicts import VerdictLog
from tests.support.inprocess_cli import cli_in_process, run_main


@pytest.fixture(scope="module")
def samples(demo_output: Path) -> dict[str, Sample]:
    return {k: Sample.model_validate_json(m["json"]) for k, m in iter_output_samples(str(demo_output))}


def test_sharegpt_is_llamafactory_layout_with_dataset_info(demo_output: Path, samples: dict, tmp_path: Path) -> None:
    dest = tmp_path / "llamafactory" / "facecorpus.json"
    proc = cli_in_process("export", str(demo_output), "--format", "sharegpt", "--out", str(dest), "--name", "faces")
    assert proc.returncode == 0, proc.stderr
    folder = dest.parent.resolve()
    assert f"dataset=faces dataset_dir={folder} media_dir={folder}" in proc.stdout  # the printed training arguments
    records = json.loads(dest.read_text())
    assert len(records) == sum(len(s.qa) for s in samples.values())  # one conversation per QA pair
    for rec in records:
        assert set(rec) == {"conversations", "images"}
        human, assistant = rec["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>")
        assert assistant["from"] == "assistant" and assistant["value"]
        (image,) = rec["images"]  # one path per <image> token
        key = Path(image).stem
        assert image == f"images/{key}.jpg"
        qa = {(q.question, q.answer) for q in samples[key].qa}
        assert (human["value"].removeprefix("<image>"), assistant["value"]) in qa
        assert (dest.parent / image).is_file()
    entry = json.loads((dest.parent / "dataset_info.json").read_text())["faces"]
    assert entry == {
        "file_name": "facecorpus.json", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "images": "images"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "assistant"},
    }


def test_media_dir_names_the_training_machine_folder(demo_output: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, err = run_main(["export", str(demo_output), "--format", "sharegpt", "--out", str(tmp_path / "d.json"),
                               "--media-dir", "/data/faces"], monkeypatch, capsys)
    assert code == 0, err
    assert f"dataset=facecorpus_dataset dataset_dir={tmp_path.resolve()} media_dir=/data/faces" in out


def test_images_are_the_shard_bytes(demo_output: Path, tmp_path: Path) -> None:
    dest = tmp_path / "x.json"
    export(str(demo_output), "sharegpt", dest, ExportFilter())
    for key, members in iter_output_samples(str(demo_output)):
        assert (tmp_path / "images" / f"{key}.jpg").read_bytes() == members["jpg"]


def test_dataset_info_keeps_other_entries(demo_output: Path, tmp_path: Path) -> None:
    (tmp_path / "dataset_info.json").write_text(json.dumps({"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}))
    export(str(demo_output), "sharegpt", tmp_path / "d.json", ExportFilter(), name="fc")
    export(str(demo_output), "fairfacegpt", tmp_path / "f.json", ExportFilter(), name="ffgpt", image_root="/data/fc")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"alpaca_en_demo", "fc", "ffgpt"} and info["ffgpt"]["image_root"] == "/data/fc"
    assert info["fc"]["file_name"] == "d.json" and info["alpaca_en_demo"] == {"file_name": "alpaca_en_demo.json"}


def test_llava_is_multi_turn_per_image(demo_output: Path, samples: dict, tmp_path: Path) -> None:
    dest = tmp_path / "llava.json"
    rep = export(str(demo_output), "llava", dest, ExportFilter())
    records = json.loads(dest.read_text())
    assert rep.records == len(records) == len(samples)
    for rec in records:
        s = samples[rec["id"]]
        turns = rec["conversations"]
        assert len(turns) == 2 * len(s.qa)
        assert [t["from"] for t in turns] == ["human", "gpt"] * len(s.qa)
        assert turns[0]["value"] == "<image>\n" + s.qa[0].question
        assert all("<image>" not in t["value"] for t in turns[1:])
        assert rec["image"] == f"images/{rec['id']}.jpg"


def test_jsonl_filters_by_category_and_split(demo_output: Path, samples: dict, tmp_path: Path) -> None:
    dest = tmp_path / "demo.jsonl"
    rep = export(str(demo_output), "jsonl", dest, ExportFilter(categories=frozenset({"demographics"}), splits=frozenset({"val"})))
    lines = [json.loads(line) for line in dest.read_text().splitlines()]
    expected = [k for k, s in samples.items() if s.source.split == "val" and any(q.category == "demographics" for q in s.qa)]
    assert sorted(rec["key"] for rec in lines) == sorted(expected) and expected
    for rec in lines:
        assert [q["category"] for q in rec["qa"]] == ["demographics"]
        assert rec["messages"][0]["content"][0] == {"type": "image"}
        assert rec["labels"] == {k: a.value for k, a in samples[rec["key"]].attributes.items() if a.source == "label"}
    assert rep.skipped_samples.get("split", 0) + rep.skipped_samples.get("no_qa_left", 0) == len(samples) - len(expected)


def test_verdict_filters_follow_the_reviewers(demo_output: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(demo_output, out)
    keys = sorted(c.id for c in sample_candidates(str(out)))
    a, b = VerdictLog(out, "alice"), VerdictLog(out, "bob")
    a.judge(keys[0], "item", "accept")
    b.judge(keys[0], "qa:1", "reject")  # bob's rejection of one pair wins over alice's item accept
    a.judge(keys[1], "qa:0", "flag")
    a.close()
    b.close()
    accepted = tmp_path / "acc.jsonl"
    export(str(out), "jsonl", accepted, ExportFilter(verdict="accepted"))
    (rec,) = [json.loads(line) for line in accepted.read_text().splitlines()]
    n_qa = len(Sample.model_validate_json(dict(iter_output_samples(str(out), {keys[0]}))[keys[0]]["json"]).qa)
    assert rec["key"] == keys[0] and len(rec["qa"]) == n_qa - 1
    not_rejected = tmp_path / "nr.jsonl"
    rep = export(str(out), "jsonl", not_rejected, ExportFilter(verdict="not-rejected"))
    assert rep.qa_pairs == sum(len(c.fields["categories"]) for c in sample_candidates(str(out))) - 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv", "--out", "x.json"], "--format 'csv'"),
        (["--format", "sharegpt", "--out", "x.jsonl"], "is one .json file"),
        (["--format", "parquet", "--out", "x.parquet"], "is a folder"),
        (["--format", "parquet", "--out", "hub", "--turns", "qa"], "one row per image"),
        (["--format", "jsonl", "--out", "x.jsonl", "--verdict", "maybe"], "--verdict 'maybe'"),
        (["--format", "llava", "--out", "x.json", "--turns", "all"], "--turns 'all'"),
        (["--format", "jsonl", "--out", "x.jsonl", "--verdict", "accepted"], "has no reviews"),
        (["--format", "jsonl", "--out", "x.jsonl", "--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_export_arguments_are_one_line(
    demo_output: Path, tmp_path: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(["export", str(demo_output), *args], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("facecorpus: error:") and message in err
