"""Parts of the labelled datasets' recipe sections (sources/config.py declares the sources): the
generic table's column → attribute mapping and the attributes a recipe declares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..config import Config
from ..labels import Category, Flag, Vocabulary, Years

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")
HOLDOUT_DOC = ("Splits that are official test partitions: their rows are rejected `holdout` unless `split` asks "
               "for that split by name (to build an evaluation set).")


def find_file(root: Path, names: tuple[str, ...]) -> str | None:
    """The first of `names` that exists under root (or its Anno/, Eval/, Img/ folders)."""
    for name in names:
        for sub in ("", "Anno", "Eval", "Img"):
            p = root / sub / name if sub else root / name
            if p.exists():
                return str(p)
    return None


class DeclaredAttribute(Config):
    """An attribute the vocabulary lacks, declared by the recipe: its kind and its words."""

    kind: Literal["category", "flag", "years"] = Field(description="category (one of codes), flag (yes/no) or years.")
    noun: str | None = Field(default=None, description="category/years: what it is ('mood').")
    question: str | None = Field(default=None, description="category/years: the open question.")
    mcq: str | None = Field(default=None, description="category: the multiple-choice question (default: the open one).")
    verb: str = Field(default="appears to be", description="category: 'The person <verb> <phrase>.'")
    phrases: dict[str, str] = Field(default_factory=dict, description="category: code → its words in a sentence.")
    options: dict[str, str] = Field(default_factory=dict, description="category: code → option text (default: the phrase).")
    form: Literal["have", "wear", "be", "look"] | None = Field(default=None, description="flag: how the phrase is said.")
    phrase: str | None = Field(default=None, description="flag: 'a hat' (wear), 'freckles' (have), 'smiling' (be).")
    item: str | None = Field(default=None, description="flag: its name in a list of features (default: the phrase for have/wear).")
    subject: str = Field(default="the person", description="flag: who the sentence is about.")

    def build(self, name: str) -> Category | Flag | Years:
        if self.kind == "category":
            if not self.phrases or not self.noun or not self.question:
                raise ValueError(f"declared category {name!r} needs noun, question and phrases")
            bad = [c for c in self.phrases if not SNAKE_CASE.match(c)]
            if bad:
                raise ValueError(f"declared category {name!r}: codes must be snake_case: {bad}")
            return Category(name=name, noun=self.noun, verb=self.verb, question=self.question, mcq=self.mcq or self.question,
                            words=dict(self.phrases),
                            options={c: self.options.get(c, p[:1].upper() + p[1:]) for c, p in self.phrases.items()})
        if self.kind == "flag":
            if self.form is None or not self.phrase:
                raise ValueError(f"declared flag {name!r} needs form and phrase")
            item = self.item if self.item is not None else (self.phrase if self.form in ("have", "wear") else None)
            return Flag(name=name, form=self.form, phrase=self.phrase, item=item, subject=self.subject)
        if not self.noun or not self.question:
            raise ValueError(f"declared years attribute {name!r} needs noun and question")
        return Years(name=name, noun=self.noun, question=self.question)


class AttributeColumn(Config):
    """Where one attribute is read from in the table and how its cells map onto the attribute's values."""

    column: str = Field(description="The table column the attribute's cells are in.")
    values: dict[str, str | bool] | None = Field(
        default=None, description="Raw cell → value (a category code, or true/false for a flag); null: cells are values.")
    threshold: float | None = Field(default=None, description="Flag from a score: present when the cell is above it.")
    required: bool = Field(default=True, description="An empty cell rejects the row `missing_label`; false: left out.")
    declare: DeclaredAttribute | None = Field(default=None, description="Declare an attribute the vocabulary lacks.")

    @field_validator("values", mode="before")
    @classmethod
    def _keys_as_text(cls, v: Any) -> Any:
        return {str(k): val for k, val in v.items()} if isinstance(v, dict) else v


def sources_vocabulary(sources: list[Any]) -> Vocabulary:
    """The vocabulary of a recipe's sources: the built-in attributes plus those its labelled sources
    declare (ValueError when two declare the same name differently)."""
    extra = [a for s in sources for a in getattr(s, "declared_attributes", list)()]
    return Vocabulary(extra)
