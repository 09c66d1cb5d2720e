"""The recipe's `validation` section: the rules every generated record is held to, dedup and hold-out
lists (docs/trust.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import Config, PositiveInt, resolve_path


class DedupConfig(Config):
    """Duplicate images within a run: keep the one with the smallest key, reject the rest `duplicate`."""

    exact: bool = Field(default=True, description="Same sha256 of the input bytes.")
    near: bool = Field(default=True, description="Perceptual hashes within max_distance bits.")
    max_distance: int = Field(default=4, ge=0, le=16, description="Largest pHash Hamming distance that counts as near.")


class HoldoutConfig(Config):
    """Images that must never enter the corpus (benchmark test sets): rejected `holdout`."""

    lists: list[str] = Field(default_factory=list, description="Files made by `facecorpus holdout build`.")
    max_distance: int | None = Field(
        default=4, ge=0, le=16, description="pHash distance that still counts as the held-out image; null: sha256 only."
    )

    def resolve_paths(self, base: Path) -> None:
        self.lists = [resolve_path(p, base) for p in self.lists]


JunkMode = Literal["reject", "flag", "off"]
#: the junk checks' reject reasons, in the order they are reported (validation/junk.py)
JUNK_CHECKS: tuple[str, ...] = ("markup", "prompt_echo", "meta_talk", "degenerate_text", "repeated_answer", "off_topic",
                                "caption_not_about_face")


class JunkConfig(Config):
    """Text checks that catch junk a well-formed record can still hold (docs/trust.md §1b). Each check is
    `reject` (the default), `flag` (kept, flagged `<check>:<category>`) or `off`; `junk: off` (or `flag`) sets
    every check at once."""

    markup: JunkMode = Field(default="reject", description="Code fences, tags, template syntax, JSON, role tags, placeholders.")
    prompt_echo: JunkMode = Field(default="reject", description="A run of words copied from our prompts or instructions.")
    prompt_echo_words: int = Field(default=6, ge=3, le=50, description="Consecutive prompt words that count as an echo.")
    meta_talk: JunkMode = Field(default="reject", description="Talk about the task, the model or the reader; answers asking questions.")
    degenerate_text: JunkMode = Field(
        default="reject", description="Numbers or punctuation only, too few content words, cut off mid-sentence, loops."
    )
    min_content_words: dict[str, int] = Field(
        default_factory=lambda: {"caption": 2, "detail": 3},
        description="Fewest content words per category ('caption' for the caption); others: min_content_words_default.",
    )
    min_content_words_default: int = Field(default=2, ge=0, le=50, description="Fewest content words of an answer.")
    repeated_answer: JunkMode = Field(default="reject", description="Two categories of one sample answered alike.")
    repeated_similarity: float = Field(default=0.7, gt=0, le=1, description="Word-sequence similarity that counts as alike.")
    summary_categories: list[str] = Field(
        default_factory=lambda: ["detail"],
        description="Categories that sum up the others: an answer restated inside one is not a repeat (whole texts "
        "are still compared).",
    )
    off_topic: JunkMode = Field(default="reject", description="An answer using no word of its category's topic vocabulary.")
    topics: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Topic vocabularies per category, laid over the built-in ones (`stem*` matches prefixes); "
        "an empty list switches the check off for that category; categories without one are not checked.",
    )
    caption_not_about_face: JunkMode = Field(default="reject", description="A caption that names no person and no face.")

    @model_validator(mode="before")
    @classmethod
    def _one_mode_for_all(cls, v: Any) -> Any:
        if v is False:  # YAML reads a bare `off` as false
            v = "off"
        if v in ("reject", "flag", "off"):
            return {name: v for name in JUNK_CHECKS}
        return v

    def mode(self, check: str) -> str:
        return str(getattr(self, check))


class ValidationConfig(Config):
    """Checks on every generated record, dedup and hold-out. See docs/trust.md."""

    min_answer_chars: PositiveInt = Field(default=2, description="Shorter answers are rejected `answer_too_short`.")
    max_answer_chars: PositiveInt = Field(default=4000, description="Longer answers are rejected `answer_too_long`.")
    min_caption_chars: PositiveInt = Field(default=3, description="Shorter captions are rejected `answer_too_short`.")
    max_caption_chars: PositiveInt = Field(default=2000, description="Longer captions are rejected `answer_too_long`.")
    language: Literal["en"] | None = Field(default="en", description="Expected language of the text; null: no check.")
    refusals: Literal["reject", "off"] = Field(default="reject", description="Refusals and hedges left after the re-ask.")
    label_conflict: Literal["reject", "flag", "off"] = Field(
        default="reject", description="Text that contradicts a dataset label: reject, or keep with a flag."
    )
    age_tolerance_years: int = Field(default=2, ge=0, le=30, description="Slack around a label's age bin.")
    source_copy: Literal["reject", "off"] = Field(
        default="reject", description="Text copying the untrusted source text (alt-text) or doing what it orders: reject."
    )
    source_copy_words: int = Field(
        default=8, ge=3, le=100, description="Consecutive words shared with the source text that count as copying."
    )
    skippable_generators: list[str] = Field(
        default_factory=lambda: ["templates", "labels"],
        description="Generators allowed to leave out a requested category (flagged `skipped:<category>`).",
    )
    junk: JunkConfig = Field(default_factory=JunkConfig, description="Junk checks on every caption and answer (docs/trust.md §1b).")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Duplicate images within a run.")
    holdout: HoldoutConfig = Field(default_factory=HoldoutConfig, description="Images that must never enter the corpus.")
