"""The optional LLM paraphrase of label-derived questions (`generation.paraphrase`), the question only.

The `labels` generator writes every question from a few fixed forms; a model trained on them learns
the forms. Here the LLM of `generation.openai` rewords each question's stem — for a multiple-choice
question only the line before its options: the `A.`–`D.` lines and the instruction are never sent
and are put back as they were — and every rewording is held to the original before it replaces it:

    items (after generate) ─▶ RenderParaphrase ─▶ RunInference(OpenAIChatHandler) ─▶ AwaitOutcomes
        ─▶ ApplyParaphrase (check_paraphrase per question; kept or the original stays) ─▶ validate

`check_paraphrase` keeps the **options** (no option letter or option text in the stem, the options
re-attached verbatim, so the answer check reads the same options) and the **meaning**: the value a
yes/no question asks about stays in it (its content words), no other value of the attribute and no
new number comes in, no negation is added or dropped, a yes/no question stays a yes/no question and an
open or multiple-choice one does not become one; one line, a question mark, no markup or talk about
the task. The answer is never sent and never changes. A refused rewording leaves the original
question (counter `paraphrase.refused.<reason>`); a failed request leaves all of the sample's (flag
`paraphrase_failed:<reason>`). Lists are not paraphrased: their items are read back from the text.
No image is sent, so a text-only endpoint (the embedded local model) can paraphrase. With
`generation.mode: batch` the first-round requests go through the Batch API (generation/batch.py),
re-asks online; the spend ledger's lines are tagged `paraphrase`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import apache_beam as beam
import jinja2

from ..errors import UserError
from ..execution import Execution
from ..labels import VOCABULARY, Category, Flag, Vocabulary
from ..prompting.promptset import PromptSet
from ..prompting.render import PromptRequest, RenderedPrompt
from ..recipe import Recipe
from ..records import AnnotationInfo, QAPair
from ..rejection import Rejected
from ..stage import REJECTS, Stage, WorkItem
from .config import PARAPHRASED_CATEGORIES, GenerationConfig
from .handler import OpenAIChatHandler
from .llm_stage import RenderStage, call_llm

SCHEMA_NAME = "ParaphrasedQuestions"
#: words that carry no meaning of their own in a value's phrase ("of East Asian ethnicity" → east, asian)
FILLER = frozenset("a an the of to and or is are be in on with years year old ethnicity person".split())
NEGATIONS = re.compile(r"\b(not|no|never|none|neither|nor|without|cannot)\b|n't\b", re.IGNORECASE)
YES_NO_START = re.compile(r"^(is|are|does|do|did|has|have|can|could|would|will|was|were|should|might|may)\b",
                          re.IGNORECASE)
#: a short opening phrase before the question proper ("Looking at the photo, does …")
LEAD_IN = re.compile(r"^[^,?]{1,40},\s*")
OPTION_LETTER = re.compile(r"(^|\s|\()[A-D][.)](\s|$)")
MARKUP = re.compile(r"[*#`<>\[\]{}|_\\]|https?://")
META = re.compile(r"\b(paraphras\w*|rephras\w*|reword\w*|rewrit\w*|original question|here is|question:)", re.IGNORECASE)
NUMBER = re.compile(r"\d+")


def stem_of(q: QAPair) -> tuple[str, str]:
    """(the part the model may reword, what follows it unchanged): a multiple-choice question's
    options and instruction are the tail; any other question is all stem."""
    if q.category == "attribute_mcq" and "\nA. " in q.question:
        head, tail = q.question.split("\nA. ", 1)
        return head, "\nA. " + tail
    return q.question, ""


def _content(text: str) -> set[str]:
    """The meaning-bearing words of a text, each cut to its first five letters, so that a word's
    forms meet ("surprise", "surprised"; "disgust", "disgusted"): a crude stem, on the refusing side."""
    return {w[:5] for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in FILLER}


def _value_phrases(decl: Category | Flag | Any) -> list[str]:
    """Every phrase naming one of the attribute's values (sentence words and option texts)."""
    if isinstance(decl, Category):
        return [*decl.words.values(), *decl.options.values()]
    return []


def check_paraphrase(q: QAPair, candidate: str, vocab: Vocabulary = VOCABULARY) -> tuple[str, str] | None:
    """None when `candidate` may replace the stem of `q`, else (reason, what is wrong). Reasons:
    `paraphrase_format`, `paraphrase_options`, `paraphrase_meaning`."""
    stem, _ = stem_of(q)
    text = candidate.strip()
    if not text or "\n" in text or not text.endswith("?") or text.count("?") > 1:
        return "paraphrase_format", "not a one-line question ending in one question mark"
    if not 8 <= len(text) <= max(2 * len(stem), len(stem) + 60):
        return "paraphrase_format", f"{len(text)} characters for a question of {len(stem)}"
    if MARKUP.search(text) or META.search(text):
        return "paraphrase_format", "markup or talk about the task"
    if text.strip().lower() == stem.strip().lower():
        return "paraphrase_format", "the question unchanged"
    if OPTION_LETTER.search(text):
        return "paraphrase_options", "it lists option letters (the options follow the question unchanged)"
    low = text.lower()
    for option in q.options if q.category == "attribute_mcq" else []:
        if re.search(rf"\b{re.escape(option.lower())}\b", low):
            return "paraphrase_options", f"it names the option {option!r}"
    if sorted(NUMBER.findall(text)) != sorted(NUMBER.findall(stem)):
        return "paraphrase_meaning", "its numbers differ from the question's"
    if len(NEGATIONS.findall(text)) != len(NEGATIONS.findall(stem)):
        return "paraphrase_meaning", "a negation added or dropped"
    yes_no = bool(YES_NO_START.match(LEAD_IN.sub("", text, count=1)))
    if q.category == "attribute_yes_no" and not yes_no:
        return "paraphrase_meaning", "a yes/no question that no longer asks for yes or no"
    if q.category in ("attribute_open", "attribute_mcq") and yes_no:
        return "paraphrase_meaning", "it became a yes/no question"
    decls = [vocab[a] for a in q.attributes if a in vocab]
    if q.category == "attribute_yes_no":
        asked = q.options[0] if q.options else None
        needed = set()
        for d in decls:
            if isinstance(d, Category) and asked in d.words:
                needed |= _content(d.words[asked])
            elif isinstance(d, Flag):
                needed |= _content(d.phrase)
        missing = needed - _content(text)
        if missing:
            return "paraphrase_meaning", f"the asked value is gone ({', '.join(sorted(missing))})"
    for d in decls:  # a value the question did not name, now named: another question
        for phrase in _value_phrases(d):
            words = _content(phrase)
            if words and words <= _content(text) and not words <= _content(stem):
                return "paraphrase_meaning", f"it names another value ({phrase!r})"
    return None


@lru_cache(maxsize=32)
def paraphrase_format(n: int, max_chars: int) -> dict[str, Any]:
    """`response_format`: one string per question, q1..qn, all required."""
    names = [f"q{i}" for i in range(1, n + 1)]
    properties = {k: {"type": "string", "maxLength": max_chars} for k in names}
    schema = {"type": "object", "properties": properties, "required": names, "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema}}


def chosen_pairs(item: WorkItem, categories: list[str]) -> list[int]:
    """Indexes of the item's pairs that are reworded."""
    allowed = set(categories) & set(PARAPHRASED_CATEGORIES)
    return [i for i, q in enumerate(item.qa) if q.category in allowed]


def render_paraphrase(prompt_set: PromptSet, stems: list[str]) -> RenderedPrompt:
    """The one request that rewords a sample's questions: the stems, numbered; no image, no answer."""
    system = prompt_set.templates["system"].render().strip()
    user = prompt_set.templates["user"].render(questions=[{"id": f"q{i}", "text": s} for i, s in enumerate(stems, 1)]).strip()
    longest = max(len(s) for s in stems)
    request = PromptRequest(category=None, messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                            response_format=paraphrase_format(len(stems), max(2 * longest, longest + 60)))
    return RenderedPrompt.of(prompt_set, [request], mode="paraphrase")


class RenderParaphrase(RenderStage):
    """Stage 'paraphrase': the item's request (its chosen questions' stems); items without any pass."""

    name = "paraphrase"
    counted_as = "render_paraphrase"  # ApplyParaphrase counts the stage's items

    def __init__(self, cfg: GenerationConfig, categories: list[str]) -> None:
        super().__init__(cfg)
        self.categories = categories

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        assert self._set is not None
        chosen = chosen_pairs(item, self.categories)
        if not chosen:
            self.counters.count("nothing_to_reword")
            return [item]
        try:
            item.prompt = render_paraphrase(self._set, [stem_of(item.qa[i])[0] for i in chosen])
        except (jinja2.TemplateError, OSError) as e:
            raise Rejected("prompt_error", f"the paraphrase prompt could not be rendered: {e}"[:300]) from None
        return [item]


class ApplyParaphrase(Stage):
    """Stage 'paraphrase': each rewording checked against its question, kept or refused."""

    name = "paraphrase"

    def __init__(self, categories: list[str], vocab: Vocabulary = VOCABULARY) -> None:
        super().__init__()
        self.categories = categories
        self.vocab = vocab

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        outcome, item.llm_outcome = item.llm_outcome, None
        prompt, item.prompt = item.prompt, None
        if prompt is None:  # nothing to reword (RenderParaphrase let it pass without a request)
            return [item]
        assert outcome is not None
        outcome.spend.flush()
        if outcome.failure is not None or outcome.data is None:
            reason = outcome.failure.reason if outcome.failure is not None else "llm_empty"
            self.counters.count(f"failed.{reason}")
            item.flags.append(f"paraphrase_failed:{reason}")
            return [item]
        kept = 0
        for n, i in enumerate(chosen_pairs(item, self.categories), 1):
            q = item.qa[i]
            candidate = str(outcome.data.get(f"q{n}", ""))
            problem = check_paraphrase(q, candidate, self.vocab)
            if problem is not None:
                self.counters.count(f"refused.{problem[0]}")
                continue
            _, tail = stem_of(q)
            item.qa[i] = q.model_copy(update={"question": candidate.strip() + tail})
            kept += 1
        self.counters.count("kept", kept)
        item.provenance.paraphrase = AnnotationInfo(llm_model=outcome.llm_model or "unknown", prompt_set=prompt.prompt_set,
                                                    prompt_version=prompt.prompt_version, prompt_sha256=prompt.sha256,
                                                    usage=outcome.usage)
        if kept:
            item.flags.append(f"paraphrased:{kept}")
        return [item]


def paraphrase_config(recipe: Recipe) -> GenerationConfig:
    """The generation section as the paraphrase uses it: its endpoint and budgets, the paraphrase's
    prompt set, no categories, no image."""
    g = recipe.generation
    cfg = g.model_copy(update={"prompt_set": g.paraphrase.prompt_set, "categories": []}, deep=True)
    cfg.openai.max_tokens = g.paraphrase.max_tokens
    cfg.openai.image.send = "never"
    return cfg


def preflight_paraphrase(recipe: Recipe, execution: Execution) -> GenerationConfig:
    """Part of `preflight.preflight`: the endpoint answers, the key is set, the prompt set loads and is of
    mode paraphrase; the settings as they will run."""
    from ..prompting.promptset import load_prompt_set
    from .preflight import preflight

    cfg = preflight(paraphrase_config(recipe), execution)
    if load_prompt_set(cfg.prompt_set, cfg.prompts_dir).mode != "paraphrase":
        raise UserError(f"generation.paraphrase.prompt_set: {cfg.prompt_set!r} is not a prompt set of mode paraphrase")
    return cfg


class ParaphraseWithLLM(beam.PTransform):
    """The paraphrase stage: generated items → the same items, their questions reworded where the
    rewording keeps options and meaning (see the module)."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None, categories: list[str], out: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.categories = categories
        self.out = out  # the Batch API's state and the spend ledger (None: neither)

    def expand(self, items: beam.PCollection) -> dict[str, beam.PCollection]:
        rendered = items | "RenderParaphrase" >> beam.ParDo(RenderParaphrase(self.cfg, self.categories)).with_outputs(
            REJECTS, main="main")
        asking = rendered["main"] | "NeedsParaphrase" >> beam.Partition(lambda it, _n: 0 if it.prompt is not None else 1, 2)
        ready = asking[0]
        if self.cfg.mode == "batch":  # first-round rewordings through the Batch API, as generation's
            from .batch import SubmitBatches
            from .llm_stage import _attach_batch_context

            reports = ready | "BatchAPI" >> SubmitBatches(self.cfg, self.cache_dir, self.out)
            ready = ready | "AwaitBatches" >> beam.Map(_attach_batch_context, beam.pvalue.AsList(reports))
        handler = OpenAIChatHandler(self.cfg, self.cache_dir, "paraphrase", self.out, ledger_stage="paraphrase")
        answered = call_llm(ready, handler, self.cfg)
        applied = ((answered, asking[1]) | "AllParaphrased" >> beam.Flatten()
                   | "ApplyParaphrase" >> beam.ParDo(ApplyParaphrase(self.categories)).with_outputs(REJECTS, main="main"))
        rejects = (rendered[REJECTS], applied[REJECTS]) | "ParaphraseRejects" >> beam.Flatten()
        return {"main": applied["main"], REJECTS: rejects}
