"""The dataset card and its figures, including review acceptance once reviews exist."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from facecorpus.output.readers import read_manifest
from facecorpus.output.summaries import SUMMARY_COLUMNS, WrittenSummary
from facecorpus.review.queue import sample_candidates
from facecorpus.review.verdicts import VerdictLog
from facecorpus.sinks import plots
from facecorpus.sinks.card import _faces_section, _Figures
from tests.support.inprocess_cli import run_main

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def out(demo_output: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "out"
    shutil.copytree(demo_output, dest)
    return dest


def linked_plots(card: str) -> list[str]:
    return [line.split("](", 1)[1].rstrip(")") for line in card.splitlines() if line.startswith("![")]


def test_run_writes_card_with_linked_figures(demo_output: Path) -> None:
    card = (demo_output / "README.md").read_text()
    links = linked_plots(card)
    assert {"plots/qa_per_category.png", "plots/rejects.png", "plots/labels_age_gender_race.png"} <= set(links)
    for link in links:
        assert (demo_output / link).read_bytes().startswith(PNG)
    assert sorted(p.name for p in (demo_output / "plots").iterdir()) == sorted(Path(link).name for link in links)
    # the age × gender × race table counts what the manifest holds
    rows = read_manifest(str(demo_output)).to_pylist()
    combos = Counter((r["label_age"], r["label_gender"], r["label_race"]) for r in rows if r["label_age"])
    for (a, g, r), n in combos.items():
        assert f"| {a} | {g} | {r} | {n} |" in card
    stats = json.loads((demo_output / "stats.json").read_text())
    for stage, reasons in stats["by_stage"].items():
        for reason, n in reasons.items():
            assert f"| {stage} | {reason} | {n} |" in card
    assert "## Tokens and cost" in card and "## Review" not in card


def test_stats_write_adds_review_acceptance_and_drops_stale_figures(out: Path, monkeypatch, capsys) -> None:
    keys = sorted(c.id for c in sample_candidates(str(out)))
    log = VerdictLog(out, "alice")
    for k in keys[:3]:
        log.judge(k, "item", "accept")
    log.judge(keys[3], "qa:0", "reject")
    log.close()
    before = (out / "README.md").read_text()
    recipe_text = (REPO / "pipelines" / "demo.yaml").read_text().rstrip()
    assert recipe_text in before  # the recipe exactly as written, comments included
    code, _, err = run_main(["stats", str(out), "--write"], monkeypatch, capsys)
    assert code == 0, err
    card = (out / "README.md").read_text()
    assert recipe_text in card  # re-read from run.json, not lost on a rewrite
    assert "## Review" in card and "plots/review_acceptance.png" in card
    assert (out / "plots" / "review_acceptance.png").read_bytes().startswith(PNG)
    assert "| category | judged | accepted | rejected | flagged | acceptance | 95% CI |" in card
    shutil.rmtree(out / "reviews")
    code, _, err = run_main(["stats", str(out), "--write"], monkeypatch, capsys)
    assert code == 0, err
    assert "## Review" not in (out / "README.md").read_text()
    assert not (out / "plots" / "review_acceptance.png").exists()


def test_faces_section_with_pose_and_expression(tmp_path: Path) -> None:
    col: dict[str, list] = {c: [None] * 3 for c in SUMMARY_COLUMNS}  # the card reads the manifest's summary
    col.update({
        "n_faces": [1, 2, 0],
        "pose_yaw": [-20.0, 10.0, None],
        "pose_pitch": [5.0, -3.0, None],
        "pose_roll": [1.0, 0.5, None],
        "expression": ["happy", "neutral", None],
    })
    written = WrittenSummary()
    written.add_columns(col)
    figs = _Figures(str(tmp_path))
    text = "\n".join(_faces_section(written, figs))
    assert "### Head pose" in text and "| yaw | 2 |" in text
    assert "| happy | 1 | 50.0 |" in text and "| 2 | 1 | 33.3 |" in text
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"faces_per_image.png", "pose.png", "expression.png"}


def test_plots_draw_nothing_without_data() -> None:
    assert plots.bar_chart({}, "t") is None
    assert plots.histograms({"yaw": [None, None]}, "t", "deg") is None
    assert plots.label_heatmaps({}, [], [], []) is None
    assert plots.acceptance_chart({"x": {"rate": None}}, "t") is None
    assert plots.histograms({"yaw": [1.0, 2.0]}, "t", "deg").startswith(PNG)


def test_card_without_figures_keeps_its_tables_and_drops_old_figures(out: Path) -> None:
    from facecorpus.sinks.finalize import write_card

    stats = json.loads((out / "stats.json").read_text())
    assert list((out / "plots").glob("*.png"))  # the run drew them
    write_card(str(out), stats, "name: x", plots=False)
    card = (out / "README.md").read_text()
    assert "output.card.plots: false" in card and linked_plots(card) == []
    assert not list((out / "plots").glob("*.png"))  # an earlier card's figures do not linger unlinked
    for stage, reasons in stats["by_stage"].items():  # every number is still there, in the tables
        for reason, n in reasons.items():
            assert f"| {stage} | {reason} | {n} |" in card
    info = json.loads((out / "run.json").read_text())
    info["recipe_json"].setdefault("output", {})["card"] = {"plots": False}
    (out / "run.json").write_text(json.dumps(info))
    from facecorpus.cli import recorded_card_plots

    assert recorded_card_plots(str(out)) is False  # `stats --write` keeps the run's choice
