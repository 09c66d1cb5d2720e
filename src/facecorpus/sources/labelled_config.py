"""Recipe sections of the labelled face datasets: CelebA, RAF-DB basic, UTKFace, and the generic
labelled table (with its column → attribute mapping and attributes a recipe declares)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..labels import VOCABULARY, Category, Flag, Vocabulary, Years
from ..records import PositiveInt
from .licences import CELEBA, RAFDB, UTKFACE

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
HOLDOUT_DOC = ("Splits that are official test partitions: their rows are rejected `holdout` unless `split` asks "
               "for that split by name (to build an evaluation set).")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: rows can carry face boxes that replace detection
    gives_faces: ClassVar[bool] = False


def _resolve(path: str, base: Path) -> str:
    """A recipe path made absolute against the recipe's folder (URLs are kept)."""
    if "://" in path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _find(root: Path, names: tuple[str, ...]) -> str | None:
    """The first of `names` that exists under root (or its Anno/, Eval/, Img/ folders)."""
    for name in names:
        for sub in ("", "Anno", "Eval", "Img"):
            p = root / sub / name if sub else root / name
            if p.exists():
                return str(p)
    return None


class CelebASource(_Config):
    """CelebA: images (img_align_celeba zip or folder) plus its Anno/ and Eval/ listings."""

    gives_faces: ClassVar[bool] = True

    type: Literal["celeba"]
    root: str | None = Field(default=None, description="The CelebA folder (Anno/, Eval/, Img/): the paths below default to "
                             "the files found there under their distribution names (set one to null to not read it).")
    images: str | None = Field(default=None, description="img_align_celeba.zip or its folder (or img_celeba, in the wild).")
    attributes: str | None = Field(default=None, description="list_attr_celeba.txt (the list of inputs).")
    partitions: str | None = Field(default=None, description="list_eval_partition.txt (0 train, 1 val, 2 test).")
    landmarks: str | None = Field(default=None, description="list_landmarks_align_celeba.txt (given faces).")
    boxes: str | None = Field(default=None, description="list_bbox_celeba.txt (in-the-wild images only).")
    identities: str | None = Field(default=None, description="identity_CelebA.txt (kept as source.extra.identity).")
    split: Literal["train", "val", "test", "all"] = "all"
    holdout: list[Literal["train", "val", "test"]] = Field(default_factory=lambda: ["test"], description=HOLDOUT_DOC)
    limit: PositiveInt | None = None
    dataset: str = "celeba"
    licence: str = CELEBA.id

    def resolve_paths(self, base: Path) -> None:
        root = Path(_resolve(self.root, base)) if self.root else None
        defaults = {
            "images": ("img_align_celeba.zip", "img_align_celeba"),
            "attributes": ("list_attr_celeba.txt",),
            "partitions": ("list_eval_partition.txt",),
            "landmarks": ("list_landmarks_align_celeba.txt",),
            "identities": ("identity_CelebA.txt",),
        }
        for key in ("images", "attributes", "partitions", "landmarks", "boxes", "identities"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, _resolve(value, base))
            elif root is not None and key in defaults and key not in self.model_fields_set:  # null: not read
                setattr(self, key, _find(root, defaults[key]))

    @model_validator(mode="after")
    def _needs_files(self) -> CelebASource:
        if self.root is None and (self.images is None or self.attributes is None):
            raise ValueError("CelebA needs root: (the CelebA folder) or both images: and attributes:")
        return self


class RafDbSource(_Config):
    """RAF-DB basic: EmoLabel/list_patition_label.txt plus Image/aligned (or Image/original)."""

    type: Literal["rafdb"]
    root: str | None = Field(default=None, description="The `basic` folder: labels and images default to "
                             "EmoLabel/list_patition_label.txt and Image/aligned (or aligned.zip).")
    labels: str | None = Field(default=None, description="EmoLabel/list_patition_label.txt.")
    images: str | None = Field(default=None, description="Image/aligned or Image/original (a folder or a zip).")
    variant: Literal["auto", "aligned", "original"] = Field(
        default="auto", description="auto: aligned when the images path says so (names *_aligned.jpg).")
    split: Literal["train", "test", "all"] = "all"
    holdout: list[Literal["train", "test"]] = Field(default_factory=lambda: ["test"], description=HOLDOUT_DOC)
    limit: PositiveInt | None = None
    dataset: str = "rafdb"
    licence: str = RAFDB.id

    def resolve_paths(self, base: Path) -> None:
        root = Path(_resolve(self.root, base)) if self.root else None
        if self.labels is not None:
            self.labels = _resolve(self.labels, base)
        elif root is not None:
            self.labels = str(root / "EmoLabel" / "list_patition_label.txt")
        if self.images is not None:
            self.images = _resolve(self.images, base)
        elif root is not None:
            found = [p for p in (root / "Image" / "aligned", root / "Image" / "aligned.zip") if p.exists()]
            self.images = str(found[0] if found else root / "Image" / "aligned")

    @model_validator(mode="after")
    def _needs_files(self) -> RafDbSource:
        if self.root is None and (self.images is None or self.labels is None):
            raise ValueError("RAF-DB needs root: (the basic folder) or both labels: and images:")
        return self


class UTKFaceSource(_Config):
    """UTKFace: a folder, zip or .tar.gz of images whose names carry age, gender and race."""

    type: Literal["utkface"]
    images: str = Field(description="UTKFace/ (or crop_part1/, part1/…), a zip of it, or UTKFace.tar.gz.")
    split: str | None = Field(default=None, description="Recorded on every sample (UTKFace has no official split).")
    limit: PositiveInt | None = None
    dataset: str = "utkface"
    licence: str = UTKFACE.id

    def resolve_paths(self, base: Path) -> None:
        self.images = _resolve(self.images, base)


# ------------------------------------------------------------------------------------ generic labelled


class DeclaredAttribute(_Config):
    """An attribute the vocabulary lacks, declared by the recipe: its kind and its words."""

    kind: Literal["category", "flag", "years"]
    noun: str | None = Field(default=None, description="category/years: what it is ('mood').")
    question: str | None = Field(default=None, description="category/years: the open question.")
    mcq: str | None = Field(default=None, description="category: the multiple-choice question (default: the open one).")
    verb: str = Field(default="appears to be", description="category: 'The person <verb> <phrase>.'")
    phrases: dict[str, str] = Field(default_factory=dict, description="category: code → its words in a sentence.")
    options: dict[str, str] = Field(default_factory=dict, description="category: code → option text (default: the phrase).")
    form: Literal["have", "wear", "be", "look"] | None = Field(default=None, description="flag: how the phrase is said.")
    phrase: str | None = Field(default=None, description="flag: 'a hat' (wear), 'freckles' (have), 'smiling' (be).")
    item: str | None = Field(default=None, description="flag: its name in a list of features (default: the phrase for have/wear).")
    subject: str = "the person"

    def build(self, name: str) -> Category | Flag | Years:
        if self.kind == "category":
            if not self.phrases or not self.noun or not self.question:
                raise ValueError(f"declared category {name!r} needs noun, question and phrases")
            bad = [c for c in self.phrases if not _SNAKE.match(c)]
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


class AttributeColumn(_Config):
    """Where one attribute is read from in the table and how its cells map onto the attribute's values."""

    column: str
    values: dict[str, str | bool] | None = Field(
        default=None, description="Raw cell → value (a category code, or true/false for a flag); null: cells are values.")
    threshold: float | None = Field(default=None, description="Flag from a score: present when the cell is above it.")
    required: bool = Field(default=True, description="An empty cell rejects the row `missing_label`; false: left out.")
    declare: DeclaredAttribute | None = Field(default=None, description="Declare an attribute the vocabulary lacks.")

    @field_validator("values", mode="before")
    @classmethod
    def _keys_as_text(cls, v: Any) -> Any:
        return {str(k): val for k, val in v.items()} if isinstance(v, dict) else v


class LabelledSource(_Config):
    """A label table (CSV, TSV, JSON lines, parquet) + images, with a mapping of columns to attributes."""

    type: Literal["labelled"]
    table: str = Field(description="The label table: .csv, .tsv, .jsonl or .parquet.")
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = "auto"
    images: str = Field(description="Folder or zip holding the images the image column names.")
    image_column: str = "image"
    id_column: str | None = Field(default=None, description="Default: the image name.")
    split_column: str | None = None
    splits: dict[str, str] = Field(default_factory=dict, description="Raw split cell → split name, e.g. {'2': test}.")
    split: str = Field(default="all", description="Only rows of this split; all: every split not held out.")
    holdout: list[str] = Field(default_factory=lambda: ["test"], description=HOLDOUT_DOC)
    attributes: dict[str, AttributeColumn] = Field(min_length=1)
    limit: PositiveInt | None = None
    dataset: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    licence: str = Field(description="The dataset's terms (recorded on every sample); required: say what they are.")

    def split_name(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        return self.splits.get(raw, raw)

    def resolve_paths(self, base: Path) -> None:
        self.table = _resolve(self.table, base)
        self.images = _resolve(self.images, base)

    def declared_attributes(self) -> list[Category | Flag | Years]:
        return [spec.declare.build(name) for name, spec in self.attributes.items() if spec.declare is not None]

    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.declared_attributes())

    @model_validator(mode="after")
    def _mapping_fits_vocabulary(self) -> LabelledSource:
        vocab = self.vocabulary()
        for name, spec in self.attributes.items():
            if not _SNAKE.match(name):
                raise ValueError(f"attribute names are snake_case: {name!r}")
            if spec.declare is not None and name in VOCABULARY:
                raise ValueError(f"attribute {name!r} is in the vocabulary already; map onto it without declare:")
            declared = vocab.get(name)
            if declared is None:
                raise ValueError(f"attribute {name!r} is not in the vocabulary (labels.py); declare it with declare:")
            if spec.threshold is not None and not isinstance(declared, Flag):
                raise ValueError(f"attribute {name!r}: threshold is for flags only")
            if isinstance(declared, Category) and spec.values is not None:
                unknown = sorted({str(v) for v in spec.values.values() if not isinstance(v, str) or v not in declared.words})
                if unknown:
                    raise ValueError(f"attribute {name!r}: {unknown} are not among its codes {list(declared.words)}")
        return self


def sources_vocabulary(sources: list[Any]) -> Vocabulary:
    """The vocabulary of a recipe's sources: the built-in attributes plus those its labelled sources declare."""
    extra = [a for s in sources if isinstance(s, LabelledSource) for a in s.declared_attributes()]
    return Vocabulary(extra)
