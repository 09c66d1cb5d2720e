"""Rendering a prompt set for one work item: the exact chat messages an endpoint will receive.

What the pipeline knows becomes template variables: dataset labels as a natural subject phrase
(`subject`), as the source wrote them (`labels`, e.g. `labels.race` = "Latino_Hispanic") and normalised
(`label_codes`), the person's word (`person`: natural, or FairFaceGPT's man/woman/boy/girl when the set's
`label_style` is `fairfacegpt`), model estimates as short phrases (`estimates`), web alt-text as delimited
untrusted data (`untrusted_text`), and whether the image is attached. `render_prompt` returns one `PromptRequest`
per request (eight for FairFaceGPT's per-category set, one for the structured set) and the prompt's
sha256, which goes into every record.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..records import AttributeValue, Face
from .phrases import (
    brightness_word,
    fairfacegpt_person,
    person_noun,
    pose_phrases,
    sharpness_word,
    subject_phrase,
)
from .promptset import PromptSet

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DELIMITER = re.compile(r"</?\s*untrusted_text\s*>?", re.IGNORECASE)
_DATA_URL = re.compile(r"^data:image/[a-z]+;base64,")


@dataclass(frozen=True)
class ImageOptions:
    """How the image is attached; `send=False` renders text-only requests."""

    send: bool = True
    max_side: int = 512
    max_bytes: int = 1_000_000
    jpeg_quality: int = 90
    detail: str | None = None
    #: False: a JPEG goes as it is, whatever its size (FairFaceGPT sent the file's own bytes)
    reencode: bool = True


@dataclass
class PromptRequest:
    """One chat request before model parameters are added.

    `category` is None for a structured request (it covers every category). `question` is the
    question stored in the record (per-category sets); the model may have been told more.
    """

    category: str | None
    messages: list[dict[str, Any]]
    question: str | None = None
    response_format: dict[str, Any] | None = None


@dataclass
class RenderedPrompt:
    prompt_set: str
    prompt_version: str
    mode: str
    requests: list[PromptRequest]
    sha256: str
    image_attached: bool
    categories: list[str] = field(default_factory=list)
    caption_from: str | None = None  # per-category sets: the category whose answer becomes the caption
    questions: dict[str, str] = field(default_factory=dict)  # structured sets with fixed questions
    #: rewrite sets: the templates generator's texts the requests rephrase (generation/rewrite.py)
    rewrite_from: Any = None

    @classmethod
    def of(cls, prompt_set: Any, requests: list[PromptRequest], image_attached: bool = False, mode: str | None = None,
           **rest: Any) -> RenderedPrompt:
        """The rendered prompt of `requests` from `prompt_set` (a PromptSet: its name and version; its
        mode unless `mode` says another stage's), hashed as they will be sent."""
        return cls(prompt_set=prompt_set.name, prompt_version=prompt_set.version, mode=mode or prompt_set.mode,
                   requests=requests, sha256=prompt_sha256(requests), image_attached=image_attached, **rest)


# ------------------------------------------------------------------------------------------- inputs


def label_codes(attributes: dict[str, AttributeValue]) -> dict[str, str]:
    """Attribute name → normalised code, for values that come from dataset labels only."""
    return {name: str(v.value) for name, v in attributes.items() if v.source == "label"}


def raw_labels(attributes: dict[str, AttributeValue]) -> dict[str, str]:
    """Attribute name → the label as the source dataset wrote it (FairFace: 'Male', 'Latino_Hispanic',
    'more than 70'), for values that come from dataset labels only."""
    return {name: v.raw if v.raw is not None else str(v.value) for name, v in attributes.items() if v.source == "label"}


def person_word(codes: dict[str, str], style: str) -> str:
    """The template variable `person` in the set's label style."""
    if style == "fairfacegpt":
        return fairfacegpt_person(codes.get("gender"), codes.get("age"))
    gender = codes.get("gender")
    return person_noun(gender if gender in ("male", "female") else None, codes.get("age"))


def estimate_phrases(attributes: dict[str, AttributeValue]) -> list[str]:
    """Model-made attribute values as 'gender: female (confidence 0.93)', sorted by name."""
    out = []
    for name, v in sorted(attributes.items()):
        if v.source.startswith("model:"):
            conf = f" (confidence {v.confidence:.2f})" if v.confidence is not None else ""
            out.append(f"{name.replace('_', ' ')}: {v.value}{conf}")
    return out


def measured_phrases(face: Face | None) -> list[str]:
    """What the face models measured on the primary face beyond attributes: head pose and image quality,
    in words (the LLM gets no numbers it would have to interpret)."""
    if face is None:
        return []
    out = []
    if face.pose is not None:
        out.append("head pose: " + ", ".join(pose_phrases(face.pose.yaw, face.pose.pitch, face.pose.roll)))
    if face.quality is not None:
        q = face.quality
        out.append(
            f"face image quality: {sharpness_word(q.blur)}, {brightness_word(q.brightness)}, face about {q.size_px:.0f} pixels"
        )
    return out


def untrusted(text: str | None, max_chars: int) -> str | None:
    """Web text made safe to embed as data: no control characters, no delimiter look-alikes, capped."""
    if not text:
        return None
    clean = _DELIMITER.sub(" ", _CONTROL.sub(" ", text))
    clean = " ".join(clean.split())
    if len(clean) > max_chars:
        clean = clean[: max_chars - 1].rstrip() + "…"
    return clean or None


def image_data_url(jpeg: bytes, opts: ImageOptions) -> str:
    """The image as a `data:image/jpeg;base64,` URL, downscaled/re-encoded only when over the caps (or not a
    JPEG); with `reencode` off a JPEG's bytes go unchanged."""
    from PIL import Image

    data = jpeg
    if not opts.reencode and jpeg[:3] == b"\xff\xd8\xff":
        return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    img = Image.open(io.BytesIO(jpeg))
    if max(img.size) > opts.max_side or len(jpeg) > opts.max_bytes or img.format != "JPEG":
        img = img.convert("RGB")
        if max(img.size) > opts.max_side:
            scale = opts.max_side / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
        quality = opts.jpeg_quality
        while True:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=quality)
            data = buf.getvalue()
            if len(data) <= opts.max_bytes or quality <= 30:
                break
            quality -= 15
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


_DIGESTS: dict[str, str] = {}
_DIGESTS_MAX_CHARS = 32_000_000
_digests_chars = 0


def _url_digest(url: str) -> str:
    """sha256 of an image data URL, remembered for recent URLs: each one is hashed for the prompt hash
    and again for every request's cache key (8 times with per-category prompts). The memo holds at
    most ~32 MB of URLs; dict operations are atomic under the GIL, so threads may share it."""
    global _digests_chars
    digest = _DIGESTS.get(url)
    if digest is None:
        digest = hashlib.sha256(url.encode("ascii")).hexdigest()
        if _digests_chars + len(url) > _DIGESTS_MAX_CHARS:
            _DIGESTS.clear()
            _digests_chars = 0
        _DIGESTS[url] = digest
        _digests_chars += len(url)
    return digest


def hashed_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with each image data URL replaced by 'sha256:<hex>' of the URL: same identity, small."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                url = part.get("image_url", {}).get("url") if part.get("type") == "image_url" else None
                if url and _DATA_URL.match(url):
                    part = {**part, "image_url": {**part["image_url"], "url": f"sha256:{_url_digest(url)}"}}
                parts.append(part)
            m = {**m, "content": parts}
        out.append(m)
    return out


def prompt_sha256(requests: list[PromptRequest]) -> str:
    """sha256 of everything a prompt sends (messages with image hashes, schemas), in order."""
    doc = [
        {"category": r.category, "messages": hashed_messages(r.messages), "response_format": r.response_format}
        for r in requests
    ]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# ------------------------------------------------------------------------------------- structured output


def structured_output_model(categories: list[str], bounds: dict[str, int], fixed_questions: bool = False) -> type[BaseModel]:
    """Pydantic model of the structured answer: a caption and one {question, answer} per category
    (`qa`), or, when the questions are fixed by the prompt set, one answer per category (`answers`).

    One property per category (all required) rather than a list: every category exactly once, and
    bounded strings so that a small local model cannot ramble into cut-off JSON.
    """
    forbid = ConfigDict(extra="forbid")
    if fixed_questions:
        answer = (str, Field(min_length=1, max_length=bounds.get("answer_max_chars", 400)))
        answers = create_model("AnswerByCategory", __config__=forbid, **{c: answer for c in categories})
        return create_model(
            "FaceAnswers",
            __config__=forbid,
            caption=(str, Field(min_length=1, max_length=bounds.get("caption_max_chars", 300))),
            answers=(answers, ...),
        )
    qa_pair = create_model(
        "QA",
        __config__=forbid,
        question=(str, Field(min_length=1, max_length=bounds.get("question_max_chars", 150))),
        answer=(str, Field(min_length=1, max_length=bounds.get("answer_max_chars", 400))),
    )
    per_category: dict[str, Any] = {c: (qa_pair, ...) for c in categories}
    by_category = create_model("QAByCategory", __config__=forbid, **per_category)
    return create_model(
        "FaceQA",
        __config__=forbid,
        caption=(str, Field(min_length=1, max_length=bounds.get("caption_max_chars", 300))),
        qa=(by_category, ...),
    )


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline_refs(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k not in ("$defs", "title")}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def response_format_for(model: type[BaseModel]) -> dict[str, Any]:
    """`response_format` for chat.completions: a strict json_schema generated from the pydantic model.

    References are inlined (llama.cpp's grammar converter and OpenAI both accept the flat form).
    """
    schema = model.model_json_schema()
    flat = _inline_refs(schema, schema.get("$defs", {}))
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "strict": True, "schema": flat}}


@functools.lru_cache(maxsize=64)
def _response_format(categories: tuple[str, ...], bounds: tuple[tuple[str, int], ...], fixed: bool) -> dict[str, Any]:
    # building pydantic models and their schema takes ~2 ms: once per (categories, bounds), not per item.
    # One dict shared by every item's request (read-only): the judge compiles its validator once per object
    return response_format_for(structured_output_model(list(categories), dict(bounds), fixed))


# ----------------------------------------------------------------------------------------------- render


def user_content(text: str, image_url: str | None, opts: ImageOptions) -> str | list[dict[str, Any]]:
    if image_url is None:
        return text
    image: dict[str, Any] = {"url": image_url}
    if opts.detail:
        image["detail"] = opts.detail
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": image}]


def render_prompt(
    prompt_set: PromptSet,
    categories: list[str],
    attributes: dict[str, AttributeValue],
    jpeg: bytes | None,
    alt_text: str | None,
    image: ImageOptions,
    face: Face | None = None,
) -> RenderedPrompt:
    """All requests for one item (`face`: the primary face, whose measured pose and quality join the
    model estimates). Raises jinja2 errors on a broken template (the caller rejects)."""
    codes = label_codes(attributes)
    subject = subject_phrase(codes.get("gender"), codes.get("age"), codes.get("race"))
    image_url = image_data_url(jpeg, image) if (image.send and jpeg) else None
    common = {
        "subject": subject,
        "labels": raw_labels(attributes),
        "label_codes": codes,
        "person": person_word(codes, prompt_set.label_style),
        "estimates": estimate_phrases(attributes) + measured_phrases(face),
        "untrusted_text": untrusted(alt_text, prompt_set.bounds.get("untrusted_text_max_chars", 500)),
        "image_attached": image_url is not None,
    }
    requests: list[PromptRequest] = []
    questions: dict[str, str] = {}
    system = prompt_set.templates["system"].render(**common).strip()
    if prompt_set.mode == "per_category":
        for cat in categories:
            ctx = {**common, "category": cat, "topic": prompt_set.topic(cat)}
            instruction = prompt_set.templates["instruction"].render(**ctx).strip()
            question = prompt_set.templates["question"].render(**ctx).strip()
            requests.append(
                PromptRequest(
                    category=cat,
                    question=question,
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": user_content(instruction, image_url, image)},
                    ],
                )
            )
    else:
        fixed = prompt_set.questions == "fixed"
        cats = []
        for c in categories:
            entry = {"name": c, "topic": prompt_set.topic(c)}
            if fixed:
                entry["question"] = prompt_set.templates["question"].render(**common, category=c, topic=entry["topic"]).strip()
                questions[c] = entry["question"]
            cats.append(entry)
        user = prompt_set.templates["user"].render(**common, categories=cats).strip()
        requests.append(
            PromptRequest(
                category=None,
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": user_content(user, image_url, image)},
                ],
                response_format=_response_format(tuple(categories), tuple(sorted(prompt_set.bounds.items())), fixed),
            )
        )
    return RenderedPrompt.of(prompt_set, requests, image_attached=image_url is not None, categories=list(categories),
                             caption_from=prompt_set.caption_from, questions=questions)
