"""The rewrite mode: the faithfulness check on its own, and the generate stage on Beam against a scripted
OpenAI-compatible server on loopback (a real HTTP server; what the model writes is scripted, because
these tests are about what the stage keeps, not about a model's skill — the real local model's rewrites
are measured by the demo)."""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facecorpus.generation.config import GenerationConfig
from facecorpus.generation.templates import generate_from_templates
from facecorpus.records import (
    DEFAULT_CATEGORIES,
)
from facecorpus.validation.faithfulness import unfaithful
from tests.support.generation_helpers import SMALL_FACE, fact_grid, measured_face, run_generation, work_items

MAN = {"gender": "male", "age": "50-59", "race": "white"}
DEMOGRAPHICS = "The face appears to belong to a White man in his fifties."
POSE = "The face is not frontal: turned toward the image's left by about 21 degrees, no notable up-down tilt, no notable roll."
EXPRESSION = "The expression is probably happy. The mouth is open."
LIGHT = "The image is evenly exposed with moderate contrast and looks sharp; it is 224x224 pixels."

FAITHFUL = [
    (DEMOGRAPHICS, "He is a White man in his fifties."),
    (DEMOGRAPHICS, "A Caucasian man, about 55 years old."),
    (POSE, "The head is turned about 21 degrees to the left, with no tilt or roll."),
    (EXPRESSION, "He seems to be smiling, with his mouth open."),  # 'he': the gender label says male
    (LIGHT, "An evenly lit, sharp 224x224 photo with moderate contrast."),
]
UNFAITHFUL = [
    (DEMOGRAPHICS, "A White woman in her fifties.", "gender"),
    (DEMOGRAPHICS, "A man in his fifties.", "ethnicity"),
    (DEMOGRAPHICS, "A White man in his thirties.", "age"),
    (DEMOGRAPHICS, "An East Asian man in his fifties.", "ethnicity"),
    (POSE, "The head turns right by about 21 degrees.", "direction"),
    (POSE, "He looks to the left.", "21"),
    (POSE, "Turned left by 30 degrees.", "21"),
    (EXPRESSION, "A sad face with the mouth open.", "expression"),
    (EXPRESSION, "She looks happy, her mouth open.", "says \"She\" but the labels say male"),
    (LIGHT, "A blurry but evenly exposed 224x224 image with moderate contrast.", "sharp"),
    (LIGHT, "A dark, sharp 224x224 image with moderate contrast.", "evenly exposed"),
]


@pytest.mark.parametrize(("template", "rewrite"), FAITHFUL)
def test_a_faithful_rewrite_is_kept(template: str, rewrite: str):
    assert unfaithful(template, rewrite, MAN) is None


@pytest.mark.parametrize(("template", "rewrite", "why"), UNFAITHFUL)
def test_a_rewrite_that_loses_changes_or_adds_a_fact_is_not(template: str, rewrite: str, why: str):
    found = unfaithful(template, rewrite, MAN)
    assert found is not None and why in found, found


def test_every_templates_text_is_faithful_to_itself():
    """The check never refuses the text it guards: a rewrite that changes nothing is always kept."""
    from facecorpus.generation.rewrite import known_labels

    faces = [None, *[measured_face(*p, **SMALL_FACE) for p in [(0, 0, 0, "happy", 10, 40), (-35, 12, -14, "sad", 80, 120),
                                                 (40, -25, 20, "surprise", 400, 220), (5, -20, 3, "fear", 200, 100)]]]
    bad = []
    for i, item in fact_grid(_items()[0], faces, every=3):
        caption, qa, _ = generate_from_templates(item, list(DEFAULT_CATEGORIES), i)
        for text in [caption, *(q.answer for q in qa)]:
            if why := unfaithful(text, text, known_labels(item)):
                bad.append((text, why))
    assert bad == []


# ------------------------------------------------------------------------------------- the generate stage


class ScriptedModel(BaseHTTPRequestHandler):
    """/v1/models and /v1/chat/completions; the answer to 'Rewrite: X' is `script(X)` (None: HTTP 400)."""

    script: Callable[[str], str | None] = staticmethod(lambda text: text)
    seen: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][-1]["content"]
        text = re.sub(r"^\s*Rewrite:\s*", "", user)
        type(self).seen.append(text)
        answer = type(self).script(text)
        if answer is None:
            self._send(400, {"error": {"message": "scripted failure", "type": "invalid_request_error"}})
            return
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "scripted",
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": answer}}],
                         "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}})


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[ScriptedModel]]]:
    handler = type("Handler", (ScriptedModel,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()


def _cfg(base_url: str, **rewrite: str) -> GenerationConfig:
    return GenerationConfig.model_validate({
        "generator": "openai", "prompt_set": "rewrite", "categories": ["demographics", "expression", "pose"],
        "openai": {"base_url": base_url, "model": "scripted", "api_key_env": None, "preflight": False,
                   "concurrency": 2, "timeout_s": 30},
        "retries": {"max_attempts": 1}, "rewrite": rewrite})


def _items() -> list:
    from facecorpus.image_check import CheckImage
    from facecorpus.image_config import ImageConfig

    items = []
    for item in work_items(2):
        item.data = item.jpeg
        (item,) = list(CheckImage(ImageConfig()).run(item))
        item.pixels = None
        item.faces, item.primary_face = [measured_face(-30, 0, 0, "happy", 400, 120, **SMALL_FACE)], 0
        items.append(item)
    return items


def _script(text: str) -> str | None:
    if text.startswith("A photo of"):
        return text.replace("A photo of", "A picture of", 1)  # faithful: kept
    if text.startswith(("The face appears", "Their apparent", "The person presents", "This is")):
        return "A young girl in a red dress."  # loses and changes facts: the template stays
    if "expression" in text or "looks" in text:
        return "{2} " + text  # junk (template syntax): the template stays
    return None  # the pose request fails: the template stays


def test_each_text_keeps_its_rewrite_only_when_faithful_and_clean(scripted, tmp_path: Path):
    base_url, handler = scripted
    handler.script = staticmethod(_script)
    items = _items()
    kept, rejects, totals = run_generation(_cfg(base_url), copy.deepcopy(items), str(tmp_path / "cache"))
    assert rejects == [] and len(kept) == 2
    for item in kept:
        templates = generate_from_templates(next(i for i in items if i.key == item.key), ["demographics", "expression", "pose"], 0)
        assert item.caption == templates[0].replace("A photo of", "A picture of", 1)
        assert [q.answer for q in item.qa] == [q.answer for q in templates[1]]  # all three fell back
        assert [q.question for q in item.qa] == [q.question for q in templates[1]]
        assert "rewritten:caption" in item.flags
        assert {f"template_fallback:{c}" for c in ("demographics", "expression", "pose")} <= set(item.flags)
        assert item.provenance.text_sources["caption"] == "llm_rewrite"
        assert "is lost" in item.provenance.text_sources["demographics"] or "says" in item.provenance.text_sources["demographics"]
        assert "template syntax" in item.provenance.text_sources["expression"]
        assert "the request failed" in item.provenance.text_sources["pose"]
    from facecorpus.generation.rewrite import template_texts

    # one request per distinct text (caption and three answers per item; an identical one is bought once)
    assert set(handler.seen) == {t for i in items for _, t in template_texts(i, ["demographics", "expression", "pose"], 0).texts()}


def test_on_unfaithful_reject_rejects_the_sample(scripted, tmp_path: Path):
    base_url, handler = scripted
    handler.script = staticmethod(_script)
    kept, rejects, _ = run_generation(_cfg(base_url, on_unfaithful="reject"), _items(), str(tmp_path / "cache"))
    assert kept == [] and {r.reason for r in rejects} == {"rewrite_unfaithful"}
