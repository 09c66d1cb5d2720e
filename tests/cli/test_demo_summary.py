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


def test_validate_refuses_a_demo_output_holding_junk(demo_output: Path, tmp_path: Path):
    """`make demo`'s second gate: `facecorpus validate` re-checks every record with the recipe's junk
    checks, so a caption edited into junk after the run is refused by its reason (the edit also breaks
    the manifest's sha256, reported on its own line)."""
    import io
    import tarfile

    from facecorpus.output.check import check_output

    out = tmp_path / "out"
    shutil.copytree(demo_output, out)
    assert check_output(str(out)).problems == []
    shard = sorted((out / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    key = next(m.name.removesuffix(".json") for m, _ in members if m.name.endswith(".json"))
    with tarfile.open(shard, "w") as tar:
        for m, data in members:
            if m.name == f"{key}.json":
                record = json.loads(data)
                record["caption"] = "[Your caption here]"
                data = json.dumps(record).encode()
            elif m.name == f"{key}.txt":
                data = b"[Your caption here]"
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    problems = check_output(str(out)).problems
    assert any(f"{key} breaks the recipe's record rules (markup)" in p for p in problems), problems
