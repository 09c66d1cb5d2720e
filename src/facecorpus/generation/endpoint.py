"""What a chat request is and where it goes: the endpoint's identity, the model, the request body.

Shared by the online client, the Batch API step and the dry run, so that all three send (and cache
under) exactly the same body.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .config import GenerationConfig

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def endpoint_id(base_url: str, local_model: str) -> str:
    """The endpoint part of a cache key. Loopback servers are identified by path, not port (a local
    server gets a new port each start, its answers stay the same); `local` is its model pack."""
    if base_url == "local":
        return f"local:{local_model}"
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if host in _LOOPBACK:
        return f"loopback{parts.path.rstrip('/')}"
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path.rstrip('/')}"


def model_name(cfg: GenerationConfig) -> str:
    """The model sent in requests: the pack name for the embedded server, else `openai.model`."""
    return cfg.openai.local_model if cfg.openai.base_url == "local" else cfg.openai.model


def chat_body(cfg: GenerationConfig, messages: list[dict[str, Any]], response_format: dict[str, Any] | None) -> dict[str, Any]:
    """The chat.completions body: model, messages and the recipe's parameters (also a Batch API line's body).

    Keys come in the order openai-python's `chat.completions.create` writes them (model, messages, then
    the parameters given in its alphabetical order, `extra_body` last; openai-python 3.x, the version the tests
    install), so a body is byte for byte what a script calling `create` with the same arguments sends.
    A parameter set to null is not sent at all. The cache key does not depend on the order
    (cache.cache_key sorts keys).
    """
    o = cfg.openai
    body: dict[str, Any] = {"model": model_name(cfg), "messages": messages}
    for name, value in (("max_tokens", o.max_tokens), ("response_format", response_format), ("seed", o.seed),
                        ("temperature", o.temperature)):
        if value is not None:
            body[name] = value
    for name, value in o.extra_body.items():
        body.setdefault(name, value)  # the recipe's own keys win over extra_body
    return body
