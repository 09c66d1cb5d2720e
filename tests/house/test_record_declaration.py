"""The record is declared once (records.Sample): a field added there is in the JSON schema, on the
draft every stage fills (WorkItem) and in the written record; one `Column` line in output/manifest.py
puts it in the manifest and under `facecorpus validate`'s comparison.

Shown on a copy of the package with the field really added (not on a subclass), so nothing else can
be quietly needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import facecorpus

FIELD = '    lighting_score: float | None = Field(default=None, description="How evenly the face is lit, 0-1.")\n'
COLUMN = '    Column("lighting_score", pa.float64(), lambda r: r.sample.lighting_score),\n'

CHECK = textwrap.dedent('''
    import json, sys
    from datetime import datetime, UTC
    from facecorpus.records import ImageInfo, QAPair, SourceInfo, sample_json_schema
    from facecorpus.output.manifest import MANIFEST_SCHEMA, manifest_row
    from facecorpus.stage import WorkItem
    from facecorpus.validation.assemble import build_sample
    from facecorpus.output import check as output_check

    item = WorkItem(key="k1", source=SourceInfo(dataset="d", id="1.jpg"))
    assert item.lighting_score is None  # a draft has every field of the record
    item.lighting_score = 0.75  # what a stage would do
    item.image = ImageInfo(width=8, height=8, sha256="0" * 64, phash="0" * 16, bytes=10)
    item.jpeg = b"jpeg"
    item.caption = "A face."
    item.qa = [QAPair(category="pose", question="Which way?", answer="Straight ahead.")]
    item.provenance.generator = "templates"
    sample = build_sample(item, "r", "1" * 64, "0", datetime(2024, 1, 1, tzinfo=UTC))
    print(json.dumps({
        "schema": "lighting_score" in sample_json_schema()["properties"],
        "record": json.loads(sample.model_dump_json())["lighting_score"],
        "manifest": "lighting_score" in MANIFEST_SCHEMA.names,
        "row": manifest_row(sample, "s.tar").get("lighting_score"),
        "compared": "lighting_score" in output_check._COMPARED,
    }))
''')


def _insert(path: Path, before: str, line: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(before) == 1, before
    path.write_text(text.replace(before, line + before), encoding="utf-8")


def _run(src: Path) -> dict:
    import json

    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_field_added_once_reaches_schema_draft_record_and_with_its_column_the_manifest(tmp_path: Path):
    src = tmp_path / "src"
    shutil.copytree(Path(facecorpus.__file__).parent, src / "facecorpus")
    _insert(src / "facecorpus" / "records.py", "    flags: list[str] = Field(default_factory=list, description=\"Non-fatal", FIELD)
    assert _run(src) == {"schema": True, "record": 0.75, "manifest": False, "row": None, "compared": False}
    _insert(src / "facecorpus" / "output" / "manifest.py", "    # with the sample's tar members", COLUMN)
    assert _run(src) == {"schema": True, "record": 0.75, "manifest": True, "row": 0.75, "compared": True}
