"""A sample's QA pairs as the conversations training frameworks read.

- `sharegpt`: FairFaceGPT's LLaMA-Factory layout — `conversations` of `{"from", "value"}` turns with
  `human` / `assistant`, `<image>` at the start of the human turn, and an `image` path;
- `llava`: LLaVA's layout — `id`, `image`, `conversations` with `human` / `gpt` and `<image>\\n` in the
  first human turn only;
- `messages`: the chat-template layout of Hugging Face processors (`role`, typed `content` parts).

`turns="qa"` gives one single-turn conversation per QA pair (what FairFaceGPT trained on: 8 per
image); `turns="sample"` gives one multi-turn conversation per sample, the image shown once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ..records import QAPair

Format = Literal["sharegpt", "llava", "messages"]
Turns = Literal["qa", "sample"]
FORMATS: tuple[str, ...] = ("sharegpt", "llava", "messages")
TURNS: tuple[str, ...] = ("qa", "sample")
IMAGE_TOKEN = "<image>"


def sharegpt_turns(qa: Sequence[QAPair]) -> list[dict[str, str]]:
    turns = []
    for i, q in enumerate(qa):
        turns.append({"from": "human", "value": (IMAGE_TOKEN if i == 0 else "") + q.question})
        turns.append({"from": "assistant", "value": q.answer})
    return turns


def llava_turns(qa: Sequence[QAPair]) -> list[dict[str, str]]:
    turns = []
    for i, q in enumerate(qa):
        turns.append({"from": "human", "value": (IMAGE_TOKEN + "\n" if i == 0 else "") + q.question})
        turns.append({"from": "gpt", "value": q.answer})
    return turns


def message_turns(qa: Sequence[QAPair]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for i, q in enumerate(qa):
        content: list[dict[str, str]] = [{"type": "image"}] if i == 0 else []
        turns.append({"role": "user", "content": [*content, {"type": "text", "text": q.question}]})
        turns.append({"role": "assistant", "content": [{"type": "text", "text": q.answer}]})
    return turns


BUILDERS = {"sharegpt": sharegpt_turns, "llava": llava_turns, "messages": message_turns}


def conversation(qa: Sequence[QAPair], fmt: str) -> list[dict[str, Any]]:
    """The turns of one conversation about one image in format `fmt`."""
    try:
        return BUILDERS[fmt](qa)
    except KeyError:
        raise ValueError(f"unknown conversation format {fmt!r}; choose one of {', '.join(FORMATS)}") from None


def grouped(qa: Sequence[QAPair], turns: str) -> list[list[QAPair]]:
    """QA pairs grouped into conversations: one per pair ('qa') or all together ('sample')."""
    if turns == "qa":
        return [[q] for q in qa]
    if turns == "sample":
        return [list(qa)] if qa else []
    raise ValueError(f"unknown turns {turns!r}; choose qa or sample")
