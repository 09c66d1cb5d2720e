"""Attribute re-annotation by the LLM (Face-MLLM re-annotated LAION-Face this way): one request per
sample asks for a fixed vocabulary — CelebA's 40 attributes (Male as `gender`), expression, apparent
age range, glasses, occlusion and head pose (`labels.ANNOTATED`) — each with a value and a confidence,
as JSON under a strict schema. Runs before generation, on the endpoint, cache, budgets and retries of
`generation.openai` (the same RunInference machinery as the `openai` generator).

    items ─▶ RenderAnnotation ─▶ RunInference(OpenAIChatHandler) ─▶ AwaitOutcomes ─▶ ApplyAnnotation ─▶ items

The model is shown the image and nothing else: no dataset label, no face-model estimate, no alt-text,
so its answers can be compared with those (the card's agreement table). Every value goes to
`Sample.annotations` with source `model:<llm model>`; `attributes` gains those no label or face model
gave; a value that disagrees with a dataset label is kept as an `AttributeConflict` (the label wins).
`Provenance.annotation` says which model, prompt set and hash, and what it cost.

A failed request (after the client's retries and its one re-ask) does not reject the sample: it goes
on unannotated, flagged `annotation_failed:<reason>`. Values with a confidence outside [0, 1] or below
`generation.annotation.min_confidence` are left out (counted `annotate.dropped_values`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import apache_beam as beam
import jinja2

from ..errors import UserError
from ..execution import Execution
from ..labels import ANNOTATED, VOCABULARY, Category, Flag
from ..prompting.promptset import PromptSet
from ..prompting.render import (
    ImageOptions,
    PromptRequest,
    RenderedPrompt,
    image_data_url,
    user_content,
)
from ..recipe import Recipe
from ..records import AnnotationInfo, AttributeConflict, AttributeValue
from ..rejection import Rejected
from ..stage import Stage, WorkItem
from .config import GenerationConfig
from .handler import OpenAIChatHandler
from .llm_stage import RenderStage, image_options, render_ask_apply

SCHEMA_NAME = "FaceAttributes"


def meaning(name: str) -> tuple[str, str]:
    """(what the attribute is, its choices) as the prompt lists them."""
    decl = VOCABULARY[name]
    if isinstance(decl, Flag):
        return f"true when {decl.sentence(True)[:1].lower()}{decl.sentence(True)[1:-1]}", "true or false"
    assert isinstance(decl, Category)
    return f"the {decl.noun}", ", ".join(decl.values)


@lru_cache(maxsize=1)
def annotation_format() -> dict[str, Any]:
    """`response_format` of the annotation: one {value, confidence} object per attribute, all required."""
    properties: dict[str, Any] = {}
    for name in ANNOTATED:
        decl = VOCABULARY[name]
        value: dict[str, Any] = {"type": "boolean"} if isinstance(decl, Flag) else {"type": "string", "enum": list(decl.values)}
        properties[name] = {"type": "object", "properties": {"value": value, "confidence": {"type": "number"}},
                            "required": ["value", "confidence"], "additionalProperties": False}
    schema = {"type": "object", "properties": properties, "required": list(ANNOTATED), "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema}}


def render_annotation(prompt_set: PromptSet, jpeg: bytes | None, image: ImageOptions) -> RenderedPrompt:
    """The one request that annotates an item: its image, the attribute list, the schema."""
    image_url = image_data_url(jpeg, image) if (image.send and jpeg) else None
    listed = [{"name": n, "meaning": meaning(n)[0], "choices": meaning(n)[1]} for n in ANNOTATED]
    system = prompt_set.templates["system"].render(image_attached=image_url is not None).strip()
    user = prompt_set.templates["user"].render(image_attached=image_url is not None, attributes=listed).strip()
    request = PromptRequest(category=None, messages=[{"role": "system", "content": system},
                                                     {"role": "user", "content": user_content(user, image_url, image)}],
                            response_format=annotation_format())
    return RenderedPrompt.of(prompt_set, [request], image_attached=image_url is not None, mode="annotate")


def annotated_values(data: dict[str, Any], model: str, min_confidence: float) -> tuple[dict[str, AttributeValue], int]:
    """(attribute → value from the model's answer, how many values were left out)."""
    out: dict[str, AttributeValue] = {}
    dropped = 0
    for name in ANNOTATED:
        entry = data.get(name)
        decl = VOCABULARY[name]
        if not isinstance(entry, dict):
            dropped += 1
            continue
        value, confidence = entry.get("value"), entry.get("confidence")
        fits = isinstance(value, bool) if isinstance(decl, Flag) else (isinstance(value, str) and value in decl.values)  # type: ignore[union-attr]
        sure = isinstance(confidence, int | float) and not isinstance(confidence, bool) and 0.0 <= confidence <= 1.0
        if not fits or not sure or confidence < min_confidence:
            dropped += 1
            continue
        out[name] = AttributeValue(value=value, source=f"model:{model}", confidence=round(float(confidence), 4))
    return out, dropped


def merge_annotations(item: WorkItem, values: dict[str, AttributeValue]) -> None:
    """Annotations onto the item: all kept in `annotations`; into `attributes` where nothing else spoke;
    a disagreement with a dataset label kept as a conflict (the label wins)."""
    item.annotations = values
    merged = dict(item.attributes or item.labels)
    for name, v in values.items():
        known = merged.get(name)
        if known is None:
            merged[name] = v
        elif known.source == "label" and known.value != v.value:
            item.attribute_conflicts.append(AttributeConflict(attribute=name, label_value=known.value, model_value=v.value,
                                                              model=v.source.removeprefix("model:"),
                                                              confidence=v.confidence))
    item.attributes = merged


class RenderAnnotation(RenderStage):
    """Stage 'annotate': the item's annotation request (the image and the attribute list). Counted as
    `render_annotation` (ApplyAnnotation counts the stage's items)."""

    name = "annotate"
    counted_as = "render_annotation"

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        assert self._set is not None
        try:
            item.prompt = render_annotation(self._set, item.jpeg, image_options(self.cfg))
        except (jinja2.TemplateError, OSError) as e:
            raise Rejected("prompt_error", f"the annotation prompt could not be rendered: {e}"[:300]) from None
        yield item


class ApplyAnnotation(Stage):
    """Stage 'annotate': the model's values onto the item; a failed request flags it and lets it go on."""

    name = "annotate"

    def __init__(self, min_confidence: float) -> None:
        super().__init__()
        self.min_confidence = min_confidence

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        outcome, item.llm_outcome = item.llm_outcome, None
        prompt, item.prompt = item.prompt, None  # the prompt holds the base64 image; not needed downstream
        assert outcome is not None and prompt is not None  # RenderAnnotation and AwaitOutcomes ran first
        outcome.spend.flush()
        if outcome.failure is not None or outcome.data is None:
            reason = outcome.failure.reason if outcome.failure is not None else "llm_empty"
            self.counters.count(f"failed.{reason}")
            item.flags.append(f"annotation_failed:{reason}")
            yield item
            return
        model = outcome.llm_model or "unknown"
        values, dropped = annotated_values(outcome.data, model, self.min_confidence)
        if dropped:
            self.counters.count("dropped_values", dropped)
        merge_annotations(item, values)
        item.provenance.annotation = AnnotationInfo(llm_model=model, prompt_set=prompt.prompt_set,
                                                    prompt_version=prompt.prompt_version, prompt_sha256=prompt.sha256,
                                                    usage=outcome.usage)
        yield item


def annotation_config(recipe: Recipe) -> GenerationConfig:
    """The generation section as the annotation uses it: its endpoint and budgets, the annotation's
    prompt set and no categories (the pre-flight then checks only the annotation's prompt set)."""
    g = recipe.generation
    cfg = g.model_copy(update={"prompt_set": g.annotation.prompt_set, "categories": []}, deep=True)
    cfg.openai.max_tokens = g.annotation.max_tokens
    return cfg


def preflight_annotation(recipe: Recipe, execution: Execution) -> GenerationConfig:
    """The annotation's pre-flight (part of `preflight.preflight`, for the effective runner `execution`):
    the endpoint answers, the key is set, the prompt set loads and is of mode annotate; the settings as
    they will run. An endpoint that reads no images cannot annotate what it cannot see: one line, before the run."""
    from ..prompting.promptset import load_prompt_set
    from .preflight import preflight

    cfg = preflight(annotation_config(recipe), execution)
    if load_prompt_set(cfg.prompt_set, cfg.prompts_dir).mode != "annotate":
        raise UserError(f"generation.annotation.prompt_set: {cfg.prompt_set!r} is not a prompt set of mode annotate")
    if cfg.openai.image.send == "never":
        raise UserError(f"generation.annotation needs an endpoint that reads images; {cfg.openai.base_url} is used "
                        "text-only (the embedded local model, a text-only listing, or image.send: never)")
    return cfg


class AnnotateWithLLM(beam.PTransform):
    """The annotation stage: items → the same items with the LLM's attribute values (see the module)."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None, min_confidence: float, out: str | None = None) -> None:
        super().__init__()
        self.out = out  # the spend ledger's output (None: no ledger)
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.min_confidence = min_confidence

    def expand(self, items: beam.PCollection) -> dict[str, beam.PCollection]:
        handler = OpenAIChatHandler(self.cfg, self.cache_dir, "annotate", self.out, ledger_stage="annotate")
        return render_ask_apply(items, RenderAnnotation(self.cfg), handler, self.cfg, ApplyAnnotation(self.min_confidence))
