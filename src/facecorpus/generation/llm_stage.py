"""The `openai` generate stage as one composite transform: render → (Batch API) → RunInference → apply.

    items ─▶ RenderPrompts ─▶ [batch mode: BatchAPI fills the cache, side input] ─▶ RunInference(OpenAIChatHandler)
          ─▶ AwaitOutcomes ─▶ ApplyGeneration ─▶ main
      render and generate failures ─▶ rejects

RunInference's `request` only submits a batch (its results carry pending outcomes); AwaitOutcomes,
fused with it, lets each item go when its answers are in and blocks the input only while more than
`window` requests are pending. Requests of consecutive batches thus overlap, and rendering the next
batch happens while the pool is busy.

`GenerateWithLLM(...)` returns {'main': items with caption/QA, 'rejects': Reject records}.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
import jinja2
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.utils.windowed_value import WindowedValue

from ..errors import UserError
from ..prompting.promptset import PromptSet
from ..prompting.render import ImageOptions, RenderedPrompt, render_prompt
from ..prompting.rewrite import render_rewrite
from ..rejection import Rejected
from ..stage import REJECTS, Stage, WorkItem
from ..validation.config import JunkConfig
from ..validation.text_quality import JunkRules
from .client import PendingOutcome
from .config import GenerationConfig
from .handler import OpenAIChatHandler
from .outcome import BatchContext, GenerationOutcome
from .preflight import load_checked_prompt_set


def image_options(cfg: GenerationConfig) -> ImageOptions:
    i = cfg.openai.image
    return ImageOptions(
        send=i.send != "never", max_side=i.max_side, max_bytes=i.max_bytes, jpeg_quality=i.jpeg_quality, detail=i.detail,
        reencode=i.reencode,
    )


def render_item(item: WorkItem, prompt_set: PromptSet, cfg: GenerationConfig) -> RenderedPrompt:
    """The rendered prompt of one item (what `facecorpus prompts render` prints, too). A `rewrite` set
    first has the templates generator write the item's texts, then asks for each to be rephrased."""
    if prompt_set.mode == "rewrite":
        from .rewrite import template_texts

        source = template_texts(item, cfg.categories, cfg.seed)
        return render_rewrite(prompt_set, source.texts(), {q.category: q.question for q in source.qa}, source)
    # with image.reencode off the source's own JPEG goes (the image stage kept it), else the stored one
    jpeg = item.source_jpeg if not cfg.openai.image.reencode else None
    return render_prompt(
        prompt_set,
        cfg.categories,
        item.attributes or item.labels,
        jpeg or item.jpeg,
        item.source.text,
        image_options(cfg),
        item.faces[item.primary_face] if item.faces and item.primary_face is not None else None,
    )


class RenderStage(Stage):
    """The render step of an LLM stage: `cfg`'s prompt set, loaded once per worker (`setup`) into `_set`."""

    def __init__(self, cfg: GenerationConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._set: PromptSet | None = None

    def setup(self) -> None:
        from ..prompting.promptset import load_prompt_set

        self._set = load_prompt_set(self.cfg.prompt_set, self.cfg.prompts_dir)


class RenderPrompts(RenderStage):
    """The generate stage's first step: the item's requests, exactly as they will be sent, and the prompt
    hash. Its rejects carry `generate`, the stage's Beam label (as the annotate, paraphrase and judge
    stages' render steps carry theirs); its counters are `render.*`."""

    name = "generate"
    counted_as = "render"

    def setup(self) -> None:  # the generator's set is checked against its lock file
        self._set = load_checked_prompt_set(self.cfg)

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        assert self._set is not None
        try:
            prompt = render_item(item, self._set, self.cfg)
        except (jinja2.TemplateError, UserError) as e:
            raise Rejected("prompt_error", f"the prompt could not be rendered: {e}"[:300]) from None
        item.prompt = prompt
        item.source_jpeg = None  # in the rendered request now; not needed downstream
        item.provenance.prompt_set = prompt.prompt_set
        item.provenance.prompt_version = prompt.prompt_version
        item.provenance.prompt_sha256 = prompt.sha256
        yield item


class AwaitOutcomes(beam.DoFn):
    """PredictionResults with pending outcomes → items with their outcome, in the order they finish.

    At most `window` requests are pending (beyond it, `process` waits for answers, which holds back
    RunInference and the rendering before it); `finish_bundle` waits for the rest. Must run fused
    with RunInference (a PendingOutcome is a live object, not data): a ParDo right after it is.
    """

    def __init__(self, window: int) -> None:
        self.window = window

    def start_bundle(self) -> None:
        self._done: queue.SimpleQueue[tuple[WorkItem, PendingOutcome, Any, Any]] = queue.SimpleQueue()
        self._pending = 0

    def process(
        self, result: PredictionResult, timestamp: Any = beam.DoFn.TimestampParam, window: Any = beam.DoFn.WindowParam
    ) -> Iterator[WindowedValue]:
        pending: PendingOutcome = result.inference
        self._pending += pending.requests
        entry = (result.example, pending, timestamp, window)
        pending.add_done_callback(lambda _: self._done.put(entry))
        while True:  # what has finished goes now; wait only while over the window
            try:
                yield self._release(self._done.get(block=self._pending > self.window))
            except queue.Empty:
                return

    def finish_bundle(self) -> Iterator[WindowedValue]:
        while self._pending:
            yield self._release(self._done.get())

    def _release(self, entry: tuple[WorkItem, PendingOutcome, Any, Any]) -> WindowedValue:
        item, pending, timestamp, window = entry
        self._pending -= pending.requests
        item.llm_outcome = pending.outcome()
        return WindowedValue(item, timestamp, (window,))


class ApplyGeneration(Stage):
    """Stage 'generate': the LLM outcome onto the item, or a reject with the failure's reason. For a
    `rewrite` prompt set, each text is its rewrite when faithful and clean, else its template text
    (`generation/rewrite.py`); `junk` are the recipe's junk checks that gate the rewrites."""

    name = "generate"

    def __init__(self, cfg: GenerationConfig | None = None, junk: JunkConfig | None = None,
                 age_tolerance: int = 2) -> None:
        super().__init__()
        self.on_unfaithful = cfg.rewrite.on_unfaithful if cfg is not None else "template"
        self.junk_config = junk or JunkConfig()
        self.prompts_dir = cfg.prompts_dir if cfg is not None else None
        self.age_tolerance = age_tolerance
        self._junk: JunkRules | None = None

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        outcome, item.llm_outcome = item.llm_outcome, None
        assert outcome is not None
        prompt, item.prompt = item.prompt, None  # holds the base64 image; not needed downstream
        item.batch = None
        outcome.spend.flush()  # Beam counters only count on the DoFn's own thread
        if outcome.failure is not None:
            raise Rejected.of(outcome.failure)
        item.provenance.generator = "openai"
        item.provenance.llm_model = outcome.llm_model
        item.provenance.usage = outcome.usage
        item.flags.extend(outcome.flags)
        if outcome.rewrites is not None and prompt is not None:
            yield self._rewritten(item, prompt, outcome)
            return
        item.caption = outcome.caption
        item.qa = outcome.qa
        yield item

    def _rewritten(self, item: WorkItem, prompt: RenderedPrompt, outcome: GenerationOutcome) -> WorkItem:
        from .rewrite import FALLBACK, REWRITTEN, choose_texts, known_labels, lost_requests

        if self._junk is None:
            self._junk = JunkRules.for_config(self.junk_config, self.prompts_dir)
        choice = choose_texts(prompt.rewrite_from, outcome.rewrites or {}, outcome.rewrite_failures, known_labels(item),
                              self._junk, self.on_unfaithful, self.age_tolerance)
        item.caption, item.qa = choice.caption, choice.qa
        item.flags.extend(choice.flags)
        item.provenance.text_sources = choice.text_sources
        for flag in choice.flags:
            if flag.startswith((REWRITTEN, FALLBACK)):
                self.counters.count("rewrite." + flag.replace(":", "."))
        self.counters.count("rewrite.requests", len(prompt.requests))
        for reason in lost_requests(outcome.rewrite_failures):  # the endpoint's failures: LLM work lost
            self.counters.count(f"rewrite.lost.{reason}")
        return item


def _attach_batch_context(item: WorkItem, reports: list[dict[str, Any]]) -> WorkItem:
    failures: dict[str, str] = {}
    fresh: set[str] = set()
    for r in reports:
        failures.update(r.get("failures", {}))
        fresh.update(r.get("fresh_batch_ids", []))
    item.batch = BatchContext(failures=failures, fresh_batch_ids=frozenset(fresh))
    return item


def pending_window(handler: OpenAIChatHandler, cfg: GenerationConfig) -> int:
    """Requests allowed to wait for answers at once: four pools' worth beyond a batch, so the pool stays
    busy while the next batch is rendered and submitted."""
    return handler.batch_requests + 4 * cfg.openai.concurrency


def call_llm(ready: beam.PCollection, handler: OpenAIChatHandler, cfg: GenerationConfig) -> beam.PCollection:
    """Rendered items → the same items with their LLM outcome: RunInference(handler), then AwaitOutcomes
    fused with it (at most `pending_window` requests waiting)."""
    return (
        ready
        | "CallLLM" >> RunInference(handler)
        | "AwaitOutcomes" >> beam.ParDo(AwaitOutcomes(window=pending_window(handler, cfg)))
    )


def render_ask_apply(
    items: beam.PCollection, render: Stage, handler: OpenAIChatHandler, cfg: GenerationConfig, apply: Stage,
    prepare: Callable[[beam.PCollection], beam.PCollection] | None = None,
) -> dict[str, beam.PCollection]:
    """The body of an LLM stage (generate, annotate, judge): `render` each item's requests, `prepare`
    them (the Batch API), `call_llm`, `apply` the answers; {'main', 'rejects'} with the rejects of
    `render` and `apply`. Inside the stage's composite: labels `render`, `CallLLM`, `AwaitOutcomes`,
    `apply`, `rejects`."""
    rendered = items | "render" >> beam.ParDo(render).with_outputs(REJECTS, main="main")
    ready = rendered["main"] if prepare is None else prepare(rendered["main"])
    applied = call_llm(ready, handler, cfg) | "apply" >> beam.ParDo(apply).with_outputs(REJECTS, main="main")
    rejects = (rendered[REJECTS], applied[REJECTS]) | "rejects" >> beam.Flatten()
    return {"main": applied["main"], REJECTS: rejects}


class GenerateWithLLM(beam.PTransform):
    """The generate stage with an OpenAI-compatible endpoint (online or Batch API)."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None, out: str | None = None,
                 junk: JunkConfig | None = None, age_tolerance: int = 2) -> None:
        super().__init__()
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.out = out
        self.junk = junk
        self.age_tolerance = age_tolerance
        self.prompt_mode = load_checked_prompt_set(cfg).mode

    def expand(self, items: beam.PCollection) -> dict[str, beam.PCollection]:
        handler = OpenAIChatHandler(self.cfg, self.cache_dir, self.prompt_mode, self.out)
        return render_ask_apply(items, RenderPrompts(self.cfg), handler, self.cfg,
                                ApplyGeneration(self.cfg, self.junk, self.age_tolerance),
                                prepare=self._batch if self.cfg.mode == "batch" else None)

    def _batch(self, ready: beam.PCollection) -> beam.PCollection:
        """Batch mode: the Batch API fills the cache first; its report reaches each item (side input)."""
        from .batch import SubmitBatches

        reports = ready | "BatchAPI" >> SubmitBatches(self.cfg, self.cache_dir, self.out)
        return ready | "AwaitBatches" >> beam.Map(_attach_batch_context, beam.pvalue.AsList(reports))
