"""The values generation passes around: a response (`Completion`), a judged answer (`Answer`) and an
item's result (`GenerationOutcome`). Why something failed is the run's one `rejection.Rejection`
(raised as `Rejected` by the transport)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..prompting.render import PromptRequest
from ..records import LLMUsage, QAPair
from ..rejection import Rejection
from .accounting import Spend, TokenUsage


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

    @classmethod
    def from_entry(cls, key: str, entry: dict[str, Any], from_cache: bool) -> Completion:
        """A completion from a response-cache entry (the same dict whether just bought or read back)."""
        u = entry.get("usage") or {}
        return cls(
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


@dataclass
class Answer:
    """The outcome of one prompt request after at most one re-ask."""

    request: PromptRequest
    completions: list[Completion]
    text: str | None = None
    data: dict[str, Any] | None = None
    failure: Rejection | None = None
    refusal_kept: bool = False


@dataclass
class GenerationOutcome:
    """What the generate stage writes onto an item (or the failure that rejects it)."""

    caption: str | None = None
    qa: list[QAPair] = field(default_factory=list)
    llm_model: str | None = None
    usage: LLMUsage = field(default_factory=LLMUsage)
    spend: Spend = field(default_factory=Spend)
    failure: Rejection | None = None
    flags: list[str] = field(default_factory=list)
    #: `annotate` prompt sets: the judged JSON answer (attribute → value and confidence)
    data: dict[str, Any] | None = None
    #: rewrite sets: each text's rewrite (None when its request failed) and why a request failed
    rewrites: dict[str, str | None] | None = None
    rewrite_failures: dict[str, str] = field(default_factory=dict)


@dataclass
class BatchContext:
    """For Batch API mode: first-round responses must come from the cache (the batch filled it).

    `failures`: cache key → the batch's error for it; `fresh_batch_ids`: batches completed by this run
    (their responses were counted as requests by the batch step, not as cache hits here).
    """

    failures: dict[str, str] = field(default_factory=dict)
    fresh_batch_ids: frozenset[str] = frozenset()
