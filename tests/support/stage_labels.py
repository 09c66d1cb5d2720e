"""The Beam labels of a run's graph, to hold reject lines' `stage` to them (issue 13: a stage's name is
its Beam label). The graph is rebuilt from the recipe the run recorded (run.json), never run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
from apache_beam.pipeline import PipelineVisitor

from facecorpus.graph import build_pipeline
from facecorpus.preflight import Checked
from facecorpus.recipe import Recipe
from facecorpus.stage import Stage


def graph_of(recipe: Recipe, out: str, checked: Checked) -> beam.Pipeline:
    """The run's graph as `facecorpus run` builds it (`checked`: what pre-flight decided), not run."""
    p = beam.Pipeline(runner="FnApiRunner")
    build_pipeline(p, recipe, out, datetime(2026, 1, 1, tzinfo=UTC), checked)
    return p


def top_labels(p: beam.Pipeline) -> set[str]:
    """The labels the stages are applied under (the graph's top level)."""
    return {label.split("/")[0] for label in p.applied_labels}


def every_label(p: beam.Pipeline) -> set[str]:
    """Every transform's own label, at any depth (`source/0-laion/download` gives all three)."""
    return {part for label in p.applied_labels for part in label.split("/")}


def stages_by_label(p: beam.Pipeline) -> dict[str, set[str]]:
    """top-level label → the `name` of every `Stage` DoFn applied inside it (what its rejects carry)."""
    found: dict[str, set[str]] = {}

    class Visit(PipelineVisitor):
        def visit_transform(self, node) -> None:  # noqa: ANN001 - Beam's AppliedPTransform
            fn = getattr(node.transform, "fn", None)
            if isinstance(fn, Stage):
                found.setdefault(node.full_label.split("/")[0], set()).add(fn.name)

    p.visit(Visit())
    return found


def recorded_recipe(out: Path) -> Recipe:
    """The recipe a finished run recorded in run.json."""
    return Recipe.model_validate(json.loads((out / "run.json").read_text(encoding="utf-8"))["recipe_json"])


def reject_stages(out: Path) -> dict[str, set[str]]:
    """stage → the reasons of the reject lines that carry it."""
    found: dict[str, set[str]] = {}
    for f in sorted((out / "rejects").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                found.setdefault(r["stage"], set()).add(r["reason"])
    return found


def labels_for(recipe: Recipe, out: str) -> set[str]:
    """The labels a reject of a run of `recipe` may carry: the stages' top-level labels, and a source's
    own steps (`download` inside a LAION source). Pre-flight as `prompts render` does it (nothing
    contacted), the optional LLM stages built from the generation's settings: the graph's shape only."""
    from facecorpus.preflight import preflight

    g = recipe.generation
    checked = preflight(recipe, dry_run=True)
    checked = Checked(checked.generation, None, annotation=checked.generation if g.annotation.enabled else None,
                      paraphrase=checked.generation if g.paraphrase.enabled else None,
                      judge=checked.generation if g.judge.enabled else None)
    p = graph_of(recipe, out, checked)
    return top_labels(p) | {part for label in p.applied_labels if label.startswith("source/") for part in label.split("/")}


def assert_reject_stages_are_labels(out: Path, expected: set[str]) -> None:
    """Every reject line of the run in `out` carries the label of a stage of its graph; `expected`:
    stages the test knows it rejected in (so the check sees them)."""
    stages = reject_stages(out)
    assert expected <= set(stages), stages
    labels = labels_for(recorded_recipe(out), str(out))
    assert set(stages) <= labels, (stages, sorted(labels))
