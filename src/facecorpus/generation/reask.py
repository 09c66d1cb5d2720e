"""The re-ask policy: which failed answers get one follow-up turn, and what that turn says.

A refusal, a cut-off, an empty answer or unparsable JSON is asked once more, in the same
conversation: the model's reply as an assistant turn, then a user turn that says what was wrong.
A content-filter stop is not re-asked (the same request would be stopped again). Endpoint failures
(`llm_error`) never reach here: the retry layer already tried.
"""

from __future__ import annotations

from typing import Any

from ..rejection import Rejection
from ..validation.refusals import CORRECTIVE_MESSAGE
from .config import OpenAIConfig
from .outcome import Completion

#: how much of the failed reply is sent back as the assistant turn
PREVIOUS_TURN_CHARS = 4000
NOT_REASKED = frozenset({"llm_content_filter"})


def should_reask(failure: Rejection | None, cfg: OpenAIConfig) -> bool:
    """True when a judged failure is worth the one follow-up turn."""
    return failure is not None and cfg.reask and failure.reason not in NOT_REASKED


def reask_message(failure: Rejection, structured: bool, cfg: OpenAIConfig) -> str:
    """The user turn that tells the model what was wrong with its reply."""
    if failure.reason == "refusal":
        return cfg.refusal_message or CORRECTIVE_MESSAGE
    if failure.reason == "llm_truncated":
        # about half a token budget's worth of words; with no max_tokens sent, the endpoint's own limit cut it
        words = max(20, int((cfg.max_tokens or 600) * 0.5))
        what = "the JSON object, with shorter texts" if structured else "the answer"
        return f"Your reply was cut off. Give {what} again, complete, in at most {words} words."
    if structured:
        return "Your reply was not a JSON object that follows the schema. Reply again with only that JSON object."
    return "Your reply was empty. Please answer the request."


def follow_up(messages: list[dict[str, Any]], reply: Completion, failure: Rejection, structured: bool,
              cfg: OpenAIConfig) -> list[dict[str, Any]]:
    """The conversation of the re-ask: the original messages, the failed reply, the corrective turn."""
    previous = (reply.content or reply.refusal or "")[:PREVIOUS_TURN_CHARS]
    return messages + [
        {"role": "assistant", "content": previous},
        {"role": "user", "content": reask_message(failure, structured, cfg)},
    ]
