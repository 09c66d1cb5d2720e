"""Assembly: an item's judged answers → its `GenerationOutcome`, per prompt mode.

- `structured`: one answer holds the caption and every category's question and answer (or only the
  answers, when the prompt set fixes the questions);
- `annotate`: one answer holding attribute values (generation/annotation.py applies them);
- `rewrite`: one answer per text the templates generator wrote (the caption, then each category): the
  rewrites as they came, or None for a failed request; the generate stage decides what stands;
- `per_category`: one answer per category; the caption is the first paragraph of the `caption_from`
  category's answer (else the first). A category that failed rejects the item, or is skipped and
  flagged `skipped:<category>` under `on_category_failure: skip` (when some category worked).

Usage on the record sums every response the item's text was written from, fresh or cached.
"""

from __future__ import annotations

from ..prompting.render import RenderedPrompt
from ..records import LLMUsage, QAPair
from ..rejection import Rejection
from .accounting import Spend
from .outcome import Answer, Completion, GenerationOutcome


def first_paragraph(text: str, max_chars: int = 400) -> str:
    """A caption from a long answer: its first paragraph, cut at a sentence end within `max_chars`."""
    para = next((p.strip() for p in text.strip().split("\n\n") if p.strip()), text.strip())
    para = " ".join(para.split())
    if len(para) <= max_chars:
        return para
    cut = max(para.rfind(". ", 0, max_chars), para.rfind("! ", 0, max_chars), para.rfind("? ", 0, max_chars))
    return para[: cut + 1] if cut > 40 else para[: max_chars - 1].rstrip() + "…"


def record_usage(completions: list[Completion]) -> LLMUsage:
    """What producing one record's text took: bought now or served from the cache."""
    return LLMUsage(
        requests=sum(1 for c in completions if c.bought_now),
        cache_hits=sum(1 for c in completions if not c.bought_now),
        prompt_tokens=sum(c.usage.prompt for c in completions),
        completion_tokens=sum(c.usage.completion for c in completions),
        cached_tokens=sum(c.usage.cached for c in completions),
        cost_usd=round(sum(c.cost_usd for c in completions), 9),
    )


def assemble(prompt: RenderedPrompt, answers: list[Answer], spend: Spend, default_model: str,
             on_category_failure: str) -> GenerationOutcome:
    """The item's outcome from its answers (one per request of `prompt`, in order)."""
    out = GenerationOutcome(spend=spend)
    completions = [c for a in answers for c in a.completions]
    out.usage = record_usage(completions)
    out.llm_model = next((c.model for c in completions if c.model), default_model)
    if not prompt.image_attached:
        out.flags.append("llm_text_only")
    failed = [a for a in answers if a.failure is not None]
    for a in failed:
        spend.add(f"failure.{a.failure.reason}")  # type: ignore[union-attr]
    if prompt.mode == "structured":
        return _structured(prompt, answers[0], out)
    if prompt.mode in ("annotate", "paraphrase", "judge"):  # values, not text: annotation.py, paraphrase.py, judge.py
        out.failure, out.data = answers[0].failure, answers[0].data
        return out
    if prompt.mode == "rewrite":
        return _rewrite(answers, out)
    return _per_category(prompt, answers, failed, out, on_category_failure)


def _structured(prompt: RenderedPrompt, a: Answer, out: GenerationOutcome) -> GenerationOutcome:
    if a.failure is not None:
        out.failure = a.failure
        return out
    assert a.data is not None
    if "answers" in a.data:
        texts = [("caption", a.data["caption"]), *a.data["answers"].items()]
    else:
        texts = [("caption", a.data["caption"])] + [
            (f"{c} {part}", v[part]) for c, v in a.data["qa"].items() for part in ("question", "answer")]
    blank = next((c for c, t in texts if not t.strip()), None)
    if blank is not None:  # the schema's minLength counts spaces; a blank text is no text
        out.failure = Rejection("llm_empty", f"the structured answer's {blank} text is blank")
        return out
    out.caption = a.data["caption"].strip()
    if "answers" in a.data:  # the prompt set fixed the questions
        out.qa = [QAPair(category=c, question=prompt.questions[c], answer=a.data["answers"][c].strip())
                  for c in prompt.categories]
    else:
        out.qa = [QAPair(category=c, question=a.data["qa"][c]["question"].strip(),
                         answer=a.data["qa"][c]["answer"].strip()) for c in prompt.categories]
    return out


def _rewrite(answers: list[Answer], out: GenerationOutcome) -> GenerationOutcome:
    """One request per text (the caption, then each category): its rewrite, or None when the request
    failed. The generate stage holds each rewrite to its template text (generation/rewrite.py)."""
    out.rewrites = {str(a.request.category): (a.text if a.failure is None else None) for a in answers}
    out.rewrite_failures = {str(a.request.category): f"{a.failure.reason}: {a.failure.detail}"
                            for a in answers if a.failure is not None}
    return out


def _per_category(prompt: RenderedPrompt, answers: list[Answer], failed: list[Answer], out: GenerationOutcome,
                  on_category_failure: str) -> GenerationOutcome:
    good = [a for a in answers if a.failure is None]
    if failed and (on_category_failure == "reject" or not good):
        first = failed[0]
        assert first.failure is not None
        cat = first.request.category
        out.failure = Rejection(first.failure.reason, f"category {cat}: {first.failure.detail}", first.failure.retryable)
        return out
    out.flags.extend(f"skipped:{a.request.category}" for a in failed)
    out.qa = [
        QAPair(category=a.request.category or "detail", question=a.request.question or "", answer=(a.text or "").strip())
        for a in good
    ]
    by_cat = {q.category: q.answer for q in out.qa}
    source = by_cat.get(prompt.caption_from or "") or out.qa[0].answer
    out.caption = first_paragraph(source)
    return out
