"""Transport: getting one response from the endpoint, paid for once and accounted.

`Transport` owns a worker's connection to the endpoint: the thread pool the client's requests run
on, one `openai.OpenAI` client per pool thread, the slots that bound requests at the endpoint, the
RPM/TPM budgets, the one retry layer (tenacity) and the price of each response. `buy(body, spend)`
returns the response as a cache entry (content, refusal, finish reason, model, usage, cost) or
raises `Rejected` (`llm_error`) with a one-line, secret-free reason.

The requests at the endpoint at once (slots) follow the endpoint (`concurrency.ConcurrencyLimit`:
AIMD on overload and rising latency, up to `openai.concurrency`, and for `base_url: local` never more
than the embedded server's slots). A request's timeout starts once it has a slot: waiting for one is
not part of it, nor of the retry layer's `max_total_s`. Retries back off (full jitter, Retry-After)
and then wait for a slot like any request, so they do not pile onto a saturated endpoint. The pool
has twice `concurrency` threads, so threads busy judging, caching or waiting for the GIL do not
leave slots empty.
Each pool thread has its own openai client (one keep-alive connection each, one shared TLS
context): a single client's connection pool takes a lock and scans all its connections on every
request, which cost ~0.5 ms of CPU a request at 64 threads.
"""

from __future__ import annotations

import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import openai
import tenacity

try:  # the openai client ships its own copy of httpx (httpx2) since 3.x; older ones use httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx  # type: ignore[no-redef]

from .. import progress
from ..rejection import Rejected
from .accounting import Spend, TokenUsage, cost_usd, price_for
from .concurrency import OK, OTHER, OVERLOAD, ConcurrencyLimit
from .config import GenerationConfig
from .estimate import request_tokens
from .ledger import SpendLedger
from .limits import RateLimits
from .retries import MalformedResponse, describe_error, is_overload, is_transient, retrying, status_of

#: the openai client's own default (a thread's client only ever opens one connection)
CONNECTION_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)


class _SentTransport(httpx.HTTPTransport):
    """httpx's transport, telling `on_sent` (a thread-local callback) the moment a request's body has
    been written to the socket: the point from which the endpoint has the request. The spend ledger
    records a request then, not before (a request that never left is not an attempt)."""

    def __init__(self, local: threading.local, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._local = local

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        on_sent = getattr(self._local, "on_sent", None)
        if on_sent is not None:
            request.extensions["trace"] = on_sent
        return super().handle_request(request)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class Transport:
    """One per worker: the pool, per-thread openai clients, slots, budgets, retries, prices."""

    def __init__(
        self,
        cfg: GenerationConfig,
        base_url: str,
        api_key: str | None,
        server_slots: int | None = None,
        ledger: SpendLedger | None = None,
        ledger_stage: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.ledger_stage = ledger_stage  # tags this transport's ledger lines (the judge's: "judge")
        self.secrets = (api_key,) if api_key else ()
        # max_retries=0: tenacity below is the only retry layer
        self.openai = openai.OpenAI(
            api_key=api_key or "no-key-required",
            base_url=base_url,
            max_retries=0,
            timeout=cfg.openai.request_timeout(),
        )
        self._tls = ssl.create_default_context()  # one TLS context for all the per-thread clients (~20 ms each)
        self._local = threading.local()
        self._thread_clients: list[openai.OpenAI] = []
        self._clients_lock = threading.Lock()
        # `concurrency` bounds the requests at the endpoint (the slots), not the threads: twice as many
        # threads let some judge, cache and wait for the GIL while others hold every slot
        ceiling = min(cfg.openai.concurrency, server_slots) if server_slots else cfg.openai.concurrency
        self.slots = ConcurrencyLimit(ceiling, adaptive=cfg.openai.adaptive_concurrency)
        self.pool = ThreadPoolExecutor(max_workers=2 * cfg.openai.concurrency, thread_name_prefix="facecorpus-llm")
        self.limits = RateLimits(cfg.limits.rpm, cfg.limits.tpm)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for c in [self.openai, *self._thread_clients]:
            c.close()

    def api(self) -> openai.OpenAI:
        """This thread's openai client: a copy of `self.openai` (same key, URL, timeout, max_retries=0)
        with its own connection pool, so that request threads never share a pool lock or connection list."""
        mine: openai.OpenAI | None = getattr(self._local, "client", None)
        if mine is None:
            if self.ledger is not None:  # a transport that says when the body has left
                http = openai.DefaultHttpxClient(
                    transport=_SentTransport(self._local, verify=self._tls, limits=CONNECTION_LIMITS))
            else:
                http = openai.DefaultHttpxClient(verify=self._tls)
            mine = self.openai.copy(http_client=http)
            self._local.client = mine
            with self._clients_lock:
                self._thread_clients.append(mine)
        return mine

    def buy(self, body: dict[str, Any], spend: Spend) -> dict[str, Any]:
        """One fresh response for `body` as a cache entry; counts attempts, retries and the spend."""
        estimate = request_tokens(body) if self.limits.tokens is not None else 0  # only a TPM budget needs it
        policy = self._retrying()
        self._local.spend = spend  # read by _on_retry: this thread's request
        self._local.slot_wait = 0.0  # read by the retry layer's stop: time in the slot queue is not spent
        try:
            for attempt in policy:
                with attempt:
                    self.limits.acquire(estimate)
                    response = self._post(body, spend)
        except Exception as e:  # noqa: BLE001 - every endpoint failure becomes a reject, never a crash
            transient = is_transient(e)
            detail = describe_error(e, self.secrets)
            if transient:
                r = self.cfg.retries
                detail += f" (gave up after {r.max_attempts} attempts or {r.max_total_s:.0f}s)"
            raise Rejected("llm_error", detail, retryable=transient) from None
        raw_usage = response.get("usage")
        usage = TokenUsage.from_api(raw_usage if isinstance(raw_usage, dict) else None)
        self.limits.settle(estimate, usage.prompt + usage.completion if isinstance(raw_usage, dict) else None)
        entry = self._entry(response, body["model"], usage)
        spend.fresh_response(usage, entry["cost_usd"])
        return entry

    def _post(self, body: dict[str, Any], spend: Spend) -> dict[str, Any]:
        """One HTTP attempt in a slot; what it says about the endpoint's load goes back to the limit,
        and the ledger hears of it (sent, then answered or failed) before the slot is free again."""
        asked = time.monotonic()
        ticket = self.slots.acquire()
        self._local.slot_wait += ticket[0] - asked
        spend.add("attempts")
        rid = self._ledger_id() if self.ledger is not None else None
        signal = OTHER
        progress.in_flight("llm.in_flight", 1)  # the live progress view (progress.py)
        try:
            # the body as rendered, byte for byte (the same JSON a Batch API line carries);
            # `chat.completions.create` would re-walk it against its TypedDicts, ~4 ms a request,
            # and the answer is read as plain JSON (building a ChatCompletion model: ~0.1 ms more)
            response = self.api().post("/chat/completions", cast_to=dict, body=body)
            if isinstance(response, dict) and isinstance(response.get("choices"), list):
                signal = OK
                if rid is not None:
                    raw_usage = response.get("usage")
                    usage = TokenUsage.from_api(raw_usage if isinstance(raw_usage, dict) else None)
                    self.ledger.answered(rid, usage, self.cost(body["model"], usage, batch=False),  # type: ignore[union-attr]
                                         self.ledger_stage)
        except Exception as e:
            signal = OVERLOAD if is_overload(e) else OTHER
            if rid is not None:
                self.ledger.failed(rid, status_of(e) or type(e).__name__)  # type: ignore[union-attr]
            raise
        finally:
            progress.in_flight("llm.in_flight", -1)
            self.slots.release(ticket, signal)
        if signal != OK:
            if rid is not None:
                self.ledger.failed(rid, "malformed")  # type: ignore[union-attr]
            raise MalformedResponse("the endpoint answered with something that is not a chat completion")
        return response

    def _ledger_id(self) -> str:
        """A ledger id for the attempt about to go out; its "sent" line is written by the transport's
        trace once the body is on the wire (`_SentTransport`), so an attempt that fails to connect is
        not counted as received."""
        assert self.ledger is not None
        rid = self.ledger.new_id()
        ledger = self.ledger
        stage = self.ledger_stage

        def on_sent(event: str, _info: dict[str, Any]) -> None:
            if event.endswith("send_request_body.complete"):
                ledger.sent(rid, stage)

        self._local.on_sent = on_sent
        return rid

    def _entry(self, response: dict[str, Any], model: str, usage: TokenUsage) -> dict[str, Any]:
        choice = response["choices"][0] if response["choices"] else None
        choice = choice if isinstance(choice, dict) else {}
        message = choice.get("message")
        message = message if isinstance(message, dict) else {}
        return {
            "content": _text_or_none(message.get("content")),
            "refusal": _text_or_none(message.get("refusal")),
            "finish_reason": _text_or_none(choice.get("finish_reason")),
            "model": _text_or_none(response.get("model")) or model,
            "usage": {"prompt": usage.prompt, "completion": usage.completion, "cached": usage.cached},
            "cost_usd": self.cost(model, usage, batch=False),
            "batch_id": None,
            "created_at": datetime.now(tz=UTC).replace(microsecond=0).isoformat(),
        }

    def cost(self, model: str, usage: TokenUsage, batch: bool) -> float:
        """Dollars for one response of `model` at the recipe's prices."""
        return cost_usd(price_for(self.cfg.prices, model), usage, batch, self.cfg.batch_discount)

    def _retrying(self) -> tenacity.Retrying:
        """This thread's tenacity policy, reused request after request (a new one per request is
        ~35 us and a reference cycle each, left for the garbage collector's pauses)."""
        policy: tenacity.Retrying | None = getattr(self._local, "retrying", None)
        if policy is None:
            policy = self._local.retrying = retrying(self.cfg.retries, self._on_retry, self._slot_wait)
        return policy

    def _slot_wait(self) -> float:
        return float(getattr(self._local, "slot_wait", 0.0))

    def _on_retry(self, state: tenacity.RetryCallState) -> None:
        spend: Spend = self._local.spend
        exc = state.outcome.exception() if state.outcome else None
        spend.add("retries")
        spend.add(f"retry.{status_of(exc) or type(exc).__name__}" if exc else "retry.unknown")
