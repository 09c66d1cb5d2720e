"""`facecorpus validate`'s reject check (output/check_rejects.py), which keeps 16 bytes per line: the
same findings as holding every line, and a hash shared by different keys is no finding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facecorpus.output import check_rejects as cr
from facecorpus.output.check import Report
from facecorpus.output.check_rules import SeenSample


def _line(source_id: str, key: str | None, reason: str = "http_404") -> str:
    return json.dumps({"source_id": source_id, "key": key, "stage": "download", "reason": reason,
                       "detail": f"{reason} for {source_id}", "retryable": False})


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    (tmp_path / "rejects").mkdir()
    (tmp_path / "rejects" / "r-a.jsonl").write_text("\n".join([
        _line("1", "k1"), _line("2", "k2"), "", _line("x.jpg", None, "not_image")]) + "\n")
    (tmp_path / "rejects" / "r-b.jsonl").write_text("\n".join([
        _line("1", "k1"), _line("x.jpg", None, "not_image"), _line("x.jpg", None, "not_image"), _line("9", "w1"),
        json.dumps({"source_id": "y", "stage": "image", "reason": "Not Snake"}), _line("3", "k3")]) + "\n")
    return tmp_path


WANT = [
    "r-b.jsonl line 4: w1 is rejected (http_404) and also written in s.tar",
    "r-b.jsonl line 1: k1 is rejected twice (also at r-a.jsonl line 1)",
    "r-b.jsonl line 2: the same reject of x.jpg (not_image) appears twice",
]


@pytest.mark.parametrize("collide", [False, True])
def test_repeated_and_written_rejects_are_found_with_both_places(out: Path, monkeypatch, collide: bool):
    if collide:  # every key and identity hashes alike: only real repeats may be reported
        monkeypatch.setattr(cr, "_hash", lambda text: 7)
    rep = Report()
    summary = cr.check_rejects(str(out), rep, {"w1": SeenSample("s.tar")})
    assert summary is None  # one line is not a valid reject: stats are not compared per reason
    assert rep.rejects == 9
    invalid = [p for p in rep.problems if "not a valid reject" in p]
    assert len(invalid) == 1 and invalid[0].startswith("r-b.jsonl line 5: ")
    assert [p for p in rep.problems if p not in invalid] == WANT


def test_valid_rejects_give_their_counts(tmp_path: Path):
    (tmp_path / "rejects").mkdir()
    (tmp_path / "rejects" / "r.jsonl").write_text(_line("1", "k1") + "\n" + _line("2", None, "not_image") + "\n")
    rep = Report()
    summary = cr.check_rejects(str(tmp_path), rep, {})
    assert rep.problems == [] and summary is not None
    assert dict(summary.by_reason) == {"http_404": 1, "not_image": 1}
