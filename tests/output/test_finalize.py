"""The streaming end-of-run files: bounded-memory summaries give the same stats as reading everything
into memory, percentiles from value counts equal those of the sorted values, and `facecorpus finalize`
rewrites a detached job's files."""

from __future__ import annotations

import json
import random
import shutil
import statistics
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from facecorpus.output.annotation_agreement import agreement, agreement_from_counts
from facecorpus.output.summaries import (
    SUMMARY_COLUMNS,
    RejectSummary,
    WrittenSummary,
    licence_table,
    percentile,
)
from facecorpus.review.agreement import cohen_kappa
from tests.support.inprocess_cli import cli_in_process, run_main


def test_percentiles_from_counts_equal_those_of_the_sorted_values():
    rng = random.Random(3)
    values = [rng.randint(0, 500) for _ in range(10_001)]
    counts = Counter(values)
    ordered = sorted(values)
    for p in (0, 10, 50, 90, 100):
        assert percentile(counts, p) == ordered[round(p / 100 * (len(ordered) - 1))]
    assert percentile(counts, 50) == statistics.median(ordered)


def test_histograms_from_counts_have_the_bars_of_the_values():
    """The card draws histograms from value → count tables with weights (sinks/plots.py): the same bins
    and heights as drawing every value."""
    import numpy as np

    rng = random.Random(5)
    values = [round(rng.gauss(0, 20), 1) for _ in range(5000)]
    counts = Counter(values)
    heights, edges = np.histogram(values, bins=24)
    w_heights, w_edges = np.histogram(list(counts), bins=24, weights=list(counts.values()))
    assert np.array_equal(edges, w_edges) and np.array_equal(heights, w_heights)


def test_summaries_merge_like_one_pass():
    cols: dict[str, list] = {c: [] for c in SUMMARY_COLUMNS}
    rng = random.Random(1)
    for i in range(300):
        for c, v in (("shard", f"s{i % 7}"), ("source_dataset", "laion"), ("generator", "openai"), ("n_faces", 1 + i % 3),
                     ("n_qa", 2), ("categories", ["pose", "expression"]), ("answer_chars", [i, i + 1]),
                     ("label_age", None if i % 4 else "20-29"), ("label_gender", "Male"), ("label_race", None),
                     ("expression", "happy"), ("pose_yaw", rng.uniform(-40, 40)), ("pose_pitch", None),
                     ("pose_roll", 1.0), ("flags", ["label_conflict:age"] if i % 9 == 0 else []),
                     ("prompt_tokens", 10), ("completion_tokens", 5), ("cost_usd", 0.01), ("prompt_set", "compact"),
                     ("licence", "CC BY 4.0" if i % 5 else None), ("llm_model", "m1" if i % 2 else None),
                     ("url", None), ("age", "30-39"), ("gender", "Male"), ("race", None),
                     ("labels_json", '{"smiling": true}' if i % 2 else None), ("answer_keys", ["attribute_yes_no=yes"]),
                     ("annotation_pairs", [f"smiling\tlabel\t{'true' if i % 3 else 'false'}\ttrue"] if i % 2 else [])):
            cols[c].append(v)
    assert set(cols) == set(SUMMARY_COLUMNS) and all(len(v) == 300 for v in cols.values())
    whole = WrittenSummary()
    whole.add_columns(cols)
    a, b = WrittenSummary(), WrittenSummary()
    a.add_columns({k: v[:120] for k, v in cols.items()})
    b.add_columns({k: v[120:] for k, v in cols.items()})
    merged = a.merge(b)
    assert merged.cost_usd == pytest.approx(whole.cost_usd)
    merged.cost_usd = whole.cost_usd  # float sums in another order
    assert merged == whole
    assert whole.written == 300 and whole.qa_pairs == 600 and len(whole.per_shard) == 7
    assert whole.flagged_conflicts == Counter({"age": 34})
    assert whole.attribute_labels == {"smiling": Counter({"true": 150})}
    assert licence_table(whole.licences) == {"laion": {"CC BY 4.0": 240, "unknown": 60}}
    assert (whole.labelled["age"], whole.inferred["age"], whole.inferred["gender"]) == (75, 225, 0)
    assert whole.llm_models == Counter({"m1": 150}) and whole.with_url == 0
    llm = [entry.split("\t")[2] for row in cols["annotation_pairs"] for entry in row]
    table = agreement_from_counts(whole.annotation_pairs)["smiling"]["label"]  # counts, not per-sample lists
    assert (table["n"], table["agree"]) == (150, sum(v == "true" for v in llm))
    assert table["kappa"] == round(cohen_kappa(llm, ["true"] * 150), 4) == 0.0  # the labels never vary
    mixed = ["a\tlabel\tx\tx", "a\tlabel\ty\tx", "a\tlabel\ty\ty", "a\tlabel\ty\ty"]
    assert agreement([[m] for m in mixed])["a"]["label"]["kappa"] == round(cohen_kappa(["x", "y", "y", "y"], ["x", "x", "y", "y"]), 4)
    r = RejectSummary()
    for line in ['{"stage": "generate", "reason": "refusal", "retryable": false, "categories": ["pose"]}', "", "not json"]:
        r.add_line(line)
    assert (r.rejected, r.unreadable, dict(r.by_reason)) == (2, 1, {"refusal": 1})


def _reference_stats(out: Path) -> dict:
    """The counts read the plain way: every manifest row and reject line in memory."""
    rows = [r for f in sorted((out / "manifest").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    rejects = [json.loads(x) for f in sorted((out / "rejects").glob("*.jsonl")) for x in f.read_text().splitlines() if x.strip()]
    return {
        "written": len(rows), "rejected": len(rejects),
        "by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items())),
        "qa_pairs": sum(r["n_qa"] for r in rows),
        "qa_by_category": dict(sorted(Counter(c for r in rows for c in r["categories"]).items())),
        "shards": len({r["shard"] for r in rows}),
        "faces_per_sample": dict(sorted(Counter(str(r["n_faces"]) for r in rows).items())),
        "labels": {a: dict(sorted(Counter("unknown" if r[f"label_{a}"] is None else r[f"label_{a}"] for r in rows).items()))
                   for a in ("age", "gender", "race")},
    }


def test_finalize_of_a_copied_output_matches_reading_everything(demo_output: Path, tmp_path: Path):
    out = tmp_path / "out"
    shutil.copytree(demo_output, out)
    for name in ("stats.json", "index.json", "README.md"):
        (out / name).unlink()
    proc = cli_in_process("finalize", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "inputs counted from the outputs" in proc.stderr
    stats = json.loads((out / "stats.json").read_text())
    ref = _reference_stats(out)
    assert {k: stats[k] for k in ref} == ref
    assert stats["inputs_counted_by"] == "outputs" and stats["invariant_ok"] is None  # not proven, not claimed
    original = json.loads((demo_output / "stats.json").read_text())
    for k in ("written", "rejected", "by_stage", "qa_by_category", "labels", "validation", "llm"):
        assert stats[k] == original[k], k
    index = json.loads((out / "index.json").read_text())
    assert index == json.loads((demo_output / "index.json").read_text())
    card = (out / "README.md").read_text()
    assert "inputs == written + rejected: not proven" in card
    assert "## Faces" in card and "### Head pose" in card and "### Answer length (characters)" in card
    proc = cli_in_process("finalize", str(out), "--inputs", str(stats["written"] + stats["rejected"] + 1))
    assert proc.returncode == 1 and "INVALID: inputs" in proc.stderr  # a lost input is not papered over
    assert cli_in_process("finalize", str(out), "--inputs", str(original["inputs"])).returncode == 0
    assert cli_in_process("validate", str(out)).returncode == 0


def test_validation_section_counts_rejects_and_flags_per_check_and_category():
    """stats.json's `validation`, counted in one place (output/summaries.py) from reject lines and the
    manifest's flags column, batch by batch as finalize reads them; `validation_counts` is the same
    counting for rejects and flags in hand."""
    from facecorpus.output.summaries import stats_from, validation_counts
    from facecorpus.records import Reject

    rejects = [Reject(source_id="a", stage="validate", reason="off_topic", detail="x", categories=["pose"]),
               Reject(source_id="b", stage="validate", reason="markup", detail="x", categories=["caption", "pose"]),
               Reject(source_id="c", stage="generate", reason="refusal", detail="x", categories=[]),
               Reject(source_id="d", stage="validate", reason="label_conflict", detail="x", categories=["demographics"]),
               Reject(source_id="e", stage="dedup", reason="duplicate", detail="x"),
               Reject(source_id="f", stage="validate", reason="meta_talk", detail="x", retryable=True)]
    flags = [["label_conflict:age", "markup:caption"], [], ["meta_talk:expression", "skipped:pose"], None]
    r = RejectSummary()
    for rej in rejects:
        r.add_line(rej.model_dump_json())
    cols: dict[str, list] = {c: [None] * len(flags) for c in SUMMARY_COLUMNS}
    cols["flags"] = flags
    w = WrittenSummary()
    w.add_columns(cols)
    want = {
        "refusals_by_category": {"caption": 1},  # a refusal without categories was the caption's
        "label_conflicts_rejected_by_category": {"demographics": 1},
        "label_conflicts_flagged_by_attribute": {"age": 1},
        "text_checks": {
            "rejected": {"markup": {"caption": 1, "pose": 1}, "meta_talk": {"caption": 1}, "off_topic": {"pose": 1}},
            "flagged": {"markup": {"caption": 1}, "meta_talk": {"expression": 1}},
        },
        "duplicates": 1,
        "holdout": 0,
    }
    assert stats_from(w, r, None, {})["validation"] == want
    assert validation_counts(rejects, flags) == want


def test_the_job_writes_the_end_files_the_launcher_writes(demo_output: Path, tmp_path: Path, monkeypatch, capsys):
    """A detached run's job finalizes itself (sinks/finalize.py FinalizeInJob: per-file summaries merged
    by a Beam combiner): index.json, stats.json, the card and its figures are byte for byte what
    `facecorpus finalize` writes on the launcher for the same files."""
    import apache_beam as beam

    from facecorpus.sinks.finalize import FinalizeInJob

    job, launcher = tmp_path / "job", tmp_path / "launcher"
    for out in (job, launcher):
        shutil.copytree(demo_output, out)
        for name in ("stats.json", "index.json", "README.md"):
            (out / name).unlink()
        shutil.rmtree(out / "plots", ignore_errors=True)
    with beam.Pipeline(runner="FnApiRunner") as p:
        # stand-ins for the shard and reject writers' outputs: the end files wait for both
        shards = p | "Shards" >> beam.Create([("shard-00000", 1, 1)])
        rejects = p | "Rejects" >> beam.Create(["rejects-00000-of-00001.jsonl"])
        _ = (shards, rejects) | "Finalize" >> FinalizeInJob(str(job))
    assert run_main(["finalize", str(launcher)], monkeypatch, capsys)[0] == 0
    written = sorted(p.relative_to(launcher) for p in launcher.rglob("*") if p.is_file())
    assert sorted(p.relative_to(job) for p in job.rglob("*") if p.is_file()) == written
    for name in ("stats.json", "index.json", "README.md", *(str(p) for p in written if p.parts[0] == "plots")):
        assert (job / name).read_bytes() == (launcher / name).read_bytes(), name
    assert json.loads((job / "stats.json").read_text())["written"] == json.loads((demo_output / "stats.json").read_text())["written"]


def test_only_a_detached_run_builds_the_finalize_into_its_job(tmp_path: Path):
    """`run --detach` builds FinalizeInJob into the graph after both writers; an attached run leaves the
    end files to its launcher (which has the input counter and the LLM's spend)."""
    from datetime import UTC, datetime

    import apache_beam as beam
    from PIL import Image

    from facecorpus.graph import build_pipeline
    from facecorpus.preflight import preflight
    from facecorpus.recipe import Recipe

    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.jpg")
    recipe = Recipe.model_validate({"name": "t", "sources": [{"type": "folder", "path": str(tmp_path / "in")}],
                                    "faces": {"backend": "none"}, "generation": {"generator": "templates"}})
    checked = preflight(recipe)
    for detached in (False, True):
        p = beam.Pipeline(runner="FnApiRunner")
        build_pipeline(p, recipe, str(tmp_path / "out"), datetime(2026, 1, 1, tzinfo=UTC), checked,
                       finalize_in_job=detached)
        finalize = {label for label in p.applied_labels if label.startswith("Finalize/")}
        assert bool(finalize) == detached
        if detached:
            assert {"Finalize/ListFiles", "Finalize/MergeSummaries", "Finalize/WriteEndFiles"} <= finalize
