"""The junk checks of one recipe, applied to a record's caption and answers (see `junk.py`).

`JunkRules.for_config(cfg, prompts_dir)` builds the topic vocabularies and the prompt-echo n-grams
once; `check_texts(caption, answers)` returns one `JunkFinding` per check that fired, with every
category it fired on, in `JUNK_CHECKS` order; `check_text(category, text)` reads one text alone
(the rewrite mode's faithfulness gate uses it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from .config import JUNK_CHECKS, JunkConfig
from .junk import (
    find_caption_not_about_face,
    find_degenerate,
    find_markup,
    find_meta_talk,
    find_off_topic,
    find_repeated_answer,
)
from .prompt_echo import PromptEcho, prompt_sources
from .vocabulary import TOPIC_NAMES, TOPICS, WordList

CAPTION = "caption"


@dataclass
class JunkFinding:
    """One junk check that fired: its reason, the first text's detail, every category it fired on."""

    reason: str
    detail: str
    categories: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=8)
def _echo(prompts_dir: str | None, min_words: int) -> PromptEcho:
    return PromptEcho(prompt_sources(prompts_dir), min_words)


@dataclass(frozen=True)
class JunkRules:
    """What the recipe's `validation.junk` asks, ready to run."""

    config: JunkConfig
    echo: PromptEcho | None
    topics: dict[str, WordList]

    @classmethod
    def for_config(cls, config: JunkConfig, prompts_dir: str | None = None) -> JunkRules:
        vocab = {cat: list(words) for cat, words in TOPICS.items()}
        vocab.update({cat: list(words) for cat, words in config.topics.items()})
        echo = _echo(prompts_dir, config.prompt_echo_words) if config.prompt_echo != "off" else None
        return cls(config, echo, {cat: WordList(words, TOPIC_NAMES.get(cat, ())) for cat, words in vocab.items() if words})

    def min_content_words(self, category: str) -> int:
        return self.config.min_content_words.get(category, self.config.min_content_words_default)

    def check_text(self, category: str, text: str) -> list[tuple[str, str]]:
        """(reason, detail) for every per-text check that fires on `text` (category 'caption' for the caption)."""
        cfg = self.config
        is_caption = category == CAPTION
        what = "the caption" if is_caption else f"the {category} answer"
        out: list[tuple[str, str]] = []
        if cfg.markup != "off" and (why := find_markup(text)):
            out.append(("markup", f"{what} holds {why}"))
        if self.echo is not None and (run := self.echo.find(text)):
            out.append(("prompt_echo", f"{what} copies our prompt's wording: \"{run}\""))
        if cfg.meta_talk != "off" and (why := find_meta_talk(text, is_caption)):
            out.append(("meta_talk", f"{what} {why}"))
        if cfg.degenerate_text != "off" and (why := find_degenerate(text, self.min_content_words(category))):
            out.append(("degenerate_text", f"{what}: {why}"))
        if cfg.off_topic != "off" and not is_caption and category in self.topics:
            if why := find_off_topic(text, self.topics[category], category.replace("_", " ")):
                out.append(("off_topic", f"{what} {why}"))
        if is_caption and cfg.caption_not_about_face != "off" and (why := find_caption_not_about_face(text)):
            out.append(("caption_not_about_face", why))
        return out

    def check_texts(self, caption: str, answers: list[tuple[str, str]]) -> list[JunkFinding]:
        """Every junk check that fires on a record's caption and (category, answer) pairs, in
        `JUNK_CHECKS` order; each finding lists all categories it fired on ('caption' included)."""
        found: dict[str, JunkFinding] = {}
        for category, text in [(CAPTION, caption), *answers]:
            if not text.strip():
                continue  # blank texts are `empty_answer`'s
            for reason, detail in self.check_text(category, text):
                f = found.setdefault(reason, JunkFinding(reason, detail))
                f.categories.append(category)
        if self.config.repeated_answer != "off":
            rep = find_repeated_answer([(c, a) for c, a in answers if a.strip()], self.config.repeated_similarity,
                                       frozenset(self.config.summary_categories))
            if rep is not None:
                found["repeated_answer"] = JunkFinding(
                    "repeated_answer", f"the {rep.first} and {rep.second} answers are {rep.similarity:.0%} alike",
                    [rep.first, rep.second])
        return [found[r] for r in JUNK_CHECKS if r in found]
