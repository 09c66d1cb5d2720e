"""Rendering a `rewrite` prompt set: one request per text the templates generator wrote.

Each request carries one text alone (`text`; `category` and `topic` name what it is about) and asks the
model only to rephrase it; no image goes along (the facts are all in the text, and a small local model
cannot see). The stored questions are the templates generator's. The texts themselves travel on the
rendered prompt (`rewrite_from`), so that the generate stage can hold each rewrite to its template text.
"""

from __future__ import annotations

from typing import Any

from .promptset import PromptSet
from .render import PromptRequest, RenderedPrompt

CAPTION = "caption"


def render_rewrite(prompt_set: PromptSet, texts: list[tuple[str, str]], questions: dict[str, str],
                   rewrite_from: Any) -> RenderedPrompt:
    """The requests rephrasing `texts` ((category or 'caption', text) pairs, the caption first)."""
    system = prompt_set.templates["system"].render().strip()
    requests = []
    for category, text in texts:
        topic = "the caption" if category == CAPTION else prompt_set.topics.get(category, category.replace("_", " "))
        user = prompt_set.templates["user"].render(text=text, category=category, topic=topic).strip()
        requests.append(PromptRequest(category=category, question=questions.get(category),
                                      messages=[{"role": "system", "content": system}, {"role": "user", "content": user}]))
    return RenderedPrompt.of(prompt_set, requests, categories=[c for c, _ in texts if c != CAPTION], questions=questions,
                             rewrite_from=rewrite_from)
