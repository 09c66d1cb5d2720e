"""Judging one response: pure functions from a `Completion` to an answer or a `Rejection`.

Checked in order: the API's refusal field, a cut-off (`finish_reason == "length"`), the endpoint's
content filter, an empty text; then, for structured prompts, JSON that follows the request's
json_schema, and a refusal in the text. One validator decides and words the error: fastjsonschema,
which compiles a schema to Python once (~50 ms) and then checks an answer in tens of µs — ~25x less
than jsonschema's interpreter on our schemas, measured side by side.
A refusal is returned with its text (or data) so the caller may keep it after the re-ask.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import fastjsonschema

from ..rejection import Rejection
from ..validation.refusals import find_refusal
from .outcome import Completion

#: the value of a judged answer: plain text, or the parsed JSON of a structured request
Value = str | dict[str, Any] | None


_VALIDATORS: dict[str, Callable[[Any], Any]] = {}  # by the schema's JSON: a handful per run
_BY_OBJECT: dict[int, tuple[dict[str, Any], Callable[[Any], Any]]] = {}  # the same schema dict seen again
_LOCK = threading.Lock()
_MAX = 64


def validator_for(response_format: dict[str, Any]) -> Callable[[Any], Any]:
    """The compiled validator of a request's json_schema (raises JsonSchemaValueException).

    Rendered requests of one recipe share one response_format dict, so the validator is found by
    that object's identity (held here, so the id cannot be reused) before falling back to its JSON.
    """
    seen = _BY_OBJECT.get(id(response_format))
    if seen is not None and seen[0] is response_format:
        return seen[1]
    schema = response_format["json_schema"]["schema"]
    text = json.dumps(schema, sort_keys=True)
    with _LOCK:
        validator = _VALIDATORS.get(text)
        if validator is None:
            if len(_VALIDATORS) >= _MAX:
                _VALIDATORS.clear()
            validator = _VALIDATORS[text] = fastjsonschema.compile(schema)
        if len(_BY_OBJECT) >= _MAX:
            _BY_OBJECT.clear()
        _BY_OBJECT[id(response_format)] = (response_format, validator)
    return validator


def refusal_in(data: dict[str, Any]) -> str | None:
    """The first refusal phrase in a structured answer's caption or answers, or None."""
    texts = [data.get("caption", "")] + [qa.get("answer", "") for qa in (data.get("qa") or {}).values()]
    texts += list((data.get("answers") or {}).values())
    for t in texts:
        found = find_refusal(t)
        if found:
            return found.phrase
    return None


def judge(c: Completion, response_format: dict[str, Any] | None, max_tokens: int | None) -> tuple[Value, Rejection | None]:
    """(answer, None) or (answer or None, Rejection) for one response. Refusals in the text come back
    as `refusal` failures with the answer (the caller decides whether to keep it after the re-ask)."""
    if c.refusal:
        return None, Rejection("refusal", f"the model refused: {' '.join(c.refusal.split())[:200]}")
    if c.finish_reason == "length":
        limit = f"max_tokens={max_tokens}" if max_tokens is not None else "the endpoint's own limit (no max_tokens sent)"
        return None, Rejection("llm_truncated", f"the answer was cut off at {limit}")
    if c.finish_reason == "content_filter":
        return None, Rejection("llm_content_filter", "the endpoint's content filter stopped the answer")
    text = (c.content or "").strip()
    if not text:
        return None, Rejection("llm_empty", "the endpoint returned no text")
    if response_format is not None:
        try:
            data = json.loads(text)
            validator_for(response_format)(data)
        except fastjsonschema.JsonSchemaValueException as e:
            where = "/".join(str(p) for p in e.path[1:]) or "(top)"  # path[0] is fastjsonschema's 'data'
            return None, Rejection("llm_invalid_json", f"the JSON does not follow the schema at {where}: {e.message[:150]}")
        except ValueError as e:
            return None, Rejection("llm_invalid_json", f"the answer is not valid JSON: {str(e)[:150]}")
        refused = refusal_in(data)
        if refused:
            return data, Rejection("refusal", f"the answer refuses: \"{refused}\"")
        return data, None
    refusal = find_refusal(text)
    if refusal is not None:
        return text, Rejection("refusal", f"the answer refuses ({refusal.kind}): \"{refusal.phrase}\"")
    return text, None
