"""The front of the graph is built once (pipeline.build_front) for the run and for `prompts render`,
and every stage's Beam label is the stage name its reject lines carry."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam

from facecorpus.demo import build_demo_inputs
from facecorpus.faces.face_stage import STAGE as FACES_STAGE
from facecorpus.generation.dry_run import estimate
from facecorpus.generation.llm_stage import ApplyGeneration, RenderPrompts
from facecorpus.image_check import CheckImage
from facecorpus.keys import make_key
from facecorpus.pipeline import build_pipeline, preflight, prompts_until_generation
from facecorpus.recipe import validate_recipe
from facecorpus.validation.assemble import ValidateSample
from facecorpus.validation.dedup_stage import STAGE as DEDUP_STAGE


def _recipe(tmp_path: Path, **generation):
    photos = build_demo_inputs(tmp_path / "in") / "photos" / "group"
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos / "t1.jpg", folder / "a.jpg")
    shutil.copy(photos / "t1.jpg", folder / "b_same.jpg")  # the same bytes: dedup keeps a.jpg
    shutil.copy(photos / "t1_mirror.jpg", folder / "c.jpg")
    gen = {"generator": "openai", "openai": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None},
           "cache": {"dir": str(tmp_path / "cache")}, **generation}
    data = {"name": "front", "sources": [{"type": "folder", "path": str(folder)}], "faces": {"backend": "none"},
            "generation": gen}
    return validate_recipe(data, "front", tmp_path)


def test_prompts_render_dry_run_counts_only_what_dedup_lets_through(tmp_path: Path):
    recipe = _recipe(tmp_path)
    rows = prompts_until_generation(recipe)  # calls nothing: the endpoint does not exist
    assert {r["key"] for r in rows} == {make_key("folder", "a.jpg"), make_key("folder", "c.jpg")}
    assert estimate(rows, recipe.generation).items == 2


def test_beam_labels_are_the_stage_names_their_rejects_carry(tmp_path: Path):
    recipe = _recipe(tmp_path, openai={"base_url": "http://127.0.0.1:9/v1", "api_key_env": None, "preflight": False})
    recipe.faces.backend = "none"
    p = beam.Pipeline(runner="FnApiRunner")
    build_pipeline(p, recipe, str(tmp_path / "out"), datetime(2026, 1, 1, tzinfo=UTC), preflight(recipe))
    labels = {label.split("/")[0] for label in p.applied_labels} | set(p.applied_labels)
    names = {CheckImage.name, DEDUP_STAGE, ValidateSample.name, ApplyGeneration.name, "generate/" + RenderPrompts.name}
    assert names == {"image", "dedup", "validate", "generate", "generate/render"}
    assert names <= labels, sorted(labels)
    assert FACES_STAGE == "faces"  # its label when the recipe has face analysis (not built here: no model pack)
