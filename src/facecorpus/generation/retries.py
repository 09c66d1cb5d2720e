"""The one retry layer for LLM calls (tenacity), and how errors are told apart and made safe to log.

Retried: 429, 408, 409, 5xx, timeouts and connection errors — with exponential backoff and full
jitter, or exactly the server's `Retry-After` / `retry-after-ms` when it sends one. Not retried:
other 4xx (a bad request stays bad). The openai client's own retries are off (`max_retries=0`) and
Beam's RemoteModelHandler retries are off (`num_retries=0`), so a request is never retried by two
layers at once.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable
from typing import Any

import openai
import tenacity

from .config import RetryConfig

RETRY_STATUS = frozenset({408, 409, 429})
_RNG = random.Random()  # jitter only; seeding a new one per policy costs an os.urandom
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk|key)-[A-Za-z0-9_\-*]{6,}")
_KEY_ECHO = re.compile(r"(Incorrect API key provided:)\s*\S+", re.IGNORECASE)


class MalformedResponse(Exception):
    """A 200 whose body is not a chat completion (a proxy's HTML error page, say): retried like a 502."""


#: answers that say the endpoint is overloaded (as opposed to this request being wrong)
OVERLOAD_STATUS = frozenset({429, 502, 503, 504, 529})


def status_of(exc: BaseException) -> int | None:
    return exc.status_code if isinstance(exc, openai.APIStatusError) else None


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: rate limits, server errors, timeouts, dropped connections."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, MalformedResponse):
        return True
    status = status_of(exc)
    return status is not None and (status in RETRY_STATUS or status >= 500)


def is_overload(exc: BaseException) -> bool:
    """True for failures that say the endpoint has too much to do: rate limits, overloaded or gateway
    errors, timeouts, refused or dropped connections. What adaptive concurrency backs off from."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    return status_of(exc) in OVERLOAD_STATUS


def retry_after_s(exc: BaseException | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(parsed.timestamp() - (now if now is not None else time.time()), 0.0)


class BackoffWait(tenacity.wait.wait_base):
    """Retry-After when given (capped at max_s, plus up to 10% jitter), else full-jitter exponential."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.rng = rng or _RNG

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = retry_after_s(exc)
        if asked is not None:
            return min(asked, self.max_s) * (1.0 + 0.1 * self.rng.random())
        ceiling = min(self.max_s, self.initial_s * 2 ** (retry_state.attempt_number - 1))
        return self.rng.uniform(0.0, ceiling)


class StopAfterBusyDelay(tenacity.stop.stop_base):
    """Give up once `max_s` have passed since the first attempt, not counting `excluded()` seconds
    (the time the request spent waiting for a free slot: a queue on our side is not the endpoint
    failing, and must not use up a request's retry budget)."""

    def __init__(self, max_s: float, excluded: Callable[[], float]) -> None:
        self.max_s = max_s
        self.excluded = excluded

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return (retry_state.seconds_since_start or 0.0) - self.excluded() >= self.max_s


def retrying(
    cfg: RetryConfig,
    on_retry: Callable[[tenacity.RetryCallState], None] | None = None,
    excluded: Callable[[], float] = lambda: 0.0,
) -> tenacity.Retrying:
    """A tenacity policy for one request; the last exception is re-raised when it gives up.
    `excluded()`: seconds of the request's life that do not count towards `max_total_s`."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=BackoffWait(cfg.initial_s, cfg.max_s),
        stop=tenacity.stop_after_attempt(cfg.max_attempts) | StopAfterBusyDelay(cfg.max_total_s, excluded),
        before_sleep=on_retry,
        reraise=True,
    )


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with the given secrets and anything shaped like an API key removed (servers echo keys
    back in 401 messages, partly masked — still too much for a rejects file)."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    text = _KEY_ECHO.sub(r"\1 [redacted]", text)
    return _KEY_LIKE.sub("[redacted]", text)


def describe_error(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """One line about an endpoint failure, safe for rejects and logs."""
    status = status_of(exc)
    if isinstance(exc, openai.APITimeoutError):
        what = "the request timed out"
    elif isinstance(exc, openai.APIConnectionError):
        what = "could not connect to the endpoint"
    elif status is not None:
        body: Any = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        if message is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message")
        what = f"HTTP {status}" + (f": {message}" if message else "")
    else:
        what = f"{type(exc).__name__}: {exc}"
    return redact(" ".join(str(what).split())[:300], secrets)
