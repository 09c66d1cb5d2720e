"""Seeing what generation would send and cost, without calling anything.

Both run the recipe's own graph up to the prompts (sources → image check → faces → render) on the
local runner, so what they show is exactly what a run would send:
- `rendered_requests(recipe, key)`: the request bodies of one sample (`facecorpus prompts render`);
- `estimate(recipe)`: requests, how many the cache already holds, estimated tokens and a cost range
  (`facecorpus prompts render --dry-run`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from ..errors import UserError
from ..recipe import Recipe
from ..stage import REJECTS, WorkItem
from .accounting import TokenUsage, cost_usd, price_for
from .cache import ResponseCache, cache_key
from .config import GenerationConfig
from .endpoint import chat_body, endpoint_id, model_name
from .estimate import request_tokens
from .preflight import load_checked_prompt_set, resolve_cache_dir, without_images_for_local
from .transform import RenderPrompts


class _Describe(beam.DoFn):
    """One JSON line per rendered item: its request bodies (`key` given) or its estimate."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None, key: str | None) -> None:
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.key = key

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
            "requests": len(bodies),
            "cached": cached,
            "prompt_tokens": sum(t - int(b["max_tokens"]) for t, b in zip(tokens, bodies, strict=True)),
            "max_completion_tokens": sum(int(b["max_tokens"]) for b in bodies),
        })


def _run_until_prompts(recipe: Recipe, key: str | None) -> list[dict[str, Any]]:
    from ..pipeline import faces_transform, image_transform, prepare, source_transform

    prepare(recipe)
    cfg = without_images_for_local(recipe.generation)  # a run decides the same before it starts
    load_checked_prompt_set(cfg)  # one-line errors before Beam starts
    cache_dir = resolve_cache_dir(cfg, "FnApiRunner")
    with tempfile.TemporaryDirectory(prefix="facecorpus-render-") as tmp:
        with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
            mains = [p | f"Source{i}" >> source_transform(src) for i, src in enumerate(recipe.sources)]
            items = (
                mains[0]["main"] if len(mains) == 1 else tuple(m["main"] for m in mains) | "AllSources" >> beam.Flatten()
            )
            items = (items | "CheckImage" >> image_transform(recipe))["main"]
            faces = faces_transform(recipe)
            if faces is not None:
                items = (items | "Faces" >> faces)["main"]
            if key is not None:
                items = items | "OnlyKey" >> beam.Filter(lambda it, k=key: it.key == k)
            rendered = items | "Render" >> beam.ParDo(RenderPrompts(cfg)).with_outputs(REJECTS, main="main")
            _ = (
                rendered["main"]
                | "Describe" >> beam.ParDo(_Describe(cfg, cache_dir, key))
                | "Write" >> beam.io.WriteToText(str(Path(tmp) / "rendered"), file_name_suffix=".jsonl")
            )
        lines = []
        for f in sorted(Path(tmp).glob("rendered*.jsonl")):
            lines += [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines


def rendered_requests(recipe: Recipe, key: str) -> dict[str, Any]:
    """The exact request bodies for sample `key`; UserError if the recipe yields no such sample."""
    found = _run_until_prompts(recipe, key)
    if not found:
        raise UserError(f"no sample with key '{key}' reaches generation in recipe {recipe.name} (was it rejected?)")
    return found[0]


@dataclass
class Estimate:
    items: int
    requests: int
    cached: int
    prompt_tokens: int
    max_completion_tokens: int
    model: str
    cost_low_usd: float
    cost_high_usd: float
    batch: bool
    priced: bool

    def lines(self) -> list[str]:
        price = "" if self.priced else f" (no price for {self.model} in generation.prices: $0 assumed)"
        mode = " at the Batch API discount" if self.batch else ""
        to_buy = self.requests - self.cached
        return [
            f"{self.items} samples → {self.requests} requests to {self.model}; {self.cached} already cached, {to_buy} to buy",
            f"estimated tokens to buy: ~{self.prompt_tokens} prompt, at most {self.max_completion_tokens} completion",
            f"estimated cost{mode}: ${self.cost_low_usd:.4f} (prompts only) to ${self.cost_high_usd:.4f} "
            f"(every answer at max_tokens){price}",
        ]


def estimate(recipe: Recipe) -> Estimate:
    """Requests, cache coverage, tokens and a cost range for a recipe, calling nothing."""
    rows = _run_until_prompts(recipe, None)
    cfg = recipe.generation
    requests = sum(r["requests"] for r in rows)
    cached = sum(r["cached"] for r in rows)
    share = (requests - cached) / requests if requests else 0.0  # tokens only for what is not cached
    prompt_tokens = round(sum(r["prompt_tokens"] for r in rows) * share)
    completion = round(sum(r["max_completion_tokens"] for r in rows) * share)
    model = model_name(cfg)
    price = price_for(cfg.prices, model)
    batch = cfg.mode == "batch"
    low = cost_usd(price, TokenUsage(prompt=prompt_tokens), batch, cfg.batch_discount)
    high = cost_usd(price, TokenUsage(prompt=prompt_tokens, completion=completion), batch, cfg.batch_discount)
    return Estimate(len(rows), requests, cached, prompt_tokens, completion, model, low, high, batch, price is not None)
