"""Seeing what generation would send and cost, without calling anything.

`graph.prompts_until_generation` runs the recipe's own front of the graph (sources → image → dedup
→ faces, the run's builder) and renders the prompts on the local runner; `Describe` turns each
rendered item into a JSON row, so what is shown is exactly what a run would send:
- `rendered_requests(rows, key, …)`: the request bodies of one sample (`facecorpus prompts render`);
- `estimate(rows, cfg, stage)`: requests, how many the cache already holds, estimated tokens and a cost
  range, per LLM stage — annotation, generation, paraphrase — and their total (`facecorpus prompts
  render --dry-run`); inputs that dedup or hold-out drop are not counted. The judge, which scores the
  texts generation writes, is not estimated (its prompt needs them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from ..errors import UserError
from ..stage import WorkItem
from .accounting import TokenUsage, cost_usd, price_for
from .cache import ResponseCache, cache_key
from .config import GenerationConfig
from .endpoint import chat_body, endpoint_id, model_name
from .estimate import request_tokens


class Describe(beam.DoFn):
    """One JSON line per rendered item: its request bodies (`key` given) or its estimate."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None, key: str | None, stage: str = "generate") -> None:
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.key = key
        self.stage = stage  # annotate, generate or paraphrase: whose requests these are

    def setup(self) -> None:
        self.cache = ResponseCache(self.cache_dir)
        self.endpoint = endpoint_id(self.cfg.openai.base_url, self.cfg.openai.local_model)

    def process(self, item: WorkItem) -> Iterator[str]:
        prompt = item.prompt
        bodies = [chat_body(self.cfg, r.messages, r.response_format) for r in prompt.requests]
        if self.key is not None:
            if item.key == self.key:
                yield json.dumps({
                    "key": item.key,
                    "stage": self.stage,
                    "prompt_set": prompt.prompt_set,
                    "prompt_version": prompt.prompt_version,
                    "prompt_sha256": prompt.sha256,
                    "image_attached": prompt.image_attached,
                    "requests": [
                        {"category": r.category, "stored_question": r.question, "body": b}
                        for r, b in zip(prompt.requests, bodies, strict=True)
                    ],
                })
            return
        cached = sum(1 for b in bodies if cache_key(self.endpoint, b, prompt.prompt_version) in self.cache)
        tokens = [request_tokens(b) for b in bodies]
        yield json.dumps({
            "key": item.key,
            "stage": self.stage,
            "requests": len(bodies),
            "cached": cached,
            "prompt_tokens": sum(t - int(b.get("max_tokens") or 0) for t, b in zip(tokens, bodies, strict=True)),
            # null when a request sends no max_tokens: the endpoint's own limit bounds it, unknown here
            "max_completion_tokens": (None if any("max_tokens" not in b for b in bodies)
                                      else sum(int(b["max_tokens"]) for b in bodies)),
        })


def rendered_requests(rows: list[dict[str, Any]], key: str, recipe_name: str) -> list[dict[str, Any]]:
    """The exact request bodies for sample `key` from `Describe`'s rows, one row per LLM stage it
    reaches (annotate, generate, paraphrase, in that order); UserError if there are none."""
    if not rows:
        raise UserError(f"no sample with key '{key}' reaches an LLM stage in recipe {recipe_name} (was it rejected?)")
    return rows


@dataclass
class Estimate:
    items: int
    requests: int
    cached: int
    prompt_tokens: int
    max_completion_tokens: int | None  # None: requests send no max_tokens, so no upper bound is known
    model: str
    cost_low_usd: float
    cost_high_usd: float
    batch: bool
    priced: bool
    stage: str = "generate"

    def lines(self) -> list[str]:
        price = "" if self.priced else f" (no price for {self.model} in generation.prices: $0 assumed)"
        mode = " at the Batch API discount" if self.batch else ""
        to_buy = self.requests - self.cached
        head = (f"{self.stage}: {self.items} samples → {self.requests} requests to {self.model}; {self.cached} already "
                f"cached, {to_buy} to buy")
        if self.max_completion_tokens is None:
            return [head, f"  estimated tokens to buy: ~{self.prompt_tokens} prompt; completion unbounded (max_tokens: null)",
                    f"  estimated cost{mode}: ${self.cost_low_usd:.4f} for the prompts, plus the answers{price}"]
        return [
            head,
            f"  estimated tokens to buy: ~{self.prompt_tokens} prompt, at most {self.max_completion_tokens} completion",
            f"  estimated cost{mode}: ${self.cost_low_usd:.4f} (prompts only) to ${self.cost_high_usd:.4f} "
            f"(every answer at max_tokens){price}",
        ]


def estimate(rows: list[dict[str, Any]], cfg: GenerationConfig, stage: str = "generate") -> Estimate:
    """Requests, cache coverage, tokens and a cost range from `Describe`'s rows of one stage of a run
    (`cfg`: that stage's settings, as pre-flight decided them)."""
    rows = [r for r in rows if r.get("stage", "generate") == stage]
    requests = sum(r["requests"] for r in rows)
    cached = sum(r["cached"] for r in rows)
    share = (requests - cached) / requests if requests else 0.0  # tokens only for what is not cached
    prompt_tokens = round(sum(r["prompt_tokens"] for r in rows) * share)
    bounded = all(r["max_completion_tokens"] is not None for r in rows)
    completion = round(sum(r["max_completion_tokens"] for r in rows) * share) if bounded else None
    model = model_name(cfg)
    price = price_for(cfg.prices, model)
    batch = cfg.mode == "batch"
    low = cost_usd(price, TokenUsage(prompt=prompt_tokens), batch, cfg.batch_discount)
    high = cost_usd(price, TokenUsage(prompt=prompt_tokens, completion=completion or 0), batch, cfg.batch_discount)
    return Estimate(len(rows), requests, cached, prompt_tokens, completion, model, low, high, batch, price is not None,
                    stage)


def estimates(rows: list[dict[str, Any]], configs: dict[str, GenerationConfig]) -> list[Estimate]:
    """One estimate per LLM stage in `configs` (stage → its settings) that has rows."""
    present = {r.get("stage", "generate") for r in rows}
    return [estimate(rows, cfg, stage) for stage, cfg in configs.items() if stage in present]


def total_lines(found: list[Estimate]) -> list[str]:
    """The run's total over its stages, when it has more than one."""
    if len(found) < 2:
        return []
    low, high = sum(e.cost_low_usd for e in found), sum(e.cost_high_usd for e in found)
    unbounded = any(e.max_completion_tokens is None for e in found)
    top = "plus the unbounded answers" if unbounded else f"to ${high:.4f}"
    return [f"total: {sum(e.requests for e in found)} requests, {sum(e.requests - e.cached for e in found)} to buy; "
            f"estimated cost ${low:.4f} {top}"]
