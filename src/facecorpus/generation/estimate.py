"""Token estimates before a request is sent: for the TPM budget and for `--dry-run` cost estimates.

Text: about four characters per token plus a few tokens per message (OpenAI's rule of thumb for
English). Images: OpenAI's published rule for GPT-4o-class models — `low` detail is 85 tokens;
otherwise the image is fitted into 2048×2048, its shorter side brought down to 768, and each 512-px
tile costs 170 tokens on top of 85. Estimates, not bills: the response's `usage` is what is counted.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

_PER_MESSAGE = 4


def image_tokens(width: int, height: int, detail: str | None = None) -> int:
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def _data_url_size(url: str) -> tuple[int, int] | None:
    from PIL import Image

    try:
        raw = base64.b64decode(url.split(",", 1)[1])
        return Image.open(io.BytesIO(raw)).size
    except Exception:  # noqa: BLE001 - an estimate: an unreadable image counts as one tile
        return None


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Estimated prompt tokens of chat messages (text and data-URL images)."""
    total = 3
    sizes: dict[str, tuple[int, int] | None] = {}
    for m in messages:
        total += _PER_MESSAGE
        content = m.get("content")
        if isinstance(content, str):
            total += math.ceil(len(content) / 4)
            continue
        for part in content or []:
            if part.get("type") == "text":
                total += math.ceil(len(part.get("text", "")) / 4)
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"]
                if url not in sizes:
                    sizes[url] = _data_url_size(url) if url.startswith("data:") else None
                size = sizes[url] or (512, 512)
                total += image_tokens(size[0], size[1], part["image_url"].get("detail"))
    return total


def request_tokens(body: dict[str, Any]) -> int:
    """What a request may consume against a TPM limit: estimated prompt + max_tokens (providers
    count the completion allowance when admitting a request). Without max_tokens (sent as null) only
    the prompt is known here; the completion is settled from `usage` when it arrives."""
    schema = body.get("response_format")
    extra = math.ceil(len(str(schema)) / 4) if schema else 0
    return prompt_tokens(body["messages"]) + extra + int(body.get("max_tokens") or 0)
