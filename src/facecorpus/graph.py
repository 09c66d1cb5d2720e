"""The Beam graph of a recipe: the only place where stages meet.

    source ─▶ image ─▶ dedup ─▶ finish_image ─▶ faces ─▶ [annotate] ─▶ generate ─▶ [paraphrase] ─▶ validate ─▶ [judge] ─▶ shards + manifest
      └────────┴────────┴──────────┴────────────┴─────────┴────────────┴────────────┴──────────────┴──────────┴──▶ rejects/*.jsonl
    [annotate], [paraphrase], [judge]: only when the recipe enables them (generation.annotation / .paraphrase / .judge)

`build_front` builds the graph up to generation, for the run and for `prompts render` (which renders the
prompts of what it yields, `prompts_until_generation`); `build_pipeline` the whole graph. Each stage is
applied through `_apply`, which expects a mapping with 'main' and 'rejects', under a Beam label equal
to the stage name its rejects carry. One hook function per area builds that area's transform from the
recipe. pipeline.py runs the graph.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from . import __version__
from .execution import Execution, execution_for
from .generation.templates import GenerateFromTemplates
from .image_check import CheckImage, FinishImage
from .output.finished import DropRecordedRejects, ReadFinishedHashes, ReadFinishedKeys, SkipFinished
from .output.layout import REJECTS_DIR
from .output.resume import OutputState
from .preflight import DRY_RUN_RUNNER, Checked, preflight
from .recipe import Recipe
from .sinks.finalize import FinalizeInJob
from .sinks.shards import WriteShards, reject_line
from .sources.config import SourceConfig
from .stage import REJECTS
from .validation.assemble import ValidateSample
from .validation.dedup_stage import Dedup, dedup_needed
from .validation.record_checks import rules_for

log = logging.getLogger("facecorpus")

# ------------------------------------------------------------------------------------------------ hooks
# One per area: the area's transform for a recipe. Their Beam labels are the stage names that their
# reject lines and counters carry (source, image, dedup, faces, annotate, generate, paraphrase, validate).


def source_transform(cfg: SourceConfig, finished: beam.PCollection | None = None) -> beam.PTransform:
    """Hook (sources): the PTransform that reads one recipe source (the source config names it).

    `finished` (when resuming: (key, status) pairs of what the output already holds) goes to sources
    that can skip costly work for those keys before doing it (LAION: the download).
    """
    return cfg.reader(finished)


class ReadSources(beam.PTransform):
    """Stage `source`: every recipe source (`<i>-<type>` inside it), their items and rejects flattened."""

    def __init__(self, sources: list[SourceConfig], finished: beam.PCollection | None) -> None:
        super().__init__()
        self.sources = sources
        self.finished = finished

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        mains, rejects = [], []
        for i, src in enumerate(self.sources):
            result = pbegin | f"{i}-{src.type}" >> source_transform(src, self.finished)
            mains.append(result["main"])
            rejects.append(result[REJECTS])
        if len(mains) == 1:
            return {"main": mains[0], REJECTS: rejects[0]}
        return {"main": tuple(mains) | "AllSources" >> beam.Flatten(), REJECTS: tuple(rejects) | "AllRejects" >> beam.Flatten()}


def image_transform(recipe: Recipe) -> beam.PTransform:
    """Hook (image check). The source's own JPEG bytes are kept for generation only when it sends them
    unchanged (`generation.openai.image.reencode: false`)."""
    g = recipe.generation
    keep = g.generator == "openai" and not g.openai.image.reencode
    return beam.ParDo(CheckImage(recipe.image, keep_source_jpeg=keep)).with_outputs(REJECTS, main="main")


def finish_image_transform(recipe: Recipe, faces: bool) -> beam.PTransform:
    """Hook (image check, after dedup): the stored JPEG of every item; its pixels when a later stage reads
    them (the face stage; the templates generator measures brightness, contrast and sharpness)."""
    pixels = faces or recipe.generation.generator == "templates"
    return beam.ParDo(FinishImage(recipe.image, pixels)).with_outputs(REJECTS, main="main")


def dedup_transform(
    recipe: Recipe, out: str, staging: bool, finished: beam.PCollection | None, recorded: beam.PCollection | None = None
) -> beam.PTransform | None:
    """Hook (dedup, before faces and generation): duplicates and hold-out matches; None when the recipe
    asks for neither."""
    if not dedup_needed(recipe.validation):
        return None
    return Dedup(recipe.validation, out, staging, finished, recorded)


def faces_transform(recipe: Recipe) -> beam.PTransform | None:
    """Hook (faces): None when the recipe asks for no face analysis and no source can give face boxes
    (with `backend: none` the stage only turns given boxes into faces)."""
    if recipe.faces.backend == "none" and not any(s.gives_faces for s in recipe.sources):
        return None
    # imported only now: it imports Beam's RunInference, which imports torch (~2 s CPU)
    from .faces.face_stage import FaceStage

    return FaceStage(recipe.faces, recipe.image.jpeg_quality)


def generation_transform(recipe: Recipe, checked: Checked, out: str | None = None) -> beam.PTransform:
    """Hook (generate): the templates generator, or the OpenAI-compatible one as pre-flight decided it."""
    g = recipe.generation
    if g.generator == "openai":
        from .generation.llm_stage import GenerateWithLLM

        v = recipe.validation  # the junk checks gate the rewrite mode's rewrites
        return GenerateWithLLM(checked.generation, checked.cache_dir, out, v.junk, v.age_tolerance_years)
    if g.generator == "labels":
        from .generation.label_qa import GenerateFromLabels, settings_of
        from .sources.labelled_config import sources_vocabulary

        stage = GenerateFromLabels(g.categories, g.seed, settings_of(g.labels), sources_vocabulary(recipe.sources))
        return beam.ParDo(stage).with_outputs(REJECTS, main="main")
    return beam.ParDo(GenerateFromTemplates(g.categories, g.seed)).with_outputs(REJECTS, main="main")


def paraphrase_transform(recipe: Recipe, checked: Checked, out: str | None = None) -> beam.PTransform | None:
    """Hook (paraphrase, after generate): the LLM's rewording of label questions, as pre-flight decided
    it; None when the recipe does not ask for it."""
    if checked.paraphrase is None:
        return None
    from .generation.paraphrase import ParaphraseWithLLM

    return ParaphraseWithLLM(checked.paraphrase, checked.paraphrase_cache_dir, recipe.generation.paraphrase.categories, out)


def annotation_transform(checked: Checked, out: str | None = None) -> beam.PTransform | None:
    """Hook (annotate, before generate): the LLM's attribute re-annotation as pre-flight decided it;
    None when the recipe does not ask for it."""
    if checked.annotation is None:
        return None
    from .generation.annotation import AnnotateWithLLM

    return AnnotateWithLLM(checked.annotation, checked.annotation_cache_dir, checked.annotation_min_confidence, out)


def judge_transform(recipe: Recipe, checked: Checked, out: str | None = None) -> beam.PTransform | None:
    """Hook (judge, after validate): the optional LLM judge as pre-flight decided it; None when off."""
    if checked.judge is None:
        return None
    from .generation.judge import JudgeSamples

    return JudgeSamples(checked.judge, checked.judge_cache_dir, recipe.generation.judge, out)


def uses_llm(recipe: Recipe) -> bool:
    """True when any stage of the run asks an LLM (generation, annotation, paraphrase, the judge)."""
    g = recipe.generation
    return g.generator == "openai" or g.annotation.enabled or g.paraphrase.enabled or g.judge.enabled


def validate_transform(recipe: Recipe, created_at: datetime) -> beam.PTransform:
    """Hook (validate): WorkItem → ShardSample (schema-valid record + JPEG), held to the record rules."""
    return beam.ParDo(ValidateSample(recipe.name, recipe.sha256(), __version__, created_at, rules_for(recipe))).with_outputs(
        REJECTS, main="main"
    )


# ------------------------------------------------------------------------------------------------ graph


def _apply(pcoll: beam.PCollection, transform: beam.PTransform, label: str, rejects: list) -> beam.PCollection:
    result = pcoll | label >> transform
    rejects.append(result[REJECTS])  # REJECTS == "rejects": ParDo outputs and composite dicts alike
    return result["main"]


def staging_for(recipe: Recipe, execution: Execution | None = None) -> bool:
    """True when items wait in staging files rather than in the runner's shuffle: runners whose workers
    run on this machine (FnApiRunner underneath) hold a shuffle's whole input in memory."""
    o = recipe.output
    if execution is None:
        execution = execution_for(recipe.runner.runner, recipe.runner.options, [])
    return o.grouping == "staging" or (o.grouping == "auto" and execution.workers_local)


@dataclass
class Front:
    """The graph up to generation: the items ready for it, every reject so far, and (resuming) the
    keys the output already holds."""

    items: beam.PCollection
    rejects: list[beam.PCollection]
    finished: beam.PCollection | None


def build_front(p: beam.Pipeline, recipe: Recipe, out: str, staging: bool, state: OutputState | None = None) -> Front:
    """sources → image → dedup → finish_image → faces, as a run builds it and `prompts render` runs it (so what it shows
    and estimates is what a run would send: duplicates and held-out images are dropped). With `state`
    resuming an output, finished keys are skipped."""
    rejects: list[beam.PCollection] = []
    finished = p | "FinishedKeys" >> ReadFinishedKeys(state) if state is not None and state.resuming else None
    items = _apply(p, ReadSources(recipe.sources, finished), "source", rejects)
    resume_dedup = finished is not None and dedup_needed(recipe.validation)
    recorded = p | "FinishedHashes" >> ReadFinishedHashes(state) if resume_dedup else None
    dedup = dedup_transform(recipe, out, staging, finished, recorded)
    if finished is not None and dedup is None:
        # nothing needs every image's hashes: finished inputs are skipped before they are even decoded
        items = items | "SkipFinished" >> beam.ParDo(SkipFinished(), finished=beam.pvalue.AsMultiMap(finished))
    items = _apply(items, image_transform(recipe), "image", rejects)
    if dedup is not None:
        items = _apply(items, dedup, "dedup", rejects)  # skips finished keys too
    faces = faces_transform(recipe)
    # the image check's second step (its rejects carry stage `finish_image`, its label)
    items = _apply(items, finish_image_transform(recipe, faces=faces is not None), "finish_image", rejects)
    if faces is not None:
        items = _apply(items, faces, "faces", rejects)
        if finished is not None:  # one sample per face: those keys are only known now
            items = items | "SkipFinishedFaces" >> beam.ParDo(SkipFinished(), finished=beam.pvalue.AsMultiMap(finished))
    return Front(items, rejects, finished)


def build_pipeline(
    p: beam.Pipeline, recipe: Recipe, out: str, created_at: datetime, checked: Checked, state: OutputState | None = None,
    execution: Execution | None = None, finalize_in_job: bool = False,
) -> None:
    """The whole graph (`checked`: what pre-flight decided). With `state` resuming an output, finished
    keys are skipped and their rejects not repeated. `execution`: the effective runner (default: the
    recipe's, without command-line options). `finalize_in_job`: the job writes index.json, stats.json
    and the card itself once the shards and rejects are written (a detached run: sinks/finalize.py)."""
    staging = staging_for(recipe, execution)
    front = build_front(p, recipe, out, staging, state)
    rejects, finished = front.rejects, front.finished
    items = front.items
    annotate = annotation_transform(checked, out)
    if annotate is not None:
        items = _apply(items, annotate, "annotate", rejects)
    items = _apply(items, generation_transform(recipe, checked, out), "generate", rejects)
    paraphrase = paraphrase_transform(recipe, checked, out)
    if paraphrase is not None:
        items = _apply(items, paraphrase, "paraphrase", rejects)
    samples = _apply(items, validate_transform(recipe, created_at), "validate", rejects)
    judge = judge_transform(recipe, checked, out)
    if judge is not None:
        samples = _apply(samples, judge, "judge", rejects)
    o = recipe.output
    shard_prefix = state.shard_prefix if state is not None else "shard"
    shards = samples | "WriteShards" >> WriteShards(out, o.samples_per_shard, o.max_shard_bytes, staging=staging,
                                               name_prefix=shard_prefix)
    all_rejects = tuple(rejects) | "AllRejects" >> beam.Flatten()
    if finished is not None:
        all_rejects = all_rejects | "DropRecordedRejects" >> DropRecordedRejects(state, finished)
    reject_files = (
        all_rejects
        | "RejectLines" >> beam.Map(reject_line)
        | "WriteRejects"
        >> beam.io.WriteToText(
            FileSystems.join(out, REJECTS_DIR, state.rejects_prefix if state is not None else "rejects"),
            file_name_suffix=".jsonl",
            num_shards=recipe.output.rejects_shards,
            shard_name_template="-SSSSS-of-NNNNN",
            skip_if_empty=True,  # a resume with no new rejects writes no (empty) file
        )
    )
    if finalize_in_job:
        _ = (shards, reject_files) | "Finalize" >> FinalizeInJob(out)


def prompts_until_generation(recipe: Recipe, key: str | None = None) -> list[dict[str, Any]]:
    """Run the front of the graph and render the prompts of every LLM stage before validation on this
    machine, calling nothing: one JSON row per item and stage (`annotate`, `generate`, `paraphrase`)
    that would reach it (`key`: only that sample, with its request bodies; see generation/dry_run.py).
    The annotation is rendered from the front's items and generation without the annotation's values
    (which only an answer gives); the paraphrase after the labels generator, which calls nothing."""
    import copy

    from .generation.dry_run import Describe
    from .generation.llm_stage import RenderPrompts

    checked = preflight(recipe, dry_run=True)
    g = recipe.generation
    with tempfile.TemporaryDirectory(prefix="facecorpus-render-") as tmp:
        with beam.Pipeline(options=PipelineOptions([f"--runner={DRY_RUN_RUNNER}"])) as p:
            items = build_front(p, recipe, tmp, staging_for(recipe, execution_for(DRY_RUN_RUNNER, [], []))).items
            if key is not None:
                items = items | "OnlyKey" >> beam.Filter(lambda it, k=key: it.key == k)
            stages: list[tuple[str, Any, Any, str | None]] = []  # (stage, render DoFn, its settings, cache)
            if checked.annotation is not None:
                from .generation.annotation import RenderAnnotation

                stages.append(("annotate", RenderAnnotation(checked.annotation), checked.annotation,
                               checked.annotation_cache_dir))
            if g.generator == "openai":
                stages.append(("generate", RenderPrompts(checked.generation), checked.generation, checked.cache_dir))
            described = []
            for stage, render, cfg, cache_dir in stages:  # each stage renders its own copy of the items
                rendered = (items | f"Copy_{stage}" >> beam.Map(copy.deepcopy)
                            | f"render_{stage}" >> beam.ParDo(render).with_outputs(REJECTS, main="main"))
                described.append(rendered["main"] | f"Describe_{stage}" >> beam.ParDo(Describe(cfg, cache_dir, key, stage)))
            if checked.paraphrase is not None:
                from .generation.paraphrase import RenderParaphrase

                generated = _apply(items, generation_transform(recipe, checked, tmp), "generate", [])
                rendered = (generated | "render_paraphrase" >> beam.ParDo(RenderParaphrase(
                    checked.paraphrase, g.paraphrase.categories)).with_outputs(REJECTS, main="main"))
                asking = rendered["main"] | "NeedsParaphrase" >> beam.Filter(lambda it: it.prompt is not None)
                described.append(asking | "Describe_paraphrase" >> beam.ParDo(
                    Describe(checked.paraphrase, checked.paraphrase_cache_dir, key, "paraphrase")))
            if described:
                _ = (described | "AllStages" >> beam.Flatten()
                     | "Write" >> beam.io.WriteToText(str(Path(tmp) / "rendered"), file_name_suffix=".jsonl"))
        rows = []
        for f in sorted(Path(tmp).glob("rendered*.jsonl")):
            rows += [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    order = {"annotate": 0, "generate": 1, "paraphrase": 2}
    return sorted(rows, key=lambda r: (r["key"], order.get(r.get("stage", "generate"), 9)))
