"""The recipe's `validation` section: the rules every generated record is held to, dedup and hold-out
lists (docs/trust.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

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
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Duplicate images within a run.")
    holdout: HoldoutConfig = Field(default_factory=HoldoutConfig, description="Images that must never enter the corpus.")
