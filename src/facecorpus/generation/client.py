"""The LLM engine of a worker: many requests in flight, each cached, budgeted, retried and judged.

`LLMClient.submit(prompt)` puts every request of one item on a thread pool and returns at once with a
`PendingOutcome`; its `outcome()` is the item's `GenerationOutcome`. At most `openai.concurrency`
requests are at the endpoint at once (slots); the pool has twice as many threads, so that threads
busy judging, caching or waiting for the GIL do not leave slots empty. The generate stage keeps
submitting while earlier items are still in flight, so the endpoint sees `concurrency` requests in
flight without gaps (`generate(prompts)` is the blocking form). Each pool
thread has its own `openai.OpenAI` client (one keep-alive connection each, one shared TLS context): a
single client's connection pool takes a lock and scans all its connections on every request, which
cost ~0.5 ms of CPU a request at 64 threads. A request:

1. looks up the response cache (a hit costs nothing);
2. waits for the RPM/TPM budget;
3. calls `chat.completions.create` under the tenacity policy (the only retry layer);
4. stores the response in the cache before anything else looks at it (paid for = kept);
5. is judged: API refusal, cut off (`finish_reason == "length"`), empty, unparsable JSON, or a refusal
   in the text — each gets one re-ask (a follow-up turn that says what was wrong), then the item is
   rejected (`refusal`, `llm_truncated`, `llm_empty`, `llm_invalid_json`, `llm_error`). A text that
   still refuses after the re-ask is kept for validation, which rejects it `refusal` per category.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import openai
import tenacity

from ..prompting.render import PromptRequest, RenderedPrompt
from ..records import LLMUsage, QAPair
from ..validation.refusals import CORRECTIVE_MESSAGE, find_refusal
from .accounting import Spend, TokenUsage, cost_usd, price_for
from .cache import ResponseCache, cache_key
from .config import GenerationConfig
from .estimate import request_tokens
from .limits import RateLimits
from .retries import MalformedResponse, describe_error, is_transient, retrying, status_of

log = logging.getLogger("facecorpus")

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_PREVIOUS_TURN_CHARS = 4000


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


@functools.lru_cache(maxsize=64)
def schema_validator(schema_json: str) -> Any:
    """A compiled validator per response schema (jsonschema.validate re-checks the schema on every call)."""
    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_ANNOTATIONS = frozenset({"title", "description"})
#: size keywords: (the JSON type they apply to, the test of len(value) against the keyword's number)
_SIZE_BOUNDS: dict[str, tuple[type, Callable[[int, int], bool]]] = {
    "minLength": (str, operator.ge),
    "maxLength": (str, operator.le),
    "minItems": (list, operator.ge),
    "maxItems": (list, operator.le),
}


def conforms(schema: Any, value: Any) -> bool:
    """True only when `value` certainly follows `schema`, checked directly for the keywords our response
    schemas use (type, properties, required, additionalProperties: false, min/maxLength, items,
    min/maxItems, enum). Anything else answers False, and the caller asks jsonschema, which then
    decides and words the error. The common case, a valid answer, costs a few µs instead of ~50."""
    if not isinstance(schema, dict):
        return False
    for keyword, want in schema.items():
        if keyword == "type":
            check = _JSON_TYPES.get(want) if isinstance(want, str) else None
            if check is None or not check(value):
                return False
        elif keyword == "properties":
            if isinstance(value, dict) and not all(
                k not in value or conforms(sub, value[k]) for k, sub in want.items()
            ):
                return False
        elif keyword == "required":
            if isinstance(value, dict) and not all(k in value for k in want):
                return False
        elif keyword == "additionalProperties":
            if want is not False:
                return False
            if isinstance(value, dict) and not set(value) <= set(schema.get("properties", {})):
                return False
        elif keyword in _SIZE_BOUNDS:
            kind, within = _SIZE_BOUNDS[keyword]
            if isinstance(value, kind) and not within(len(value), want):
                return False
        elif keyword == "items":
            if isinstance(value, list) and not all(conforms(want, v) for v in value):
                return False
        elif keyword == "enum":
            if not any(type(value) is type(e) and value == e for e in want):
                return False
        elif keyword not in _ANNOTATIONS:
            return False  # a keyword this check does not know: let jsonschema decide
    return True


def model_name(cfg: GenerationConfig) -> str:
    """The model sent in requests: the pack name for the embedded server, else `openai.model`."""
    return cfg.openai.local_model if cfg.openai.base_url == "local" else cfg.openai.model


def chat_body(cfg: GenerationConfig, messages: list[dict[str, Any]], response_format: dict[str, Any] | None) -> dict[str, Any]:
    """The chat.completions body: model, messages and the recipe's parameters (also a Batch API line's body)."""
    o = cfg.openai
    body: dict[str, Any] = {**o.extra_body, "model": model_name(cfg), "messages": messages, "max_tokens": o.max_tokens}
    if o.temperature is not None:
        body["temperature"] = o.temperature
    if o.seed is not None:
        body["seed"] = o.seed
    if response_format is not None:
        body["response_format"] = response_format
    return body


@dataclass(frozen=True)
class Failure:
    """Why an item could not be generated: a reject reason, one human sentence, retryable or not."""

    reason: str
    detail: str
    retryable: bool = False


class GenerationFailed(Exception):  # noqa: N818 - carries a Failure, reads as a state
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


@dataclass
class Completion:
    """One response, fresh or from the cache."""

    key: str
    content: str | None
    refusal: str | None
    finish_reason: str | None
    usage: TokenUsage
    cost_usd: float
    model: str | None
    from_cache: bool
    batch_id: str | None = None
    bought_now: bool = False  # paid for by this run (online now, or by this run's batch)


@dataclass
class Answer:
    """The outcome of one prompt request after at most one re-ask."""

    request: PromptRequest
    completions: list[Completion]
    text: str | None = None
    data: dict[str, Any] | None = None
    failure: Failure | None = None
    refusal_kept: bool = False


@dataclass
class GenerationOutcome:
    """What the generate stage writes onto an item (or the failure that rejects it)."""

    caption: str | None = None
    qa: list[QAPair] = field(default_factory=list)
    llm_model: str | None = None
    usage: LLMUsage = field(default_factory=LLMUsage)
    spend: Spend = field(default_factory=Spend)
    failure: Failure | None = None
    flags: list[str] = field(default_factory=list)


@dataclass
class BatchContext:
    """For Batch API mode: first-round responses must come from the cache (the batch filled it).

    `failures`: cache key → the batch's error for it; `fresh_batch_ids`: batches completed by this run
    (their responses were counted as requests by the batch step, not as cache hits here).
    """

    failures: dict[str, str] = field(default_factory=dict)
    fresh_batch_ids: frozenset[str] = frozenset()


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def first_paragraph(text: str, max_chars: int = 400) -> str:
    """A caption from a long answer: its first paragraph, cut at a sentence end within `max_chars`."""
    para = next((p.strip() for p in text.strip().split("\n\n") if p.strip()), text.strip())
    para = " ".join(para.split())
    if len(para) <= max_chars:
        return para
    cut = max(para.rfind(". ", 0, max_chars), para.rfind("! ", 0, max_chars), para.rfind("? ", 0, max_chars))
    return para[: cut + 1] if cut > 40 else para[: max_chars - 1].rstrip() + "…"


class LLMClient:
    """One per worker (created by the model handler): the openai client, the pool, budgets and cache."""

    def __init__(
        self,
        cfg: GenerationConfig,
        base_url: str,
        api_key: str | None,
        cache_dir: str | None,
        endpoint: str,
    ) -> None:
        self.cfg = cfg
        self.endpoint = endpoint
        self._secrets = (api_key,) if api_key else ()
        # max_retries=0: tenacity below is the only retry layer
        self.openai = openai.OpenAI(
            api_key=api_key or "no-key-required",
            base_url=base_url,
            max_retries=0,
            timeout=cfg.openai.timeout_s,
        )
        self._tls = ssl.create_default_context()  # one TLS context for all the per-thread clients (~20 ms each)
        self._local = threading.local()
        self._thread_clients: list[openai.OpenAI] = []
        # `concurrency` bounds the requests at the endpoint (the slots), not the threads: twice as many
        # threads let some judge, cache and wait for the GIL while others hold every slot
        self._slots = threading.BoundedSemaphore(cfg.openai.concurrency)
        self.pool = ThreadPoolExecutor(max_workers=2 * cfg.openai.concurrency, thread_name_prefix="facecorpus-llm")
        self.limits = RateLimits(cfg.limits.rpm, cfg.limits.tpm)
        self.cache = ResponseCache(cache_dir if cfg.cache.enabled else None)
        self.model = model_name(cfg)
        self._inflight: dict[str, threading.Event] = {}
        self._inflight_lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for c in [self.openai, *self._thread_clients]:
            c.close()

    def api(self) -> openai.OpenAI:
        """This thread's openai client: a copy of `self.openai` (same key, URL, timeout, max_retries=0)
        with its own connection pool, so that request threads never share a pool lock or connection list."""
        mine: openai.OpenAI | None = getattr(self._local, "client", None)
        if mine is None:
            mine = self.openai.copy(http_client=openai.DefaultHttpxClient(verify=self._tls))
            self._local.client = mine
            with self._inflight_lock:
                self._thread_clients.append(mine)
        return mine

    def body_for(self, messages: list[dict[str, Any]], response_format: dict[str, Any] | None) -> dict[str, Any]:
        return chat_body(self.cfg, messages, response_format)

    # ---------------------------------------------------------------------------------------- requests

    def complete(
        self, body: dict[str, Any], prompt_version: str, spend: Spend, batch: BatchContext | None = None
    ) -> Completion:
        """One response for `body`: from the cache, or bought (budget, retries) and cached.

        With a BatchContext the response must already be cached (the Batch API bought it); a miss
        is the batch's failure for this request.
        """
        key = cache_key(self.endpoint, body, prompt_version)
        entry = self.cache.get(key)
        if entry is not None:
            completion = self._completion(key, entry, from_cache=True)
            if batch is not None and completion.batch_id in batch.fresh_batch_ids:
                completion.bought_now = True  # the batch step counted it as a request
            else:
                spend.add("cache_hits")
            return completion
        if batch is not None:
            why = batch.failures.get(key, "the batch returned no result for this request")
            raise GenerationFailed(Failure("llm_error", f"Batch API: {why}", retryable=True))
        # single flight: identical requests in flight at once (same image and labels) are bought once
        with self._inflight_lock:
            leader = key not in self._inflight
            done = self._inflight.setdefault(key, threading.Event())
        if not leader:
            done.wait()
            entry = self.cache.get(key)
            if entry is not None:
                spend.add("cache_hits")
                return self._completion(key, entry, from_cache=True)
            return self._buy(key, body, spend)  # the leader failed; try on our own
        try:
            return self._buy(key, body, spend)
        finally:
            with self._inflight_lock:
                self._inflight.pop(key, None)
            done.set()

    def _buy(self, key: str, body: dict[str, Any], spend: Spend) -> Completion:
        estimate = request_tokens(body) if self.limits.tokens is not None else 0  # only a TPM budget needs it
        policy = self._retrying()
        self._local.spend = spend  # read by _on_retry: this thread's request
        try:
            for attempt in policy:
                with attempt:
                    self.limits.acquire(estimate)
                    spend.add("attempts")
                    # the body as rendered, byte for byte (the same JSON a Batch API line carries);
                    # `chat.completions.create` would re-walk it against its TypedDicts, ~4 ms a request,
                    # and the answer is read as plain JSON (building a ChatCompletion model: ~0.1 ms more)
                    with self._slots:
                        response = self.api().post("/chat/completions", cast_to=dict, body=body)
                    if not isinstance(response, dict) or not isinstance(response.get("choices"), list):
                        raise MalformedResponse("the endpoint answered with something that is not a chat completion")
        except Exception as e:  # noqa: BLE001 - every endpoint failure becomes a reject, never a crash
            transient = is_transient(e)
            detail = describe_error(e, self._secrets)
            if transient:
                detail += f" (gave up after {self.cfg.retries.max_attempts} attempts or {self.cfg.retries.max_total_s:.0f}s)"
            raise GenerationFailed(Failure("llm_error", detail, retryable=transient)) from None
        raw_usage = response.get("usage")
        usage = TokenUsage.from_api(raw_usage if isinstance(raw_usage, dict) else None)
        self.limits.settle(estimate, usage.prompt + usage.completion if isinstance(raw_usage, dict) else None)
        choice = response["choices"][0] if response["choices"] else None
        choice = choice if isinstance(choice, dict) else {}
        message = choice.get("message")
        message = message if isinstance(message, dict) else {}
        entry = {
            "content": _text_or_none(message.get("content")),
            "refusal": _text_or_none(message.get("refusal")),
            "finish_reason": _text_or_none(choice.get("finish_reason")),
            "model": _text_or_none(response.get("model")) or body["model"],
            "usage": {"prompt": usage.prompt, "completion": usage.completion, "cached": usage.cached},
            "cost_usd": self._cost(body["model"], usage, batch=False),
            "batch_id": None,
            "created_at": datetime.now(tz=UTC).replace(microsecond=0).isoformat(),
        }
        self.cache.put(key, entry)  # kept before it is judged: a paid response is never thrown away
        spend.fresh_response(usage, entry["cost_usd"])
        completion = self._completion(key, entry, from_cache=False)
        completion.bought_now = True
        return completion

    def _retrying(self) -> tenacity.Retrying:
        """This thread's tenacity policy, reused request after request (a new one per request is
        ~35 us and a reference cycle each, left for the garbage collector's pauses)."""
        policy: tenacity.Retrying | None = getattr(self._local, "retrying", None)
        if policy is None:
            policy = self._local.retrying = retrying(self.cfg.retries, self._on_retry)
        return policy

    def _on_retry(self, state: tenacity.RetryCallState) -> None:
        spend: Spend = self._local.spend
        exc = state.outcome.exception() if state.outcome else None
        spend.add("retries")
        spend.add(f"retry.{status_of(exc) or type(exc).__name__}" if exc else "retry.unknown")

    def _cost(self, model: str, usage: TokenUsage, batch: bool) -> float:
        return cost_usd(price_for(self.cfg.prices, model), usage, batch, self.cfg.batch_discount)

    @staticmethod
    def _completion(key: str, entry: dict[str, Any], from_cache: bool) -> Completion:
        u = entry.get("usage") or {}
        return Completion(
            key=key,
            content=entry.get("content"),
            refusal=entry.get("refusal"),
            finish_reason=entry.get("finish_reason"),
            usage=TokenUsage(int(u.get("prompt", 0)), int(u.get("completion", 0)), int(u.get("cached", 0))),
            cost_usd=float(entry.get("cost_usd", 0.0)),
            model=entry.get("model"),
            from_cache=from_cache,
            batch_id=entry.get("batch_id"),
        )

    # ---------------------------------------------------------------------------------------- judging

    def judge(self, c: Completion, request: PromptRequest) -> tuple[str | dict[str, Any] | None, Failure | None]:
        """(answer, None) or (None, Failure) for one response. Text refusals are `refusal` failures
        too (the caller decides whether to keep the text after the re-ask)."""
        if c.refusal:
            return None, Failure("refusal", f"the model refused: {' '.join(c.refusal.split())[:200]}")
        if c.finish_reason == "length":
            return None, Failure(
                "llm_truncated", f"the answer was cut off at max_tokens={self.cfg.openai.max_tokens}", retryable=False
            )
        if c.finish_reason == "content_filter":
            return None, Failure("llm_content_filter", "the endpoint's content filter stopped the answer")
        text = (c.content or "").strip()
        if not text:
            return None, Failure("llm_empty", "the endpoint returned no text")
        if request.response_format is not None:
            try:
                data = json.loads(text)
                schema = request.response_format["json_schema"]["schema"]
                if not conforms(schema, data):
                    schema_validator(json.dumps(schema, sort_keys=True)).validate(data)
            except ValueError as e:
                return None, Failure("llm_invalid_json", f"the answer is not valid JSON: {str(e)[:150]}")
            except jsonschema.ValidationError as e:
                where = "/".join(str(p) for p in e.absolute_path) or "(top)"
                return None, Failure("llm_invalid_json", f"the JSON does not follow the schema at {where}: {e.message[:150]}")
            refused = self._refusal_in(data)
            if refused:
                return data, Failure("refusal", f"the answer refuses: \"{refused}\"")
            return data, None
        refusal = find_refusal(text)
        if refusal is not None:
            return text, Failure("refusal", f"the answer refuses ({refusal.kind}): \"{refusal.phrase}\"")
        return text, None

    @staticmethod
    def _refusal_in(data: dict[str, Any]) -> str | None:
        texts = [data.get("caption", "")] + [qa.get("answer", "") for qa in (data.get("qa") or {}).values()]
        texts += list((data.get("answers") or {}).values())
        for t in texts:
            found = find_refusal(t)
            if found:
                return found.phrase
        return None

    def reask_message(self, failure: Failure, structured: bool) -> str:
        if failure.reason == "refusal":
            return self.cfg.openai.refusal_message or CORRECTIVE_MESSAGE
        if failure.reason == "llm_truncated":
            words = max(20, int(self.cfg.openai.max_tokens * 0.5))
            what = "the JSON object, with shorter texts" if structured else "the answer"
            return f"Your reply was cut off. Give {what} again, complete, in at most {words} words."
        if structured:
            return "Your reply was not a JSON object that follows the schema. Reply again with only that JSON object."
        return "Your reply was empty. Please answer the request."

    def answer(
        self, request: PromptRequest, prompt_version: str, spend: Spend, batch: BatchContext | None
    ) -> Answer:
        """Ask, judge, re-ask once if needed. Endpoint failures end up in `Answer.failure`."""
        result = Answer(request=request, completions=[])
        structured = request.response_format is not None
        body = self.body_for(request.messages, request.response_format)
        try:
            first = self.complete(body, prompt_version, spend, batch)
            result.completions.append(first)
            value, failure = self.judge(first, request)
            if failure is not None and self.cfg.openai.reask and failure.reason != "llm_content_filter":
                previous = (first.content or first.refusal or "")[:_PREVIOUS_TURN_CHARS]
                follow_up = request.messages + [
                    {"role": "assistant", "content": previous},
                    {"role": "user", "content": self.reask_message(failure, structured)},
                ]
                # re-asks are always online: a few stragglers are not worth another day-long batch
                second = self.complete(self.body_for(follow_up, request.response_format), prompt_version, spend)
                result.completions.append(second)
                if second.bought_now:
                    spend.add("reasks")
                    spend.add(f"reask.{failure.reason}")
                value, failure = self.judge(second, request)
        except GenerationFailed as e:
            result.failure = e.failure
            return result
        if failure is not None and failure.reason == "refusal" and value is not None:
            # the text is kept: validation rejects it `refusal` and counts it per category
            result.refusal_kept = True
            failure = None
        if failure is not None:
            result.failure = failure
        elif isinstance(value, dict):
            result.data = value
        else:
            result.text = value
        return result

    # ------------------------------------------------------------------------------------------- items

    def submit(self, prompt: RenderedPrompt, batch: BatchContext | None = None) -> PendingOutcome:
        """Put all requests of one item on the pool and return at once; `outcome()` waits and assembles."""
        spend = Spend()
        futures = [self.pool.submit(self.answer, r, prompt.prompt_version, spend, batch) for r in prompt.requests]
        return PendingOutcome(self, prompt, spend, futures)

    def generate(
        self, prompts: list[RenderedPrompt], batches: list[BatchContext | None] | None = None
    ) -> list[GenerationOutcome]:
        """All requests of all `prompts` in flight together (bounded by the pool); one outcome each."""
        batches = batches or [None] * len(prompts)
        pending = [self.submit(prompt, batch) for prompt, batch in zip(prompts, batches, strict=True)]
        return [p.outcome() for p in pending]

    def _outcome(self, prompt: RenderedPrompt, spend: Spend, futures: list[Future[Answer]]) -> GenerationOutcome:
        answers: list[Answer] = []
        for request, fut in zip(prompt.requests, futures, strict=True):
            try:
                answers.append(fut.result())
            except Exception as e:  # noqa: BLE001 - a bug in one request must not lose the batch
                log.warning("LLM request failed unexpectedly: %s", describe_error(e, self._secrets))
                answers.append(Answer(request=request, completions=[], failure=Failure(
                    "internal_error", describe_error(e, self._secrets), retryable=True)))
        return self._assemble(prompt, answers, spend)

    def _assemble(self, prompt: RenderedPrompt, answers: list[Answer], spend: Spend) -> GenerationOutcome:
        out = GenerationOutcome(spend=spend)
        completions = [c for a in answers for c in a.completions]
        out.usage = LLMUsage(
            requests=sum(1 for c in completions if c.bought_now),
            cache_hits=sum(1 for c in completions if not c.bought_now),
            prompt_tokens=sum(c.usage.prompt for c in completions),
            completion_tokens=sum(c.usage.completion for c in completions),
            cached_tokens=sum(c.usage.cached for c in completions),
            cost_usd=round(sum(c.cost_usd for c in completions), 9),
        )
        out.llm_model = next((c.model for c in completions if c.model), self.model)
        if not prompt.image_attached:
            out.flags.append("llm_text_only")
        failed = [a for a in answers if a.failure is not None]
        for a in failed:
            spend.add(f"failure.{a.failure.reason}")  # type: ignore[union-attr]
        if prompt.mode == "structured":
            a = answers[0]
            if a.failure is not None:
                out.failure = a.failure
                return out
            assert a.data is not None
            out.caption = a.data["caption"].strip()
            if "answers" in a.data:  # the prompt set fixed the questions
                out.qa = [QAPair(category=c, question=prompt.questions[c], answer=a.data["answers"][c].strip())
                          for c in prompt.categories]
            else:
                out.qa = [QAPair(category=c, question=a.data["qa"][c]["question"].strip(),
                                 answer=a.data["qa"][c]["answer"].strip()) for c in prompt.categories]
            return out
        good = [a for a in answers if a.failure is None]
        if failed and (self.cfg.openai.on_category_failure == "reject" or not good):
            first = failed[0]
            assert first.failure is not None
            cat = first.request.category
            out.failure = Failure(first.failure.reason, f"category {cat}: {first.failure.detail}", first.failure.retryable)
            return out
        out.flags.extend(f"skipped:{a.request.category}" for a in failed)
        out.qa = [
            QAPair(category=a.request.category or "detail", question=a.request.question or "", answer=(a.text or "").strip())
            for a in good
        ]
        by_cat = {q.category: q.answer for q in out.qa}
        source = by_cat.get(prompt.caption_from or "") or out.qa[0].answer
        out.caption = first_paragraph(source)
        return out


class PendingOutcome:
    """One item's requests in flight. `add_done_callback(fn)` calls `fn(self)` once all of them have
    finished (on the pool thread that finished last, or at once if they already have); `outcome()`
    waits for them and assembles the item's `GenerationOutcome` (on the caller's thread)."""

    def __init__(self, client: LLMClient, prompt: RenderedPrompt, spend: Spend, futures: list[Future[Answer]]) -> None:
        self.requests = len(futures)
        self._client = client
        self._prompt = prompt
        self._spend = spend
        self._futures = futures
        self._left = len(futures)
        self._callbacks: list[Callable[[PendingOutcome], None]] = []
        self._lock = threading.Lock()
        self._result: GenerationOutcome | None = None
        for f in futures:
            f.add_done_callback(self._one_done)

    def _one_done(self, _: Future[Answer]) -> None:
        with self._lock:
            self._left -= 1
            callbacks = self._callbacks if self._left == 0 else []
            if self._left == 0:
                self._callbacks = []  # a callback may hold this object: no reference cycle left behind
        for fn in callbacks:
            fn(self)

    def done(self) -> bool:
        with self._lock:
            return self._left == 0

    def add_done_callback(self, fn: Callable[[PendingOutcome], None]) -> None:
        with self._lock:
            if self._left > 0:
                self._callbacks.append(fn)
                return
        fn(self)

    def outcome(self) -> GenerationOutcome:
        if self._result is None:
            self._result = self._client._outcome(self._prompt, self._spend, self._futures)
            self._futures = []  # each future's callback refers back to this object: break the cycle
        return self._result

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        # Beam pickles sampled elements to estimate their size, even between fused steps; a copy
        # can only say that it is one (the requests live in this worker's pool)
        return DetachedOutcome, (self.requests,)


class DetachedOutcome:
    """What a pickled PendingOutcome becomes: a clear error instead of a hang if it is ever used."""

    def __init__(self, requests: int) -> None:
        self.requests = requests

    def _fail(self, *_: Any) -> Any:
        raise RuntimeError(
            "a pending LLM outcome left the worker that sent its requests: the step after RunInference "
            "(AwaitOutcomes) must run fused with it"
        )

    done = add_done_callback = outcome = _fail
