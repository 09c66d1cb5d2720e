"""Helpers for generation tests: run the generate stage alone in a Beam pipeline and read its counters."""

from __future__ import annotations

import base64
import io
import pickle
import tempfile
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from facecorpus.generation.accounting import llm_totals
from facecorpus.generation.config import GenerationConfig
from facecorpus.generation.llm_stage import GenerateWithLLM
from facecorpus.records import AttributeValue, SourceInfo
from facecorpus.stage import WorkItem

RACES = ["white", "black", "indian", "east_asian", "southeast_asian", "middle_eastern", "latino_hispanic"]


def work_items(n: int, size: int = 48) -> list[WorkItem]:
    """n items with distinct small JPEGs and FairFace-style labels."""
    items = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (size, size), (i * 37 % 256, 90, 200 - i % 100)).save(buf, "JPEG")
        labels = {
            "gender": AttributeValue(value="female" if i % 2 else "male", source="label"),
            "age": AttributeValue(value="30-39", source="label"),
            "race": AttributeValue(value=RACES[i % len(RACES)], source="label"),
        }
        items.append(WorkItem(key=f"item_{i:04d}", source=SourceInfo(dataset="test", id=f"img/{i}.jpg"),
                              labels=labels, jpeg=buf.getvalue()))
    return items


def run_generation(cfg: GenerationConfig, items: list[WorkItem], cache_dir: str | None, out: str | None = None
                   ) -> tuple[list[WorkItem], list[Any], dict[str, Any]]:
    """The generate stage alone on FnApiRunner: (items it kept, its rejects, llm_totals of the run)."""
    with tempfile.TemporaryDirectory(prefix="gen-test-") as tmp:
        p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
        result = p | beam.Create(items) | "Generate" >> GenerateWithLLM(cfg, cache_dir, out)
        for name in ("main", "rejects"):
            _ = (result[name] | f"Encode{name}" >> beam.Map(lambda x: base64.b64encode(pickle.dumps(x)).decode())
                 | f"Write{name}" >> beam.io.WriteToText(str(Path(tmp) / name)))
        run = p.run()
        run.wait_until_finish()
        loaded = {}
        for name in ("main", "rejects"):
            lines = [line for f in sorted(Path(tmp).glob(f"{name}*")) for line in f.read_text().splitlines() if line]
            loaded[name] = [pickle.loads(base64.b64decode(line)) for line in lines]
        return loaded["main"], loaded["rejects"], llm_totals(run)
