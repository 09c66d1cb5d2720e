"""Helpers for generation tests: items, a grid of facts to generate from, the generate stage alone in a
Beam pipeline and its counters."""

from __future__ import annotations

import base64
import copy
import io
import itertools
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
from facecorpus.labels import AGE_BINS, GENDERS
from facecorpus.labels import RACES as RACE_LABELS
from facecorpus.records import AttributeValue, Expression, Face, FaceBox, FaceQuality, Pose, SourceInfo
from facecorpus.stage import WorkItem

RACES = ["white", "black", "indian", "east_asian", "southeast_asian", "middle_eastern", "latino_hispanic"]


#: the geometry of a face on a 48-px test image (work_items); measured_face's default is a 180-px one
SMALL_FACE = {"box": (4, 4, 44, 44), "landmarks5": [(14, 18), (34, 18), (24, 26), (16, 34), (32, 34)], "size_px": 40}


def measured_face(yaw: float, pitch: float, roll: float, expression: str, blur: float, brightness: float,
                  box: tuple[int, int, int, int] = (20, 20, 200, 230),
                  landmarks5: list[tuple[int, int]] | None = None, size_px: int = 180) -> Face:
    """A face as the portable models measure one: pose, expression, sharpness, brightness."""
    x1, y1, x2, y2 = box
    return Face(box=FaceBox(x1=x1, y1=y1, x2=x2, y2=y2), score=0.99, detector="portable:mtcnn",
                landmarks5=landmarks5 or [(70, 100), (150, 100), (110, 140), (80, 180), (140, 180)],
                pose=Pose(yaw=yaw, pitch=pitch, roll=roll), expression=Expression(label=expression, confidence=0.8),
                quality=FaceQuality(size_px=size_px, blur=blur, brightness=brightness, contrast=50), mouth_openness=0.4)


def fact_grid(base: WorkItem, faces: list[Face | None], every: int):  # noqa: ANN201 - an iterator of WorkItems
    """Copies of `base` over faces × (gender, age, race) labels (each may be missing; every `every`-th
    combination), numbered: what a generator is held to on every kind of fact it may be given."""
    labels = list(itertools.product([None, *GENDERS.values()], [None, *AGE_BINS.values()], [None, *RACE_LABELS.values()]))
    for i, (face, (gender, age, race)) in enumerate(itertools.product(faces, labels[::every])):
        item = copy.deepcopy(base)
        item.labels = {n: AttributeValue(value=v, source="label", confidence=1.0)
                       for n, v in (("gender", gender), ("age", age), ("race", race)) if v is not None}
        item.faces, item.primary_face = ([face], 0) if face else ([], None)
        yield i, item


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
