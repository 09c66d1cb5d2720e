"""Builds and runs the Beam graph for a recipe. The only place where stages meet.

    sources ─▶ image check ─▶ (dedup) ─▶ finish image ─▶ faces ─▶ generate ─▶ validate ─▶ shards + manifest
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
from .generation.accounting import llm_totals, sum_llm_totals, with_ledger
from .generation.ledger import ledger_totals
from .generation.templates import GenerateFromTemplates
from .image_check import CheckImage, FinishImage
from .recipe import Recipe
from .runners import is_local_runner
from .sinks.shards import SHARDS_DIR, TMP_DIR, WriteShards, reject_line, remove_staging
from .sinks.summary import (
    REJECTS_DIR,
    compute_stats,
    read_manifest,
    write_card,
    write_index,
    write_stats,
)
from .sources.config import SourceConfig
from .stage import METRICS_NAMESPACE, REJECTS
from .validation.assemble import AssembleSample
from .validation.holdout import check_holdout_lists
from .validation.record_checks import rules_for
from .validation.resume import (
    DropRecordedRejects,
    OutputState,
    ReadFinishedHashes,
    ReadFinishedKeys,
    SkipFinished,
    open_output,
    write_run_info,
)
from .validation.screen import Screen, screening_needed

log = logging.getLogger("facecorpus")

# ------------------------------------------------------------------------------------------------ hooks

def source_transform(cfg: SourceConfig, finished: beam.PCollection | None = None) -> beam.PTransform:
    """Hook (sources): the PTransform that reads one recipe source (the source config names it).

    `finished` (when resuming: (key, status) pairs of what the output already holds) goes to sources
    that can skip costly work for those keys before doing it (LAION: the download).
    """
    return cfg.reader(finished)


def image_transform(recipe: Recipe) -> beam.PTransform:
    """Hook (image check)."""
    return beam.ParDo(CheckImage(recipe.image)).with_outputs(REJECTS, main="main")


def finish_image_transform(recipe: Recipe, faces: bool) -> beam.PTransform:
    """Hook (image check, after dedup): the stored JPEG of every item; its pixels when a later stage reads
    them (the face stage; the templates generator measures brightness, contrast and sharpness)."""
    pixels = faces or recipe.generation.generator == "templates"
    return beam.ParDo(FinishImage(recipe.image, pixels)).with_outputs(REJECTS, main="main")


def faces_transform(recipe: Recipe) -> beam.PTransform | None:
    """Hook (faces): None when the recipe asks for no face analysis and no source can give face boxes
    (with `backend: none` the stage only turns given boxes into faces)."""
    from .faces.stage import faces_stage

    if recipe.faces.backend == "none" and not any(s.gives_faces for s in recipe.sources):
        return None
    return faces_stage(recipe.faces, recipe.image.jpeg_quality)


def generation_transform(recipe: Recipe, out: str | None = None) -> beam.PTransform:
    """Hook (generation): the templates generator, or the OpenAI-compatible one (pre-flight checked here)."""
    g = recipe.generation
    if g.generator == "openai":
        from .generation.transform import GenerateWithLLM

        return GenerateWithLLM.from_recipe(recipe, out)
    if g.generator == "labels":
        from .generation.label_qa import GenerateFromLabels, settings_of
        from .sources.labelled_config import sources_vocabulary

        stage = GenerateFromLabels(g.categories, g.seed, settings_of(g.labels), sources_vocabulary(recipe.sources))
        return beam.ParDo(stage).with_outputs(REJECTS, main="main")
    return beam.ParDo(GenerateFromTemplates(g.categories, g.seed)).with_outputs(REJECTS, main="main")


def annotation_transform(recipe: Recipe) -> beam.PTransform | None:
    """Hook (generation, before it): the LLM's attribute re-annotation, when the recipe asks for it
    (pre-flight checked here); None otherwise."""
    if not recipe.generation.annotation.enabled:
        return None
    from .generation.annotation import AnnotateWithLLM

    return AnnotateWithLLM.from_recipe(recipe)


def validation_transform(recipe: Recipe, created_at: datetime) -> beam.PTransform:
    """Hook (validation): WorkItem → ShardSample (schema-valid record + JPEG), held to the record rules."""
    return beam.ParDo(AssembleSample(recipe.name, recipe.sha256(), __version__, created_at, rules_for(recipe))).with_outputs(
        REJECTS, main="main"
    )


def screening_transform(
    recipe: Recipe, out: str, staging: bool, finished: beam.PCollection | None, recorded: beam.PCollection | None = None
) -> beam.PTransform | None:
    """Hook (validation, before faces and generation): dedup and hold-out; None when the recipe asks for neither."""
    if not screening_needed(recipe.validation):
        return None
    return Screen(recipe.validation, out, staging, finished, recorded)


def prepare(recipe: Recipe) -> None:
    """Hook (pre-flight): checks that must fail before a run starts (missing model packs, endpoints…)."""
    from .faces.stage import check_ready

    check_ready(recipe.faces)
    check_holdout_lists(recipe.validation.holdout.lists)
    from .sources.labelled_config import sources_vocabulary

    try:
        sources_vocabulary(recipe.sources)
    except ValueError as e:
        raise UserError(f"recipe {recipe.name}: {e}") from None


# ------------------------------------------------------------------------------------------------ graph


def _apply(pcoll: beam.PCollection, transform: beam.PTransform, label: str, rejects: list) -> beam.PCollection:
    result = pcoll | label >> transform
    rejects.append(result[REJECTS])  # REJECTS == "rejects": ParDo outputs and composite dicts alike
    return result["main"]


def staging_for(recipe: Recipe) -> bool:
    """True when items wait in staging files rather than in the runner's shuffle (local runners)."""
    o = recipe.output
    return o.grouping == "staging" or (o.grouping == "auto" and is_local_runner(recipe.runner.runner))


def build_pipeline(
    p: beam.Pipeline, recipe: Recipe, out: str, created_at: datetime, state: OutputState | None = None
) -> None:
    """The whole graph. With `state` resuming an output, finished keys are skipped and their rejects not repeated."""
    rejects: list[beam.PCollection] = []
    mains = []
    finished = p | "FinishedKeys" >> ReadFinishedKeys(state) if state is not None and state.resuming else None
    for i, src in enumerate(recipe.sources):
        result = p | f"Source{i}-{src.type}" >> source_transform(src, finished)
        mains.append(result["main"])
        rejects.append(result["rejects"])
    items = mains[0] if len(mains) == 1 else tuple(mains) | "AllSources" >> beam.Flatten()
    staging = staging_for(recipe)
    resume_dedup = finished is not None and screening_needed(recipe.validation)
    recorded = p | "FinishedHashes" >> ReadFinishedHashes(state) if resume_dedup else None
    screen = screening_transform(recipe, out, staging, finished, recorded)
    if finished is not None and screen is None:
        # nothing needs every image's hashes: finished inputs are skipped before they are even decoded
        items = items | "SkipFinished" >> beam.ParDo(SkipFinished(), finished=beam.pvalue.AsMultiMap(finished))
    items = _apply(items, image_transform(recipe), "CheckImage", rejects)
    if screen is not None:
        items = _apply(items, screen, "Screen", rejects)  # skips finished keys too
    faces = faces_transform(recipe)
    items = _apply(items, finish_image_transform(recipe, faces=faces is not None), "FinishImage", rejects)
    if faces is not None:
        items = _apply(items, faces, "Faces", rejects)
        if finished is not None:  # one sample per face: those keys are only known now
            items = items | "SkipFinishedFaces" >> beam.ParDo(SkipFinished(), finished=beam.pvalue.AsMultiMap(finished))
    annotate = annotation_transform(recipe)
    if annotate is not None:
        items = _apply(items, annotate, "Annotate", rejects)
    items = _apply(items, generation_transform(recipe, out), "Generate", rejects)
    samples = _apply(items, validation_transform(recipe, created_at), "Validate", rejects)
    o = recipe.output
    shard_prefix = state.shard_prefix if state is not None else "shard"
    _ = samples | "WriteShards" >> WriteShards(out, o.samples_per_shard, o.max_shard_bytes, staging=staging,
                                               name_prefix=shard_prefix)
    all_rejects = tuple(rejects) | "AllRejects" >> beam.Flatten()
    if finished is not None:
        all_rejects = all_rejects | "DropRecordedRejects" >> DropRecordedRejects(state, finished)
    (
        all_rejects
        | "RejectLines" >> beam.Map(reject_line)
        | "WriteRejects"
        >> beam.io.WriteToText(
            FileSystems.join(out, REJECTS_DIR, state.rejects_prefix if state is not None else "rejects"),
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


def run_recipe(
    recipe: Recipe,
    out: str,
    beam_args: list[str] | None = None,
    recipe_yaml: str | None = None,
    resume: bool = False,
    new_version: bool = False,
    retry_rejects: bool = False,
) -> RunResult:
    """Run a recipe to completion into `out`, then write stats.json, index.json and the dataset card.

    `resume` finishes an earlier run of the same recipe in `out` (see validation/resume.py);
    `new_version` lets it continue under a changed recipe or prompts; `retry_rejects` also re-runs
    the inputs whose rejects are retryable.
    """
    prepare(recipe)
    created_at = run_started_at()
    t0 = time.time()
    state = open_output(recipe, out, created_at, resume=resume, new_version=new_version, retry_rejects=retry_rejects)
    staging_dir = FileSystems.join(out, SHARDS_DIR, TMP_DIR, "staging")
    if not FileSystems.exists(staging_dir):
        FileSystems.mkdirs(staging_dir)
    p = beam.Pipeline(options=pipeline_options(recipe, beam_args or []))
    build_pipeline(p, recipe, out, created_at, state)
    log.info("running recipe %s into %s on %s (attempt %d)", recipe.name, out, recipe.runner.runner, state.attempt)
    result = p.run()
    result.wait_until_finish()
    remove_staging(out)  # one call for every staged file: nothing in the pipeline deletes them (retries)
    inputs = _counter(result, "inputs")
    manifest = read_manifest(out)
    write_index(out, manifest, recipe.name)
    finished_at = datetime.now(tz=UTC).replace(microsecond=0).isoformat()
    # LLM spend comes from this attempt's Beam counters (it includes answers for samples later rejected);
    # run.json keeps each attempt's, and stats.json sums them: a resumed output reports what it all cost
    llm = llm_totals(result) if recipe.generation.generator == "openai" else None
    info = dict(state.run_info)
    info["attempts"][-1].update({"finished_at": finished_at, "duration_s": round(time.time() - t0, 2)})
    if llm is not None:
        info["attempts"][-1]["llm"] = llm
    recipe_text = recipe_yaml or yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    info["recipe_yaml"] = recipe_text  # the card shows it; `facecorpus stats --write` re-reads it from here
    write_run_info(out, info)
    run_info = {k: v for k, v in info.items() if k not in ("recipe_json", "recipe_yaml")}
    run_info.update(
        {
            "started_at": created_at.isoformat(),
            "finished_at": finished_at,
            "duration_s": round(time.time() - t0, 2),
            "prompt_sets": sorted(set(manifest.column("prompt_set").to_pylist())) if manifest.num_rows else [],
        }
    )
    llm_all = sum_llm_totals([a["llm"] for a in info["attempts"] if "llm" in a]) if llm is not None else None
    if llm_all is not None:
        # what was sent and paid for, from the spend ledger: it survives kills, the counters of a killed
        # attempt do not (generation/ledger.py)
        llm_all = with_ledger(llm_all, ledger_totals(out))
    stats = compute_stats(out, inputs, run_info, llm=llm_all)
    write_stats(out, stats)
    write_card(out, stats, recipe_text, plots=recipe.output.card.plots)
    return RunResult(out=out, stats=stats)
