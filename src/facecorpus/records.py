"""The record types that flow through a run and land in its output.

`Sample` is what every shard's `KEY.json` holds; `Reject` is one line of `rejects/*.jsonl`.
The JSON Schema in `schemas/sample.schema.json` is generated from `Sample` (`facecorpus schema`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
#: the definition behind `ImageInfo.phash` (image_check.perceptual_hash); run.json and hold-out lists
#: record it, because pHashes of two versions are not comparable. 1: 32×32 LANCZOS of the whole
#: (max_side-shrunk) image; 2: of a small version of it (a JPEG decoded at 1/2–1/8 scale, else box-reduced)
PHASH_VERSION = 2

#: FairFaceGPT's eight QA categories; recipes may add their own.
DEFAULT_CATEGORIES: tuple[str, ...] = (
    "demographics",
    "facial_structure",
    "skin_texture",
    "expression",
    "lighting_quality",
    "pose",
    "forensic",
    "detail",
)

KEY_PATTERN = r"^[A-Za-z0-9_-]{1,120}$"
REASON_PATTERN = r"^[a-z][a-z0-9_]*$"
ATTRIBUTE_SOURCE_PATTERN = r"^(label|model:[A-Za-z0-9_.:/-]+|derived:[A-Za-z0-9_.:/-]+)$"

_KEY_RE = re.compile(KEY_PATTERN)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class SourceInfo(_Record):
    """Where a sample came from."""

    dataset: str = Field(description="Source dataset name, e.g. 'fairface', 'laion', 'folder'.")
    id: str = Field(description="Identifier inside the source (file path, SAMPLE_ID, tar key).")
    split: str | None = Field(default=None, description="Split in the source dataset, if any.")
    url: str | None = None
    licence: str | None = None
    text: str | None = Field(
        default=None, description="Untrusted text that came with the image (web alt-text); data, never instructions."
    )
    source_caption: str | None = Field(default=None, description="A caption shipped by the source dataset.")
    extra: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ImageInfo(_Record):
    """Facts about the image stored as `KEY.jpg` (after EXIF orientation and RGB conversion)."""

    width: int = Field(ge=1)
    height: int = Field(ge=1)
    original_format: str | None = Field(default=None, description="Decoder format of the input bytes (JPEG, PNG…).")
    original_mode: str | None = Field(default=None, description="PIL mode of the input before RGB conversion.")
    original_width: int | None = None
    original_height: int | None = None
    exif_transposed: bool = False
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the input bytes as read from the source.")
    phash: str = Field(pattern=r"^[0-9a-f]{16}$", description="64-bit DCT perceptual hash of the image, hex.")
    bytes: int = Field(ge=0, description="Size of the input bytes.")


class FaceBox(_Record):
    """A box in pixel coordinates of the sample image: (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


class Pose(_Record):
    """Head pose in degrees. Yaw > 0: the face turns to the image's right (the subject's left)."""

    yaw: float
    pitch: float
    roll: float


class Expression(_Record):
    label: str
    confidence: float = Field(ge=0.0, le=1.0)
    probabilities: dict[str, float] = Field(default_factory=dict)


class FaceQuality(_Record):
    size_px: float = Field(ge=0, description="Shorter side of the face box in pixels.")
    blur: float = Field(ge=0, description="Variance of the Laplacian over the face (higher is sharper).")
    brightness: float = Field(ge=0, le=255)
    contrast: float = Field(ge=0)


class Face(_Record):
    box: FaceBox
    score: float = Field(ge=0.0, le=1.0)
    landmarks5: list[tuple[float, float]] | None = Field(
        default=None, min_length=5, max_length=5, description="Eyes (left, right in the image), nose, mouth corners."
    )
    pose: Pose | None = None
    expression: Expression | None = None
    quality: FaceQuality | None = None
    eye_openness: float | None = None
    mouth_openness: float | None = None
    age: float | None = None
    gender: str | None = None
    embedding: list[float] | None = Field(default=None, description="Only when the recipe asks: biometric data.")
    detector: str = Field(
        description="Who found the box: a model, e.g. 'portable:mtcnn', or 'given:<source>' when the source "
        "dataset supplied it (FaRL's detections: 'given:farl'; FaceCaption-15M: 'given:facecaption15m')."
    )
    landmarks_model: str | None = Field(
        default=None, description="Model that placed landmarks5 when it is not the detector (e.g. on a given box)."
    )


class Crop(_Record):
    """The region of the source image that `KEY.jpg` holds, when the sample is a face crop."""

    box: FaceBox = Field(description="Crop box in the source image's pixel coordinates.")
    face_index: int = Field(ge=0)
    margin: float = Field(ge=0)
    aligned: bool = False
    size: int | None = None


class AttributeValue(_Record):
    value: str | float | int | bool
    source: str = Field(pattern=ATTRIBUTE_SOURCE_PATTERN, description="'label' (from the dataset) or 'model:<name>'.")
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    raw: str | None = Field(default=None, description="The value as the source wrote it, before normalisation.")


class AttributeConflict(_Record):
    """A label and a model disagree about an attribute; the label wins, the conflict is kept for reviewers."""

    attribute: str
    label_value: str | float | int | bool
    model_value: str | float | int | bool
    model: str
    confidence: float | None = None


class QAPair(_Record):
    category: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    attributes: list[str] = Field(
        default_factory=list, description="Attributes the pair is about, when its answer derives from their labels.")
    options: list[str] = Field(
        default_factory=list, description="The options a multiple-choice question offers (in letter order), or the "
        "features a list question names.")
    answer_key: str | None = Field(
        default=None, description="The answer in short: the option letter, 'yes' or 'no', a number, or the listed "
        "features present ('; '-separated, '' for none).")


class LLMUsage(_Record):
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0


class AnnotationInfo(_Record):
    """How the sample's `annotations` were made: the LLM, the prompt set, what it took."""

    llm_model: str
    prompt_set: str
    prompt_version: str
    prompt_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    usage: LLMUsage = Field(default_factory=LLMUsage)


class Judgement(_Record):
    """The LLM judge's verdict on the sample's texts (generation/judge.py): a score from 1 to 5 and a
    reason per criterion, whether every score reached the recipe's minimum, and how it was made."""

    scores: dict[str, int] = Field(description="Criterion → score, 1 (clearly fails) to 5 (fully meets it).")
    reasons: dict[str, str] = Field(default_factory=dict, description="Criterion → the judge's one-sentence reason.")
    min_score: int = Field(ge=1, le=5, description="The recipe's threshold when it was judged.")
    passed: bool = Field(description="Every score at least min_score (a sample kept with a flag has passed false).")
    llm_model: str
    prompt_set: str
    prompt_version: str
    prompt_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    usage: LLMUsage = Field(default_factory=LLMUsage)


class Provenance(_Record):
    generator: str = Field(description="'templates' or 'openai'.")
    llm_model: str | None = None
    prompt_set: str
    prompt_version: str
    prompt_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    pipeline_version: str
    recipe: str
    recipe_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    usage: LLMUsage = Field(default_factory=LLMUsage)
    annotation: AnnotationInfo | None = Field(default=None, description="When an LLM re-annotated the attributes.")
    paraphrase: AnnotationInfo | None = Field(default=None, description="When an LLM reworded the label questions.")
    text_sources: dict[str, str] = Field(
        default_factory=dict,
        description="Rewrite mode only: how each text (the caption as 'caption', answers by category) was made: "
        "'llm_rewrite' (the LLM's rewrite of the template text, kept as faithful) or 'template (<why>)' (the "
        "template text, because the rewrite lost, changed or added a fact, was junk, or failed).",
    )


class Sample(_Record):
    """One written sample: the image `KEY.jpg` plus everything known and generated about it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    key: str = Field(pattern=KEY_PATTERN, description="Unique across the output; letters, digits, '_' and '-'.")
    source: SourceInfo
    image: ImageInfo
    crop: Crop | None = None
    faces: list[Face] = Field(default_factory=list)
    primary_face: int | None = Field(default=None, ge=0)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    attribute_conflicts: list[AttributeConflict] = Field(default_factory=list)
    annotations: dict[str, AttributeValue] = Field(
        default_factory=dict, description="Every value an LLM gave for the fixed attribute vocabulary (source "
        "'model:<llm model>'), kept whether or not it agrees with a label or face model; `attributes` holds the "
        "ones nothing else gave.")
    caption: str = Field(min_length=1)
    qa: list[QAPair] = Field(min_length=1)
    flags: list[str] = Field(default_factory=list, description="Non-fatal findings, e.g. 'label_conflict'.")
    provenance: Provenance
    judgement: Judgement | None = Field(default=None, description="The LLM judge's scores, when the recipe runs it.")

    @field_validator("primary_face")
    @classmethod
    def _primary_in_range(cls, v: int | None, info) -> int | None:  # noqa: ANN001
        faces = info.data.get("faces")
        if v is not None and faces is not None and v >= len(faces):
            raise ValueError(f"primary_face {v} out of range for {len(faces)} faces")
        return v


class Reject(_Record):
    """One input that did not become a sample, and why. A line of `rejects/*.jsonl`."""

    source_id: str
    dataset: str | None = None
    key: str | None = None
    stage: str = Field(pattern=REASON_PATTERN, description="Stage that rejected it: source, image, faces, generate, validate, …")
    reason: str = Field(pattern=REASON_PATTERN, description="Short snake_case code.")
    detail: str = Field(description="One human sentence.")
    retryable: bool = False
    url: str | None = None
    categories: list[str] = Field(
        default_factory=list, description="QA categories the reject is about (refusal, label_conflict…), if any."
    )


@dataclass
class SourceFaces:
    """Face boxes as a source gave them (never written as such; the faces stage turns them into `Face`s,
    see faces/given.py): raw entries {box, score, landmarks5}, the [width, height] of the image their
    coordinates refer to (None when the source did not say), and who found them (`farl`, …)."""

    faces: list[Any]
    size: list[int] | tuple[int, int] | None
    source: str | None


def is_valid_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))


PositiveInt = Annotated[int, Field(ge=1)]


def sample_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of `Sample`, as checked in at schemas/sample.schema.json."""
    schema = Sample.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://facecorpus.dev/schemas/sample.schema.json"
    return schema


def sample_json_schema_text() -> str:
    import json

    return json.dumps(sample_json_schema(), indent=2, sort_keys=True) + "\n"
