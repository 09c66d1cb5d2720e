"""What the LLM stage spent: tokens and dollars per request, Beam counters per run.

Two views, on purpose different:
- a record's `usage` says what producing *that record's text* took: the tokens and the price of the
  responses it was written from, whether they were bought now or served from the cache;
- the run's counters (namespace `facecorpus`, names `llm.*`) say what *this run* spent: only fresh
  responses count, including those bought for items that were later rejected.
`llm_totals(result)` turns the counters into the `llm` section of stats.json.

Counters are integers, so dollars are counted in micro-dollars (`llm.cost_microusd`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

from .. import progress
from ..stage import METRICS_NAMESPACE
from .config import PriceConfig

PREFIX = "llm."

#: counter suffixes that make up stats.json's `llm` section (besides cost, which is converted)
TOTALS = ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "cached_tokens", "attempts", "retries", "reasks")


@dataclass(frozen=True)
class TokenUsage:
    prompt: int = 0
    completion: int = 0
    cached: int = 0

    @classmethod
    def from_api(cls, usage: Any) -> TokenUsage:
        """From an OpenAI `usage` object or dict (missing fields count as 0)."""
        if usage is None:
            return cls()
        get = usage.get if isinstance(usage, dict) else (lambda k, d=None: getattr(usage, k, d))
        details = get("prompt_tokens_details", None)
        cached = 0
        if details is not None:
            dget = details.get if isinstance(details, dict) else (lambda k, d=None: getattr(details, k, d))
            cached = int(dget("cached_tokens", 0) or 0)
        return cls(prompt=int(get("prompt_tokens", 0) or 0), completion=int(get("completion_tokens", 0) or 0), cached=cached)


def price_for(prices: dict[str, PriceConfig], model: str | None) -> PriceConfig | None:
    """The price of `model`: exact name, else the longest configured name it starts with
    ('gpt-4o-2024-11-20' → 'gpt-4o' when only that is listed), else None."""
    if not model:
        return None
    if model in prices:
        return prices[model]
    best = max((name for name in prices if model.startswith(name)), key=len, default=None)
    return prices[best] if best else None


def cost_usd(price: PriceConfig | None, usage: TokenUsage, batch: bool, batch_discount: float) -> float:
    """Dollars for one response; cached prompt tokens at the cached rate; batch responses discounted."""
    if price is None:
        return 0.0
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    uncached = max(usage.prompt - usage.cached, 0)
    dollars = (uncached * price.input + usage.cached * cached_rate + usage.completion * price.output) / 1_000_000
    if batch:
        dollars *= 1.0 - batch_discount
    return round(dollars, 9)


#: Beam counter objects by name, made once: a counter object only names its metric, and binds to the
#: calling thread's metrics container at each inc()
_COUNTERS: dict[str, Any] = {}


class Spend:
    """Counter increments gathered off the DoFn thread (in request threads), flushed on it.

    Beam metrics are bound to the thread that runs the DoFn, so worker threads only add to a
    `Spend` and the stage calls `flush()` from `process`.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        if n:
            self.counts[name] += n
            progress.add(PREFIX + name, n)  # live, from the request thread: the progress view (progress.py)

    def fresh_response(self, usage: TokenUsage, dollars: float) -> None:
        self.add("requests")
        self.add("prompt_tokens", usage.prompt)
        self.add("completion_tokens", usage.completion)
        self.add("cached_tokens", usage.cached)
        self.add("cost_microusd", round(dollars * 1_000_000))

    def merge(self, other: Spend) -> None:
        self.counts.update(other.counts)

    def flush(self) -> None:
        for name, n in self.counts.items():
            counter = _COUNTERS.get(name)
            if counter is None:
                counter = _COUNTERS[name] = Metrics.counter(METRICS_NAMESPACE, PREFIX + name)
            counter.inc(n)
        self.counts.clear()



def _sum_counters(result: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    for c in found:
        name = c.key.metric.name
        if name.startswith(PREFIX):
            value = c.committed if c.committed is not None else c.attempted
            out[name[len(PREFIX):]] = out.get(name[len(PREFIX):], 0) + int(value or 0)
    return out


def llm_totals(result: Any) -> dict[str, Any]:
    """stats.json's `llm` section from a finished Beam run's counters.

    Keys: requests (responses bought), cache_hits, prompt_tokens, completion_tokens, cached_tokens,
    cost_usd, attempts (HTTP calls made, failed ones and retries included), retries, reasks,
    batch_requests (responses bought through the Batch API), and `failures` (reason → items rejected).
    """
    counts = _sum_counters(result)
    totals: dict[str, Any] = {k: counts.get(k, 0) for k in TOTALS}
    totals["cost_usd"] = round(counts.get("cost_microusd", 0) / 1_000_000, 6)
    totals["batch_requests"] = counts.get("batch_requests", 0)
    totals["failures"] = {k[len("failure."):]: v for k, v in sorted(counts.items()) if k.startswith("failure.")}
    return totals


def sum_llm_totals(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The `llm` totals of several attempts of one output added up (numbers summed, failures merged)."""
    out: dict[str, Any] = {}
    for part in parts:
        for k, v in part.items():
            if k == "failures":
                merged = out.setdefault("failures", {})
                for reason, n in v.items():
                    merged[reason] = merged.get(reason, 0) + n
            elif isinstance(v, int | float):
                out[k] = out.get(k, 0) + v
    if "cost_usd" in out:
        out["cost_usd"] = round(out["cost_usd"], 6)
    out.setdefault("failures", {})
    return out


#: the keys of stats.json's `llm` that the spend ledger knows for every attempt, killed ones included
LEDGER_KEYS = ("attempts", "requests", "unanswered", "batch_requests", "prompt_tokens", "completion_tokens",
               "cached_tokens", "cost_usd")


def with_ledger(totals: dict[str, Any], ledger: dict[str, Any] | None) -> dict[str, Any]:
    """stats.json's `llm`: the counters' totals, with what was sent and paid for taken from the spend
    ledger when the output has one (cache hits, retries, re-asks and failures stay the counters')."""
    if ledger is None:
        return totals
    return {**totals, **{k: ledger[k] for k in LEDGER_KEYS}}
