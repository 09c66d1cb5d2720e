"""The LLM judge (optional, `generation.judge`): after the record checks, an LLM scores each sample's
caption and answers on a rubric, and a sample below the recipe's threshold is rejected or flagged.

    samples ─▶ RenderJudgement ─▶ RunInference(OpenAIChatHandler) ─▶ AwaitOutcomes ─▶ ApplyJudgement ─▶ samples
        render and verdict failures ─▶ rejects

(Not to be confused with `judging.py`, which checks the *form* of every response: cut off, empty,
unparsable, refused.) One request per sample asks for a score from 1 (clearly fails) to 5 (fully
meets it) and a one-sentence reason for each criterion of `config.JUDGE_CRITERIA` — on topic,
consistent with the known facts, no identity claims, no invented certainty — as JSON under a strict
schema, checked by the same fastjsonschema path as every structured answer (one re-ask when it does
not parse). The request goes through the generation's own machinery: the same `OpenAIChatHandler`,
`LLMClient`, cache, single flight, RPM/TPM budgets, retries, adaptive concurrency and spend ledger
(its lines tagged `judge`), on `generation.openai`'s endpoint or the judge's own (`judge.openai`).

The judge sees the known facts (dataset labels as a phrase, model estimates as estimates), the texts
inside `<texts>` declared to be data, and the image when the endpoint reads images. It runs after
validation, so no money goes to samples the deterministic checks already reject. The verdict goes
into the record (`Sample.judgement`: scores, reasons, threshold, passed, model, prompt hash, usage).
A sample with any score below `min_score` is rejected `judge_low_score` (the low criteria, scores
and reasons in the detail) or, with `on_low: flag`, kept with `judge_low:<criterion>` flags. A sample
the judge could not score (endpoint error after retries, a verdict that is still not the schema
after the re-ask) is rejected `judge_failed` (retryable) or, with `on_error: flag`, kept flagged
`judge_failed:<reason>`. Counters `judge.*` (judged, passed, low by criterion, score sums, failures,
the judge's own LLM spend) go to run.json per attempt and to stats.json's `llm.judge`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import apache_beam as beam
import jinja2
from apache_beam.metrics.metric import MetricsFilter

from ..errors import UserError
from ..execution import Execution
from ..prompting.phrases import subject_phrase
from ..prompting.promptset import PromptSet
from ..prompting.render import (
    ImageOptions,
    PromptRequest,
    RenderedPrompt,
    estimate_phrases,
    image_data_url,
    label_codes,
    user_content,
)
from ..recipe import Recipe
from ..records import Judgement, Sample, SourceInfo
from ..rejection import Rejected
from ..stage import METRICS_NAMESPACE, ShardSample, Stage
from .config import JUDGE_CRITERIA, GenerationConfig, JudgeConfig
from .handler import OpenAIChatHandler
from .llm_stage import RenderStage, image_options, render_ask_apply
from .outcome import BatchContext, GenerationOutcome

SCHEMA_NAME = "SampleVerdict"
STAGE = "judge"
LEDGER_STAGE = "judge"  # the spend ledger's tag of the judge's requests


@lru_cache(maxsize=8)
def verdict_format(reason_max_chars: int = 200) -> dict[str, Any]:
    """`response_format` of a verdict: {reason, score} per criterion, all required, reason first (the
    model words its reason before it commits to a number)."""
    one = {"type": "object",
           "properties": {"reason": {"type": "string", "maxLength": reason_max_chars},
                          "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]}},
           "required": ["reason", "score"], "additionalProperties": False}
    schema = {"type": "object", "properties": {c: one for c in JUDGE_CRITERIA}, "required": list(JUDGE_CRITERIA),
              "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema}}


def known_facts(sample: Sample) -> str | None:
    """What the judge may hold the texts to: the labelled subject, then model estimates as estimates."""
    codes = label_codes(sample.attributes)
    parts = []
    subject = subject_phrase(codes.get("gender"), codes.get("age"), codes.get("race"))
    if subject:
        parts.append(f"the main person is {subject} (dataset labels)")
    estimates = estimate_phrases(sample.attributes)
    if estimates:
        parts.append("estimated by face models, not certain: " + "; ".join(estimates))
    return "; ".join(parts) or None


def render_judgement(prompt_set: PromptSet, sample: Sample, jpeg: bytes | None, image: ImageOptions,
                     reason_max_chars: int = 200) -> RenderedPrompt:
    """The one request that judges a sample: the facts, its caption and answers, the image if sent."""
    image_url = image_data_url(jpeg, image) if (image.send and jpeg) else None
    qa = [{"category": q.category, "topic": prompt_set.topics.get(q.category, q.category.replace("_", " ")),
           "question": q.question, "answer": q.answer} for q in sample.qa]
    ctx = {"image_attached": image_url is not None, "facts": known_facts(sample), "caption": sample.caption, "qa": qa}
    system = prompt_set.templates["system"].render(**ctx).strip()
    user = prompt_set.templates["user"].render(**ctx).strip()
    request = PromptRequest(category=None, messages=[{"role": "system", "content": system},
                                                     {"role": "user", "content": user_content(user, image_url, image)}],
                            response_format=verdict_format(reason_max_chars))
    return RenderedPrompt.of(prompt_set, [request], image_attached=image_url is not None, mode="judge")


def read_verdict(data: dict[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
    """(criterion → score, criterion → reason) of a schema-checked verdict."""
    scores = {c: int(data[c]["score"]) for c in JUDGE_CRITERIA}
    reasons = {c: " ".join(str(data[c]["reason"]).split()) for c in JUDGE_CRITERIA}
    return scores, reasons


def low_criteria(scores: dict[str, int], min_score: int) -> list[str]:
    return [c for c in JUDGE_CRITERIA if scores[c] < min_score]


@dataclass
class JudgeWork:
    """A sample on its way through the judge: what RunInference's handler reads (`prompt`, `batch`,
    `jpeg`), what AwaitOutcomes sets (`llm_outcome`), and what a reject line needs (`key`, `source`)."""

    shard: ShardSample
    prompt: RenderedPrompt | None = None
    batch: BatchContext | None = None  # never set: the judge is always online
    llm_outcome: GenerationOutcome | None = None

    @property
    def key(self) -> str:
        return self.shard.sample.key

    @property
    def source(self) -> SourceInfo:
        return self.shard.sample.source

    @property
    def jpeg(self) -> bytes:
        return self.shard.jpeg


class RenderJudgement(RenderStage):
    """Stage 'judge': the sample's verdict request."""

    name = STAGE

    def __init__(self, cfg: GenerationConfig, reason_max_chars: int = 200) -> None:
        super().__init__(cfg)
        self.reason_max_chars = reason_max_chars

    def run(self, work: JudgeWork) -> Iterable[JudgeWork]:  # type: ignore[override]
        assert self._set is not None
        try:
            work.prompt = render_judgement(self._set, work.shard.sample, work.jpeg, image_options(self.cfg),
                                                    self.reason_max_chars)
        except (jinja2.TemplateError, OSError) as e:
            raise Rejected("prompt_error", f"the judge's prompt could not be rendered: {e}"[:300]) from None
        yield work


class ApplyJudgement(Stage):
    """Stage 'judge': the verdict into the record; a low or missing verdict rejects or flags."""

    name = STAGE

    def __init__(self, settings: JudgeConfig) -> None:
        super().__init__()
        self.settings = settings

    def run(self, work: JudgeWork) -> Iterable[ShardSample]:  # type: ignore[override]
        outcome, work.llm_outcome = work.llm_outcome, None
        prompt, work.prompt = work.prompt, None  # may hold the base64 image; not needed downstream
        assert outcome is not None and prompt is not None
        for name, n in outcome.spend.counts.items():  # the judge's share of the run's LLM spend
            self.counters.count(f"llm.{name}", n)
        outcome.spend.flush()
        sample = work.shard.sample
        if outcome.failure is not None or outcome.data is None:
            reason = outcome.failure.reason if outcome.failure is not None else "llm_empty"
            self.counters.count(f"failed.{reason}")
            if self.settings.on_error == "reject":
                detail = outcome.failure.detail if outcome.failure is not None else "no verdict"
                raise Rejected("judge_failed", f"the LLM judge gave no verdict ({reason}): {detail}"[:500], retryable=True)
            sample.flags.append(f"judge_failed:{reason}")
            yield work.shard
            return
        scores, reasons = read_verdict(outcome.data)
        low = low_criteria(scores, self.settings.min_score)
        self.counters.count("judged")
        for c, s in scores.items():
            self.counters.count(f"score_sum.{c}", s)
        for c in low:
            self.counters.count(f"low.{c}")
        self.counters.count("low" if low else "passed")
        sample.judgement = Judgement(scores=scores, reasons=reasons, min_score=self.settings.min_score, passed=not low,
                                     llm_model=outcome.llm_model or "unknown", prompt_set=prompt.prompt_set,
                                     prompt_version=prompt.prompt_version, prompt_sha256=prompt.sha256, usage=outcome.usage)
        if low and self.settings.on_low == "reject":
            why = "; ".join(f"{c} {scores[c]}/5: {reasons[c]}" for c in low)
            raise Rejected("judge_low_score", f"the LLM judge scored below {self.settings.min_score}: {why}"[:500])
        sample.flags.extend(f"judge_low:{c}" for c in low)
        yield work.shard


def judge_config(recipe: Recipe) -> GenerationConfig:
    """The generation section as the judge uses it: the judge's endpoint when it has one, its prompt
    set and completion budget, online requests, no categories (pre-flight checks only its prompt set)."""
    g = recipe.generation
    j = g.judge
    cfg = g.model_copy(update={"prompt_set": j.prompt_set, "categories": [], "mode": "online"}, deep=True)
    if j.openai is not None:
        cfg.openai = j.openai.model_copy(deep=True)
    cfg.openai.max_tokens = j.max_tokens
    return cfg


def preflight_judge(recipe: Recipe, execution: Execution) -> GenerationConfig:
    """The judge's pre-flight (part of `preflight.preflight`, for the effective runner `execution`): the endpoint answers, the key is set, the
    prompt set loads and is of mode judge; the settings as they will run (`image.send` decided)."""
    from ..prompting.promptset import load_prompt_set
    from .preflight import preflight

    cfg = preflight(judge_config(recipe), execution)
    if load_prompt_set(cfg.prompt_set, cfg.prompts_dir).mode != "judge":
        raise UserError(f"generation.judge.prompt_set: {cfg.prompt_set!r} is not a prompt set of mode judge")
    return cfg


class JudgeSamples(beam.PTransform):
    """The judge stage: validated samples → the same samples with their verdict (see the module)."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None, settings: JudgeConfig, out: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.settings = settings
        self.out = out

    def expand(self, samples: beam.PCollection) -> dict[str, beam.PCollection]:
        works = samples | "ToJudge" >> beam.Map(JudgeWork)
        handler = OpenAIChatHandler(self.cfg, self.cache_dir, "judge", self.out, ledger_stage=LEDGER_STAGE)
        return render_ask_apply(works, RenderJudgement(self.cfg, self.settings.reason_max_chars), handler, self.cfg,
                                ApplyJudgement(self.settings))


# ------------------------------------------------------------------------------------------- totals

_PREFIX = STAGE + "."


def judge_totals(result: Any) -> dict[str, Any]:
    """One attempt's judge figures from its Beam counters: judged, passed, low, failed, `low_by`
    criterion, `score_sum` per criterion, `failures` by reason, and the judge's own LLM spend."""
    found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    counts: dict[str, int] = {}
    for c in found:
        name = c.key.metric.name
        if name.startswith(_PREFIX):
            value = c.committed if c.committed is not None else c.attempted
            counts[name[len(_PREFIX):]] = counts.get(name[len(_PREFIX):], 0) + int(value or 0)
    out: dict[str, Any] = {k: counts.get(k, 0) for k in ("judged", "passed", "low")}
    out["failed"] = sum(v for k, v in counts.items() if k.startswith("failed."))
    for group in ("low", "score_sum", "failed"):
        out[f"{group}_by"] = {k.split(".", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith(group + ".")}
    spend = {k[len("llm."):]: v for k, v in counts.items() if k.startswith("llm.")}
    out.update({k: spend.get(k, 0) for k in ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "attempts")})
    out["cost_usd"] = round(spend.get("cost_microusd", 0) / 1_000_000, 6)
    return out


def sum_judge_totals(parts: list[dict[str, Any]], ledger: dict[str, Any] | None) -> dict[str, Any]:
    """The judge figures of several attempts added up, with `mean_score` per criterion; what was sent
    and paid for comes from the spend ledger's `judge` lines when the output has a ledger."""
    out: dict[str, Any] = {}
    for part in parts:
        for k, v in part.items():
            if isinstance(v, dict):
                group = out.setdefault(k, {})
                for name, n in v.items():
                    group[name] = group.get(name, 0) + n
            else:
                out[k] = out.get(k, 0) + v
    if "cost_usd" in out:
        out["cost_usd"] = round(out["cost_usd"], 6)
    judged = out.get("judged", 0)
    out["mean_score"] = {c: round(s / judged, 3) for c, s in out.get("score_sum_by", {}).items()} if judged else {}
    mine = (ledger or {}).get("by_stage", {}).get(LEDGER_STAGE)
    if mine:
        out.update({k: mine[k] for k in ("attempts", "requests", "prompt_tokens", "completion_tokens", "cost_usd")})
    return out
