"""The front of the graph is built once (graph.build_front) for the run and for `prompts render`,
and every stage's Beam label is the stage name its reject lines carry."""

from __future__ import annotations

import shutil
from pathlib import Path

from facecorpus.demo import build_demo_inputs
from facecorpus.download.download_rows import STAGE as DOWNLOAD_STAGE
from facecorpus.faces.face_stage import STAGE as FACES_STAGE
from facecorpus.generation.dry_run import estimate
from facecorpus.generation.judge import STAGE as JUDGE_STAGE
from facecorpus.graph import prompts_until_generation
from facecorpus.keys import make_key
from facecorpus.preflight import Checked, preflight
from facecorpus.recipe import validate_recipe
from facecorpus.validation.dedup_stage import STAGE as DEDUP_STAGE
from tests.support.stage_labels import graph_of, stages_by_label, top_labels


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
    """Every stage of the graph (all optional LLM stages on) is applied under the label its rejects
    carry: each `Stage` DoFn's name is the top-level label it runs under (render steps included), and
    the stages that write reject lines themselves (source, dedup, judge) use their label."""
    recipe = _recipe(tmp_path, openai={"base_url": "http://127.0.0.1:9/v1", "api_key_env": None, "preflight": False})
    recipe.faces.backend = "none"
    g = preflight(recipe).generation
    # the graph only: the LLM stages' own settings as pre-flight would hand them (same endpoint)
    checked = Checked(g, None, annotation=g, paraphrase=g, judge=g)
    p = graph_of(recipe, str(tmp_path / "out"), checked)
    by_label = stages_by_label(p)
    assert set(by_label) == {"image", "finish_image", "annotate", "generate", "paraphrase", "validate", "judge"}
    assert by_label == {label: {label} for label in by_label}, by_label
    assert {"source", DEDUP_STAGE, JUDGE_STAGE} <= top_labels(p)
    assert FACES_STAGE == "faces"  # its label when the recipe has face analysis (the demo's graph, test_pipeline_e2e)
    assert DOWNLOAD_STAGE == "download"  # a LAION source's step of that label (test_laion)
