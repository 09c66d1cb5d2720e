"""The `templates` generator: deterministic, attribute-aware captions and QA without an LLM.

The FaceCaption-15M / Face-MLLM technique of turning labels into text. Each category is written only
from facts the pipeline has (dataset labels, measured face facts, measured image facts); a category
with no supporting facts is skipped and flagged `skipped:<category>` rather than invented. Several
phrasings per category; the choice is a seeded hash of (seed, key, category), so output is
reproducible and varied across samples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ..prompting.phrases import (
    age_phrase,
    brightness_word,
    describe_person,
    pose_phrases,
    race_phrase,
    sharpness_word,
)
from ..records import AttributeValue, Face, QAPair
from ..stage import Stage, WorkItem

PROMPT_SET = "templates"
PROMPT_VERSION = "1"

QUESTIONS: dict[str, tuple[str, ...]] = {
    "demographics": (
        "Describe the demographic attributes of the person in the image based on the visual information.",
        "What can be said about the age, gender and ethnicity of this person?",
        "Give a demographic description of the face shown.",
    ),
    "facial_structure": (
        "Describe the facial structure of the image based on the visual information.",
        "What are the proportions and geometry of this face?",
    ),
    "skin_texture": (
        "Describe the skin texture of the image based on the visual information.",
        "How much skin detail is visible in this image?",
    ),
    "expression": (
        "Describe the expression and emotion of the image based on the visual information.",
        "What emotion does this face show?",
        "How would you describe the facial expression here?",
    ),
    "lighting_quality": (
        "Describe the lighting and image quality of the image based on the visual information.",
        "How are the lighting conditions and the overall quality of this photo?",
    ),
    "pose": (
        "Describe the face pose of the image based on the visual information.",
        "Which way is the head turned and tilted?",
    ),
    "forensic": (
        "Describe the forensic considerations of the image based on the visual information.",
        "What should a forensic examiner note about this image?",
    ),
    "detail": (
        "Describe the image in detail based on the visual information.",
        "Give a detailed description of this face image.",
    ),
}


@dataclass
class Facts:
    """What the generator may speak about, gathered once per item."""

    gender: str | None
    age: str | None
    race: str | None
    face: Face | None
    n_faces: int
    width: int
    height: int
    brightness: float
    contrast: float
    sharpness: float
    is_crop: bool


def _value(attrs: dict[str, AttributeValue], name: str) -> str | None:
    v = attrs.get(name)
    return str(v.value) if v is not None else None


def image_measures(pixels: np.ndarray) -> tuple[float, float, float]:
    """(mean brightness 0-255, RMS contrast, sharpness as variance of a 4-neighbour Laplacian) of RGB pixels."""
    gray = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = -4 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
    return float(gray.mean()), float(gray.std()), float(lap.var()) if lap.size else 0.0


def gather_facts(item: WorkItem) -> Facts:
    attrs = item.attributes or item.labels
    face = item.faces[item.primary_face] if item.primary_face is not None and item.faces else None
    if item.pixels is not None:
        brightness, contrast, sharpness = image_measures(np.asarray(item.pixels))
    else:
        brightness = contrast = sharpness = 0.0
    if face is not None and face.quality is not None:
        brightness, contrast, sharpness = face.quality.brightness, face.quality.contrast, face.quality.blur
    assert item.image is not None, "the image stage runs before generation"
    return Facts(
        gender=_value(attrs, "gender"),
        age=_value(attrs, "age"),
        race=_value(attrs, "race"),
        face=face,
        n_faces=len(item.faces),
        width=item.image.width,
        height=item.image.height,
        brightness=brightness,
        contrast=contrast,
        sharpness=sharpness,
        is_crop=item.crop is not None,
    )


def _pick(options: tuple[str, ...] | list[str], seed: int, key: str, slot: str) -> str:
    digest = hashlib.sha256(f"{seed}|{key}|{slot}".encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


# ---------------------------------------------------------------------------------------- answer writers
# Each returns a list of alternative phrasings, or None when the facts do not support the category.


def _demographics(f: Facts) -> list[str] | None:
    if not (f.gender or f.age or f.race):
        return None
    who = describe_person(f.gender, f.age, f.race)
    parts = [f"The face appears to belong to {who}."]
    alt = []
    if f.gender:
        alt.append(f"The person presents as {'male' if f.gender == 'male' else 'female'}.")
    if f.age and age_phrase(f.age):
        alt.append(f"Their apparent age: {age_phrase(f.age)}.")
    if f.race and race_phrase(f.race):
        alt.append(f"Their apparent ethnicity is {race_phrase(f.race)}.")
    return [parts[0], " ".join(alt) or parts[0], f"This is {who}."]


def _facial_structure(f: Facts) -> list[str] | None:
    face = f.face
    if face is None:
        return None
    w, h = face.box.width, face.box.height
    ratio = h / w if w > 0 else 0
    shape = "elongated" if ratio > 1.35 else ("broad, rounded" if ratio < 1.1 else "oval, balanced")
    sentences = [f"The face outline is {shape}, about {ratio:.2f} times as tall as it is wide."]
    if face.landmarks5:
        (lx, ly), (rx, ry) = face.landmarks5[0], face.landmarks5[1]
        eye_dist = ((rx - lx) ** 2 + (ry - ly) ** 2) ** 0.5
        spacing = "wide-set" if w and eye_dist / w > 0.45 else ("close-set" if w and eye_dist / w < 0.33 else "evenly spaced")
        sentences.append(f"The eyes are {spacing}, {eye_dist / w:.2f} of the face width apart.")
    return [" ".join(sentences), " ".join(reversed(sentences))]


def _skin_texture(f: Facts) -> list[str] | None:
    word = sharpness_word(f.sharpness)
    if word == "sharp":
        return [
            "The image is sharp enough that fine skin texture and pores can be made out.",
            "Fine skin detail is visible; the image is not smoothed by blur.",
        ]
    return [
        f"The image is {word}, so fine skin texture is only partly visible and should not be over-interpreted.",
        f"Skin texture detail is limited because the image is {word}.",
    ]


def _expression(f: Facts) -> list[str] | None:
    face = f.face
    if face is None or face.expression is None:
        return None
    e = face.expression
    sure = "clearly" if e.confidence > 0.7 else ("probably" if e.confidence > 0.4 else "possibly")
    extra = ""
    if face.mouth_openness is not None:
        extra = " The mouth is open." if face.mouth_openness > 0.3 else " The mouth is closed."
    return [
        f"The expression is {sure} {e.label}.{extra}",
        f"The person {sure} looks {e.label}.{extra}",
    ]


def _lighting_quality(f: Facts) -> list[str] | None:
    light = brightness_word(f.brightness)
    contrast = "low" if f.contrast < 35 else ("high" if f.contrast > 75 else "moderate")
    sharp = sharpness_word(f.sharpness)
    return [
        f"The image is {light} with {contrast} contrast and looks {sharp}; it is {f.width}x{f.height} pixels.",
        f"Lighting: {light}, {contrast} contrast. Quality: {sharp}, {f.width}x{f.height} pixels.",
    ]


def _pose(f: Facts) -> list[str] | None:
    if f.face is None or f.face.pose is None:
        return None
    p = f.face.pose
    yaw, pitch, roll = pose_phrases(p.yaw, p.pitch, p.roll)
    frontal = abs(p.yaw) < 15 and abs(p.pitch) < 15
    lead = "The face is close to frontal" if frontal else "The face is not frontal"
    return [f"{lead}: {yaw}, {pitch}, {roll}.", f"Head pose — {yaw}; {pitch}; {roll}."]


def _forensic(f: Facts) -> list[str] | None:
    size = f"{f.width}x{f.height} pixels"
    notes = []
    if min(f.width, f.height) < 112:
        notes.append("the resolution is too low for reliable identification")
    if sharpness_word(f.sharpness) != "sharp":
        notes.append("blur limits fine detail")
    if brightness_word(f.brightness) != "evenly exposed":
        notes.append(f"the exposure is {brightness_word(f.brightness)}")
    if f.n_faces > 1 and not f.is_crop:
        notes.append(f"{f.n_faces} faces are present, so the subject must be specified")
    body = "; ".join(notes) if notes else "no quality problem stands out"
    return [
        f"The image is {size}; {body}. Attributes stated here are apparent, not verified identity.",
        f"For forensic use: {body}. Image size {size}.",
    ]


def _detail(f: Facts) -> list[str] | None:
    bits = []
    if f.gender or f.age or f.race:
        bits.append(f"a face of {describe_person(f.gender, f.age, f.race)}")
    else:
        bits.append("a face photograph")
    if f.face is not None and f.face.expression is not None:
        bits.append(f"with a {f.face.expression.label} expression")
    if f.face is not None and f.face.pose is not None:
        bits.append("seen " + ("from the front" if abs(f.face.pose.yaw) < 15 else "at an angle"))
    lighting = f"in {brightness_word(f.brightness)} light, {sharpness_word(f.sharpness)}"
    text = "The image shows " + " ".join(bits) + f", {lighting}."
    return [text, text.replace("The image shows", "This picture shows")]


WRITERS: dict[str, Callable[[Facts], list[str] | None]] = {
    "demographics": _demographics,
    "facial_structure": _facial_structure,
    "skin_texture": _skin_texture,
    "expression": _expression,
    "lighting_quality": _lighting_quality,
    "pose": _pose,
    "forensic": _forensic,
    "detail": _detail,
}


def caption_for(f: Facts, seed: int, key: str) -> str:
    who = describe_person(f.gender, f.age, f.race) if (f.gender or f.age or f.race) else "a person"
    parts = [f"A photo of {who}"]
    if f.face is not None and f.face.expression is not None:
        parts.append(f"looking {f.face.expression.label}")
    if f.face is not None and f.face.pose is not None:
        parts.append("facing the camera" if abs(f.face.pose.yaw) < 15 else "with the head turned")
    options = [", ".join(parts) + f", {brightness_word(f.brightness)} lighting.",
               " ".join(parts) + f" in {brightness_word(f.brightness)} light."]
    return _pick(options, seed, key, "caption")


def generate_from_templates(item: WorkItem, categories: list[str], seed: int) -> tuple[str, list[QAPair], list[str]]:
    """(caption, QA pairs, skipped categories) for one item."""
    facts = gather_facts(item)
    qa: list[QAPair] = []
    skipped: list[str] = []
    for cat in categories:
        writer = WRITERS.get(cat)
        answers = writer(facts) if writer else None
        if not answers:
            skipped.append(cat)
            continue
        question = _pick(QUESTIONS[cat], seed, item.key, cat + "/q")
        qa.append(QAPair(category=cat, question=question, answer=_pick(answers, seed, item.key, cat + "/a")))
    return caption_for(facts, seed, item.key), qa, skipped


def templates_sha256() -> str:
    """Hash of everything that shapes template output (question texts, this module's and the phrase
    module's source)."""
    import inspect
    import sys

    from ..prompting import phrases

    src = inspect.getsource(sys.modules[__name__]) + inspect.getsource(phrases)
    return hashlib.sha256(src.encode()).hexdigest()


class GenerateFromTemplates(Stage):
    """Stage 'generate' in no-LLM mode."""

    name = "generate"

    def __init__(self, categories: list[str], seed: int) -> None:
        super().__init__()
        self.categories = categories
        self.seed = seed
        self._sha: str | None = None

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        if self._sha is None:
            self._sha = templates_sha256()
        caption, qa, skipped = generate_from_templates(item, self.categories, self.seed)
        item.caption = caption
        item.qa = qa
        item.flags.extend(f"skipped:{c}" for c in skipped)
        item.provenance.generator = "templates"
        item.provenance.prompt_set = PROMPT_SET
        item.provenance.prompt_version = PROMPT_VERSION
        item.provenance.prompt_sha256 = self._sha
        yield item
