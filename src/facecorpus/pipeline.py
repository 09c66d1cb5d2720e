"""Builds and runs the Beam graph for a recipe. The only place where stages meet.

    sources ─▶ image check ─▶ faces ─▶ generate ─▶ validate ─▶ shards + manifest
       └───────────┴────────────┴─────────┴───────────┴──▶ rejects/*.jsonl
    then, on the launcher: stats.json, index.json, README.md (from what was written)

Each stage is applied through `_apply`, which expects a mapping with 'main' and 'rejects'.
One hook function per area builds that area's transform from the recipe.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import yaml
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from . import __version__
from .errors import UserError
from .generation.templates import GenerateFromTemplates
from .image_check import CheckImage
from .recipe import FaceCaptionSource, FairFaceSource, FolderSource, LaionSource, Recipe, WebDatasetSource
from .sinks.shards import SHARDS_DIR, TMP_DIR, WriteShards, reject_line
from .sinks.summary import (
    REJECTS_DIR,
    RUN_FILE,
    compute_stats,
    read_manifest,
    write_card,
    write_index,
    write_stats,
    write_text,
)
from .sources.fairface import ReadFairFace
from .sources.folder import ReadFolder
from .sources.laion import ReadFaceCaption, ReadLaion
from .sources.webdataset import ReadWebDataset
from .stage import METRICS_NAMESPACE, REJECTS
from .validation.assemble import AssembleSample

log = logging.getLogger("facecorpus")
LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "PrismRunner", "SwitchingDirectRunner")

# ------------------------------------------------------------------------------------------------ hooks

#: source type → PTransform class taking the source config (applied to the pipeline root)
SOURCES: dict[type, Any] = {
    FairFaceSource: ReadFairFace,
    FolderSource: ReadFolder,
    WebDatasetSource: ReadWebDataset,
    LaionSource: ReadLaion,
    FaceCaptionSource: ReadFaceCaption,
}


def source_transform(cfg: Any) -> beam.PTransform:
    """Hook (sources): the PTransform that reads one recipe source."""
    return SOURCES[type(cfg)](cfg)


def image_transform(recipe: Recipe) -> beam.PTransform:
    """Hook (image check)."""
    return beam.ParDo(CheckImage(recipe.image)).with_outputs(REJECTS, main="main")


def faces_transform(recipe: Recipe) -> beam.PTransform | None:
    """Hook (faces): None when the recipe asks for no face analysis."""
    from .faces.stage import faces_stage

    return faces_stage(recipe.faces, recipe.image.jpeg_quality)


def generation_transform(recipe: Recipe) -> beam.PTransform:
    """Hook (generation)."""
    g = recipe.generation
    return beam.ParDo(GenerateFromTemplates(g.categories, g.seed)).with_outputs(REJECTS, main="main")


def validation_transform(recipe: Recipe, created_at: datetime) -> beam.PTransform:
    """Hook (validation): WorkItem → ShardSample (schema-valid record + JPEG)."""
    return beam.ParDo(AssembleSample(recipe.name, recipe.sha256(), __version__, created_at)).with_outputs(
        REJECTS, main="main"
    )


def prepare(recipe: Recipe) -> None:
    """Hook (pre-flight): checks that must fail before a run starts (missing model packs, endpoints…)."""
    from .faces.stage import check_ready

    check_ready(recipe.faces)


# ------------------------------------------------------------------------------------------------ graph


def _apply(pcoll: beam.PCollection, transform: beam.PTransform, label: str, rejects: list) -> beam.PCollection:
    result = pcoll | label >> transform
    rejects.append(result[REJECTS])  # REJECTS == "rejects": ParDo outputs and composite dicts alike
    return result["main"]


def build_pipeline(p: beam.Pipeline, recipe: Recipe, out: str, created_at: datetime) -> None:
    rejects: list[beam.PCollection] = []
    mains = []
    for i, src in enumerate(recipe.sources):
        result = p | f"Source{i}-{src.type}" >> source_transform(src)
        mains.append(result["main"])
        rejects.append(result["rejects"])
    items = mains[0] if len(mains) == 1 else tuple(mains) | "AllSources" >> beam.Flatten()
    items = _apply(items, image_transform(recipe), "CheckImage", rejects)
    faces = faces_transform(recipe)
    if faces is not None:
        items = _apply(items, faces, "Faces", rejects)
    items = _apply(items, generation_transform(recipe), "Generate", rejects)
    samples = _apply(items, validation_transform(recipe, created_at), "Validate", rejects)
    o = recipe.output
    staging = o.grouping == "staging" or (o.grouping == "auto" and recipe.runner.runner in LOCAL_RUNNERS)
    _ = samples | "WriteShards" >> WriteShards(out, o.samples_per_shard, o.max_shard_bytes, staging=staging)
    (
        tuple(rejects)
        | "AllRejects" >> beam.Flatten()
        | "RejectLines" >> beam.Map(reject_line)
        | "WriteRejects"
        >> beam.io.WriteToText(
            FileSystems.join(out, REJECTS_DIR, "rejects"),
            file_name_suffix=".jsonl",
            num_shards=recipe.output.rejects_shards,
            shard_name_template="-SSSSS-of-NNNNN",
        )
    )


def pipeline_options(recipe: Recipe, extra_args: list[str]) -> PipelineOptions:
    args = [f"--runner={recipe.runner.runner}", *recipe.runner.options, *extra_args]
    return PipelineOptions(args)


def run_started_at() -> datetime:
    """The run's timestamp; SOURCE_DATE_EPOCH (reproducible builds convention) pins it."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(tz=UTC).replace(microsecond=0)


@dataclass
class RunResult:
    out: str
    stats: dict[str, Any]


def _counter(result: Any, name: str) -> int | None:
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name(name))["counters"]
    except Exception:  # noqa: BLE001 - some runners do not report metrics
        return None
    if not found:
        return 0
    return int(sum(c.committed if c.committed is not None else c.attempted for c in found))


def run_recipe(recipe: Recipe, out: str, beam_args: list[str] | None = None, recipe_yaml: str | None = None) -> RunResult:
    """Run a recipe to completion into `out`, then write stats.json, index.json and the dataset card."""
    if FileSystems.exists(FileSystems.join(out, SHARDS_DIR)) and _match_any(FileSystems.join(out, SHARDS_DIR, "*.tar")):
        raise UserError(f"{out} already holds shards; choose a new --out (resuming is `--resume`)")
    prepare(recipe)
    created_at = run_started_at()
    t0 = time.time()
    FileSystems.mkdirs(out) if not FileSystems.exists(out) else None
    for sub in (SHARDS_DIR, FileSystems.join(SHARDS_DIR, TMP_DIR), FileSystems.join(SHARDS_DIR, TMP_DIR, "staging"),
                "manifest", REJECTS_DIR):
        path = FileSystems.join(out, sub)
        if not FileSystems.exists(path):
            FileSystems.mkdirs(path)
    run_info = {
        "recipe": recipe.name,
        "recipe_sha256": recipe.sha256(),
        "pipeline_version": __version__,
        "started_at": created_at.isoformat(),
        "runner": recipe.runner.runner,
    }
    write_text(FileSystems.join(out, RUN_FILE), yaml.safe_dump(run_info, sort_keys=False))
    p = beam.Pipeline(options=pipeline_options(recipe, beam_args or []))
    build_pipeline(p, recipe, out, created_at)
    log.info("running recipe %s into %s on %s", recipe.name, out, recipe.runner.runner)
    result = p.run()
    result.wait_until_finish()
    inputs = _counter(result, "inputs")
    manifest = read_manifest(out)
    write_index(out, manifest, recipe.name)
    run_info.update(
        {
            "finished_at": datetime.now(tz=UTC).replace(microsecond=0).isoformat(),
            "duration_s": round(time.time() - t0, 2),
            "prompt_sets": sorted(set(manifest.column("prompt_set").to_pylist())) if manifest.num_rows else [],
        }
    )
    stats = compute_stats(out, inputs, run_info, llm=None)
    write_stats(out, stats)
    write_card(out, stats, recipe_yaml or yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    return RunResult(out=out, stats=stats)


def _match_any(pattern: str) -> bool:
    try:
        return bool(FileSystems.match([pattern])[0].metadata_list)
    except Exception:  # noqa: BLE001
        return False
