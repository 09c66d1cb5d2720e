"""The LLM engine of a worker: an item's requests in flight, each cached, bought, judged, re-asked.

`LLMClient.submit(prompt)` puts every request of one item on the transport's thread pool and
returns at once with a `PendingOutcome`; its `outcome()` is the item's `GenerationOutcome`. The
generate stage keeps submitting while earlier items are still in flight, so the endpoint sees
`concurrency` requests in flight without gaps (`generate(prompts)` is the blocking form). A request:

1. looks up the response cache (a hit costs nothing; with a local cache `submit` reads it on its own
   thread, so an answer found there, and needing no re-ask, takes no pool thread); identical requests
   in flight at once are bought once (`cache.SingleFlight`);
2. is bought by the transport (`transport.py`: RPM/TPM budget, slots, the tenacity retry layer,
   cost) and stored in the cache before anything else looks at it (paid for = kept);
3. is judged (`judging.py`): API refusal, cut off, empty, unparsable JSON, or a refusal in the
   text — each gets one re-ask (`reask.py`), then the item is rejected (`refusal`, `llm_truncated`,
   `llm_empty`, `llm_invalid_json`, `llm_error`). A text that still refuses after the re-ask is kept
   for validation, which rejects it `refusal` per category;
4. joins the item's other answers in `assembly.py` (per prompt mode).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..prompting.render import PromptRequest, RenderedPrompt
from ..rejection import Rejected, Rejection
from .accounting import Spend
from .assembly import assemble
from .cache import ResponseCache, SingleFlight, cache_key
from .config import GenerationConfig
from .endpoint import chat_body, model_name
from .judging import judge
from .ledger import SpendLedger
from .outcome import Answer, BatchContext, Completion, GenerationOutcome
from .reask import follow_up, should_reask
from .retries import describe_error
from .transport import Transport

log = logging.getLogger("facecorpus")


class LLMClient:
    """One per worker (created by the model handler): the transport, the response cache, single flight."""

    def __init__(
        self,
        cfg: GenerationConfig,
        base_url: str,
        api_key: str | None,
        cache_dir: str | None,
        endpoint: str,
        server_slots: int | None = None,
        ledger: SpendLedger | None = None,
        ledger_stage: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.endpoint = endpoint
        self.transport = Transport(cfg, base_url, api_key, server_slots, ledger, ledger_stage)
        self.cache = ResponseCache(cache_dir if cfg.cache.enabled else None)
        self.model = model_name(cfg)
        self._flights = SingleFlight()

    @property
    def openai(self) -> Any:
        """The transport's template openai client (its settings: key, URL, timeout, max_retries=0)."""
        return self.transport.openai

    def close(self) -> None:
        self.transport.close()

    def body_for(self, messages: list[dict[str, Any]], response_format: dict[str, Any] | None) -> dict[str, Any]:
        return chat_body(self.cfg, messages, response_format)

    # ---------------------------------------------------------------------------------------- requests

    def complete(
        self, body: dict[str, Any], prompt_version: str, spend: Spend, batch: BatchContext | None = None,
        key: str | None = None,
    ) -> Completion:
        """One response for `body` (whose cache key is `key`, when the caller has it): from the cache,
        or bought and cached.

        With a BatchContext the response must already be cached (the Batch API bought it); a miss
        is the batch's failure for this request.
        """
        key = key or cache_key(self.endpoint, body, prompt_version)
        entry = self.cache.get(key)
        if entry is not None:
            completion = Completion.from_entry(key, entry, from_cache=True)
            if batch is not None and completion.batch_id in batch.fresh_batch_ids:
                completion.bought_now = True  # the batch step counted it as a request
            else:
                spend.add("cache_hits")
            return completion
        if batch is not None:
            why = batch.failures.get(key, "the batch returned no result for this request")
            raise Rejected("llm_error", f"Batch API: {why}", retryable=True)
        return self._flights.run(key, lambda: self._cached(key, spend), lambda: self._buy(key, body, spend))

    def _cached(self, key: str, spend: Spend) -> Completion | None:
        entry = self.cache.get(key)
        if entry is None:
            return None
        spend.add("cache_hits")
        return Completion.from_entry(key, entry, from_cache=True)

    def _buy(self, key: str, body: dict[str, Any], spend: Spend) -> Completion:
        entry = self.transport.buy(body, spend)
        self.cache.put(key, entry)  # kept before it is judged: a paid response is never thrown away
        completion = Completion.from_entry(key, entry, from_cache=False)
        completion.bought_now = True
        return completion

    def answer(
        self, request: PromptRequest, prompt_version: str, spend: Spend, batch: BatchContext | None,
        key: str | None = None,
    ) -> Answer:
        """Ask, judge, re-ask once if needed. Endpoint failures end up in `Answer.failure`. `key`: the
        cache key of the request's first body, when the caller already computed it."""
        result = Answer(request=request, completions=[])
        structured = request.response_format is not None
        max_tokens = self.cfg.openai.max_tokens
        try:
            first = self.complete(self.body_for(request.messages, request.response_format), prompt_version, spend, batch,
                                  key)
            result.completions.append(first)
            value, failure = judge(first, request.response_format, max_tokens)
            if should_reask(failure, self.cfg.openai):
                assert failure is not None
                messages = follow_up(request.messages, first, failure, structured, self.cfg.openai)
                # re-asks are always online: a few stragglers are not worth another day-long batch
                second = self.complete(self.body_for(messages, request.response_format), prompt_version, spend)
                result.completions.append(second)
                if second.bought_now:
                    spend.add("reasks")
                    spend.add(f"reask.{failure.reason}")
                value, failure = judge(second, request.response_format, max_tokens)
        except Rejected as e:
            result.failure = e.rejection
            return result
        return _settled(result, value, failure)

    def answer_cached(self, request: PromptRequest, prompt_version: str, spend: Spend) -> Answer | str:
        """The request answered from a local cache on this thread, when its first answer is cached and
        needs no re-ask (what `answer` would return, counted the same way); else its cache key, for
        `answer` on the pool. A hit then costs no thread hand-off; a miss one failed open() here."""
        body = self.body_for(request.messages, request.response_format)
        key = cache_key(self.endpoint, body, prompt_version)
        entry = self.cache.get(key)
        if entry is None:
            return key
        first = Completion.from_entry(key, entry, from_cache=True)
        value, failure = judge(first, request.response_format, self.cfg.openai.max_tokens)
        if should_reask(failure, self.cfg.openai):
            return key  # the pool asks again (and counts this hit then)
        spend.add("cache_hits")
        return _settled(Answer(request=request, completions=[first]), value, failure)

    # ------------------------------------------------------------------------------------------- items

    def submit(self, prompt: RenderedPrompt, batch: BatchContext | None = None) -> PendingOutcome:
        """Put all requests of one item on the pool and return at once; `outcome()` waits and assembles."""
        spend = Spend()
        pool = self.transport.pool
        futures: list[Future[Answer]] = []
        for r in prompt.requests:
            # a local cache is read on this thread (a remote one would make it wait on the network);
            # Batch API results keep their own accounting (`complete`)
            found: Answer | str | None = None
            if self.cache.local and batch is None:
                try:
                    found = self.answer_cached(r, prompt.prompt_version, spend)
                except Exception:  # noqa: BLE001 - the pool's path reports it (outcome_of: internal_error)
                    found = None
            if isinstance(found, Answer):
                done: Future[Answer] = Future()
                done.set_result(found)
                futures.append(done)
            else:
                futures.append(pool.submit(self.answer, r, prompt.prompt_version, spend, batch, found))
        return PendingOutcome(self, prompt, spend, futures)

    def generate(
        self, prompts: list[RenderedPrompt], batches: list[BatchContext | None] | None = None
    ) -> list[GenerationOutcome]:
        """All requests of all `prompts` in flight together (bounded by the pool); one outcome each."""
        batches = batches or [None] * len(prompts)
        pending = [self.submit(prompt, batch) for prompt, batch in zip(prompts, batches, strict=True)]
        return [p.outcome() for p in pending]

    def outcome_of(self, prompt: RenderedPrompt, spend: Spend, futures: list[Future[Answer]]) -> GenerationOutcome:
        """The item's outcome once its requests are done (a bug in one request fails only that one)."""
        answers: list[Answer] = []
        for request, fut in zip(prompt.requests, futures, strict=True):
            try:
                answers.append(fut.result())
            except Exception as e:  # noqa: BLE001 - a bug in one request must not lose the batch
                detail = describe_error(e, self.transport.secrets)
                log.warning("LLM request failed unexpectedly: %s", detail)
                answers.append(Answer(request=request, completions=[],
                                      failure=Rejection("internal_error", detail, retryable=True)))
        return assemble(prompt, answers, spend, self.model, self.cfg.openai.on_category_failure)


def _settled(result: Answer, value: Any, failure: Rejection | None) -> Answer:
    """The judged value or failure onto the answer."""
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
            self._result = self._client.outcome_of(self._prompt, self._spend, self._futures)
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
