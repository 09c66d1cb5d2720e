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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..records import QAPair
from ..rejection import Rejected
from ..stage import WorkItem
from ..validation.faithfulness import unfaithful
from ..validation.label_consistency import label_of
from ..validation.text_quality import CAPTION, JunkRules
from .templates import generate_from_templates

REWRITTEN = "rewritten"
FALLBACK = "template_fallback"


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
