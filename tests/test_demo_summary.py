"""What the demo prints and its yield gate, on the shared demo output (a real demo run: real photos,
portable faces, FnApiRunner; its text from the templates generator, see conftest)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from facecorpus.demo_summary import MIN_FACE_YIELD, demo_report
from facecorpus.records import Reject


def test_the_demo_report_counts_faces_and_shows_examples(demo_output: Path):
    rep = demo_report(str(demo_output))
    stats = json.loads((demo_output / "stats.json").read_text())
    assert rep.written == stats["written"] and rep.faces >= rep.written > 0
    assert rep.ok and rep.face_yield >= MIN_FACE_YIELD
    text = "\n".join(rep.lines)
    assert f"| faces found | {rep.faces} |" in text and f"**{rep.written}**" in text
    assert text.count("  Q: ") == 3 and text.count("  A: ") == 3  # three example QA pairs
    cats = [line.split(", ")[1] for line in rep.lines if line.startswith("- [")]
    assert len(set(cats)) == 3  # one per category


def test_the_gate_fails_when_too_few_faces_become_samples(demo_output: Path, tmp_path: Path):
    out = tmp_path / "out"
    shutil.copytree(demo_output, out)
    rep = demo_report(str(out))
    # as many faces again lost at validation: the yield halves
    lost = [Reject(source_id=f"x/{i}", key=f"lost_{i}", stage="validate", reason="off_topic", detail="x",
                   categories=["pose"]).model_dump_json() for i in range(rep.faces)]
    (out / "rejects" / "extra.jsonl").write_text("\n".join(lost) + "\n")
    bad = demo_report(str(out))
    assert bad.faces == 2 * rep.faces and not bad.ok
    assert "| rejected after the faces stage: `off_topic` |" in "\n".join(bad.lines)
