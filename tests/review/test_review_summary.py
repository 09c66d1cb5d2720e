"""Verdict logs (append, flush, undo, resume) and the review summary (Wilson intervals, Cohen's kappa)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facecorpus.errors import UserError
from facecorpus.review.agreement import cohen_kappa, wilson_interval
from facecorpus.review.queue import reject_candidates, sample_candidates
from facecorpus.review.summary import consensus, format_summary, review_summary
from facecorpus.review.verdicts import VerdictLog, check_reviewer, read_log
from tests.support.inprocess_cli import run_main


@pytest.fixture()
def out(demo_output: Path, tmp_path: Path) -> Path:
    """A private copy of the demo output that reviews may be written into."""
    dest = tmp_path / "out"
    shutil.copytree(demo_output, dest)
    return dest


def test_wilson_interval_matches_reference_values() -> None:
    # reference values computed by hand from the Wilson formula (z = 1.96)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_cohen_kappa_known_example_and_undefined_case() -> None:
    # 50 units: 20 yes/yes, 15 no/no, 5 yes/no, 10 no/yes → po 0.7, pe 0.5, kappa 0.4
    a = ["y"] * 20 + ["n"] * 15 + ["y"] * 5 + ["n"] * 10
    b = ["y"] * 20 + ["n"] * 15 + ["n"] * 5 + ["y"] * 10
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["y", "n"], ["y", "n"]) == pytest.approx(1.0)
    assert cohen_kappa(["y", "y"], ["y", "y"]) is None  # chance agreement is 1: undefined
    assert cohen_kappa([], []) is None


def test_consensus_rule() -> None:
    assert consensus(["accept", "reject"]) == "reject"
    assert consensus(["accept", "flag"]) == "accept"
    assert consensus(["flag"]) == "flag"
    assert consensus([]) is None


def test_every_action_is_on_disk_before_the_call_returns(out: Path) -> None:
    log = VerdictLog(out, "alice")
    key = sample_candidates(str(out))[0].id
    log.judge(key, "qa:0", "accept", category="demographics")
    # read by another reader while the log is still open: the line is there
    lines = (out / "reviews" / "alice.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["verdict"] == "accept"
    log.judge(key, "qa:1", "reject")
    log.note(key, "answer invents freckles")
    undone = log.undo()
    assert undone is not None and undone.action == "note"
    undone = log.undo()
    assert undone is not None and undone.target == "qa:1"
    assert log.state.qa_verdict(key, 1) is None and log.state.qa_verdict(key, 0) == "accept"
    log.close()
    events = read_log(out / "reviews" / "alice.jsonl").events
    assert [e.action for e in events] == ["judge", "judge", "note", "undo", "undo"]
    # reopening replays the log: same state, undo continues into the earlier session
    again = VerdictLog(out, "alice")
    assert again.state.qa_verdict(key, 0) == "accept" and again.state.notes == {}
    assert again.undo() is not None and again.state.qa_verdict(key, 0) is None
    assert again.undo() is None
    again.close()


def test_item_verdict_applies_to_unjudged_qa_pairs(out: Path) -> None:
    log = VerdictLog(out, "bob")
    log.judge("k1", "qa:2", "reject")
    log.judge("k1", "item", "accept")
    assert log.state.qa_verdict("k1", 2) == "reject"
    assert log.state.qa_verdict("k1", 0) == "accept"
    log.close()


def test_torn_last_line_is_reported_and_the_log_stays_appendable(out: Path) -> None:
    path = out / "reviews" / "carol.jsonl"
    log = VerdictLog(out, "carol")
    log.judge("k1", "qa:0", "accept")
    log.close()
    with path.open("a") as f:
        f.write('{"seq": 1, "time": "2026')  # the process died mid-write
    log = VerdictLog(out, "carol")
    assert len(log.unreadable) == 1 and "carol.jsonl:2" in log.unreadable[0]
    log.judge("k1", "qa:1", "flag")
    log.close()
    read = read_log(path)
    assert [e.verdict for e in read.events] == ["accept", "flag"] and len(read.unreadable) == 1


@pytest.mark.parametrize("name", ["../x", ".hidden", "a b", ""])
def test_reviewer_names_that_cannot_be_file_names_are_refused(name: str) -> None:
    with pytest.raises(UserError):
        check_reviewer(name)


def _two_reviewers(out: Path) -> dict[str, list[str]]:
    """alice and bob judge the same 4 samples; returns the categories of those samples' QA pairs."""
    cands = sorted(sample_candidates(str(out)), key=lambda c: c.id)[:4]
    alice, bob = VerdictLog(out, "alice"), VerdictLog(out, "bob")
    for n, c in enumerate(cands):
        alice.judge(c.id, "item", "accept")
        # bob rejects QA pair 0 of the first two samples, accepts the rest
        bob.judge(c.id, "item", "accept")
        if n < 2:
            bob.judge(c.id, "qa:0", "reject")
    alice.close()
    bob.close()
    return {c.id: c.fields["categories"] for c in cands}


def test_summary_rates_intervals_groups_and_kappa(out: Path) -> None:
    cats = _two_reviewers(out)
    s = review_summary(out)
    n_units = sum(len(v) for v in cats.values())
    assert s["reviewers"] == ["alice", "bob"] and s["units_reviewed"] == n_units
    overall = s["overall"]["qa"]
    assert overall["rejected"] == 2 and overall["accepted"] == n_units - 2
    assert overall["ci95"] == [round(x, 4) for x in wilson_interval(n_units - 2, n_units)]
    rejected_cats = [v[0] for v in list(cats.values())[:2]]
    for cat in set(rejected_cats):
        assert s["category"][cat]["rejected"] == rejected_cats.count(cat)
    assert sum(r["judged"] for r in s["label_race"].values()) == n_units
    (pair,) = s["agreement"]
    assert pair["reviewers"] == ["alice", "bob"] and pair["units"] == n_units
    # alice accepted all: her labels are constant, so expected agreement = bob's accept share = observed
    assert pair["kappa"] == pytest.approx(0.0, abs=1e-9)
    text = format_summary(s)
    assert "per category" in text and "alice × bob: kappa 0.000" in text


def test_summary_of_reviewed_rejects(out: Path) -> None:
    rejects = reject_candidates(str(out))
    log = VerdictLog(out, "dora")
    log.judge(rejects[0].id, "item", "accept")
    log.judge(rejects[1].id, "item", "reject")
    log.close()
    s = review_summary(out)
    table = s["rejects_by_reason"]
    assert sum(r["judged"] for r in table.values()) == 2
    key0 = f"{rejects[0].reject.stage}/{rejects[0].reject.reason}"
    assert table[key0]["accepted"] >= 1


def test_summary_command(out: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code, stdout, _ = run_main(["review", str(out), "--summary"], monkeypatch, capsys)
    assert code == 0 and "no reviews yet" in stdout
    _two_reviewers(out)
    code, stdout, err = run_main(["review", str(out), "--summary", "--json"], monkeypatch, capsys)
    assert code == 0, err
    data = json.loads(stdout)
    assert data["reviewers"] == ["alice", "bob"] and data["agreement"][0]["units"] > 0
    code, _, err = run_main(["review", str(out / "missing"), "--summary"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "is not a folder" in err

