"""The rewrite mode for small models: attributes → template → LLM rewrite (FaceCaption-15M's approach).

A prompt set of mode `rewrite` (the shipped `rewrite` set) never asks the model to describe anything.
The `templates` generator writes the caption and every answer from labels and measurements; each of
those texts goes to the model alone, to be rephrased (one request per text); and a rewrite is kept only
when it is faithful to its template text (`validation.faithfulness.unfaithful`: every fact survives —
gender, age range, ethnicity, expression, head direction, quality words, numbers — and none is added
that the labels do not support) and passes the junk checks for its category. Otherwise the template
text stands (`generation.rewrite.on_unfaithful: template`, the default) or the sample is rejected
`rewrite_unfaithful` (`reject`).

Recorded per text: flags `rewritten:<category>` or `template_fallback:<category>` (the caption's
category is `caption`), and in the record's `provenance.text_sources` `llm_rewrite` or
`template (<why>)`.

A rewrite request the endpoint failed (`llm_error` after the retries: down, refusing, timing out) is
LLM work lost, not a verdict on the model's text: counted per attempt (`rewrite_totals`, run.json and
stats.json's `llm.rewrite`), and when more than `runner.max_retryable_rejects` of the rewrite requests
were lost the run exits 1 (outcome.py) although its samples are written with their template texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..records import QAPair
from ..rejection import Rejected
from ..stage import WorkItem
from ..validation.faithfulness import unfaithful
from ..validation.label_consistency import label_of
from ..validation.text_quality import CAPTION, JunkRules
from .templates import generate_from_templates

REWRITTEN = "rewritten"
FALLBACK = "template_fallback"
#: failure reasons of a rewrite request that are the endpoint's, not the model's text (outcome.py's too)
LOST_REASONS = ("llm_error", "internal_error")


@dataclass
class TemplateTexts:
    """What the templates generator wrote for one item: the texts a rewrite starts from."""

    caption: str
    qa: list[QAPair]
    skipped: list[str] = field(default_factory=list)

    def texts(self) -> list[tuple[str, str]]:
        """(category, text) to rewrite, the caption first (category 'caption')."""
        return [(CAPTION, self.caption), *((q.category, q.answer) for q in self.qa)]


def template_texts(item: WorkItem, categories: list[str], seed: int) -> TemplateTexts:
    """The grounded texts of one item (the templates generator's output)."""
    caption, qa, skipped = generate_from_templates(item, categories, seed)
    return TemplateTexts(caption, qa, skipped)


def known_labels(item: WorkItem) -> dict[str, str]:
    """The labelled gender, age and race codes of an item (what a rewrite may state beyond its template)."""
    attrs = item.attributes or item.labels
    return {name: value for name in ("gender", "age", "race") if (value := label_of(attrs, name)) is not None}


@dataclass
class Choice:
    """The texts an item gets, and how each was chosen."""

    caption: str
    qa: list[QAPair]
    flags: list[str]
    text_sources: dict[str, str]


def judge_rewrite(category: str, template: str, rewrite: str | None, failure: str | None, known: dict[str, str],
                  junk: JunkRules, age_tolerance: int) -> str | None:
    """Why the rewrite of one text cannot stand for its template text, or None when it is kept."""
    if failure is not None or rewrite is None:
        return f"the request failed: {failure or 'no text'}"
    text = rewrite.strip()
    if not text:
        return "the rewrite is empty"
    if _normalised(text) == _normalised(template):
        return "the rewrite repeats the template text"
    found = junk.check_text(category, text)
    if found:
        return found[0][1]
    return unfaithful(template, text, known, age_tolerance)


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def choose_texts(templates: TemplateTexts, rewrites: dict[str, str | None], failures: dict[str, str],
                 known: dict[str, str], junk: JunkRules, on_unfaithful: str, age_tolerance: int = 2) -> Choice:
    """Each text: its rewrite when faithful and clean, else the template text (or a reject, per recipe)."""
    flags: list[str] = [f"skipped:{c}" for c in templates.skipped]
    sources: dict[str, str] = {}
    chosen: dict[str, str] = {}
    for category, template in templates.texts():
        why = judge_rewrite(category, template, rewrites.get(category), failures.get(category), known, junk,
                            age_tolerance)
        if why is None:
            chosen[category] = " ".join(str(rewrites[category]).split())
            flags.append(f"{REWRITTEN}:{category}")
            sources[category] = "llm_rewrite"
            continue
        if on_unfaithful == "reject":
            raise Rejected("rewrite_unfaithful", f"the {category} rewrite cannot stand for its template text: {why}"[:300])
        chosen[category] = template
        flags.append(f"{FALLBACK}:{category}")
        sources[category] = f"template ({why})"[:300]
    qa = [QAPair(category=q.category, question=q.question, answer=chosen[q.category]) for q in templates.qa]
    return Choice(chosen[CAPTION], qa, flags, sources)


def lost_requests(failures: dict[str, str]) -> list[str]:
    """The reason of each failed rewrite request that the endpoint lost (`failures`: category →
    "reason: detail", as assembly.py writes them); cut-offs, empty or refused answers are the model's."""
    reasons = [why.split(":", 1)[0] for why in failures.values()]
    return [r for r in reasons if r in LOST_REASONS]


def rewrite_totals(result: Any) -> dict[str, Any]:
    """One attempt's rewrite figures from its Beam counters: `requests` (texts sent to be rewritten,
    from the cache or not), `rewritten` and `template_fallback` (texts), `lost` (requests the endpoint
    failed) and `lost_by` reason."""
    from apache_beam.metrics.metric import MetricsFilter

    from ..stage import METRICS_NAMESPACE

    prefix = "generate.rewrite."
    counts: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        name = c.key.metric.name
        if name.startswith(prefix):
            value = c.committed if c.committed is not None else c.attempted
            counts[name[len(prefix):]] = counts.get(name[len(prefix):], 0) + int(value or 0)
    lost_by = {k.split(".", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("lost.")}
    return {"requests": counts.get("requests", 0),
            "rewritten": sum(v for k, v in counts.items() if k.startswith(REWRITTEN + ".")),
            "template_fallback": sum(v for k, v in counts.items() if k.startswith(FALLBACK + ".")),
            "lost": sum(lost_by.values()), "lost_by": lost_by}


def sum_rewrite_totals(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The rewrite figures of several attempts of one output added up."""
    out: dict[str, Any] = {"requests": 0, "rewritten": 0, "template_fallback": 0, "lost": 0, "lost_by": {}}
    for part in parts:
        for k, v in part.items():
            if k == "lost_by":
                for reason, n in v.items():
                    out["lost_by"][reason] = out["lost_by"].get(reason, 0) + n
            else:
                out[k] = out.get(k, 0) + v
    return out
