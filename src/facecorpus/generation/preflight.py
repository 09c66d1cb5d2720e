"""Checks before an LLM run starts, so that configuration mistakes are one clear line, not N rejects.

- the prompt set loads (template hashes match) and has a topic for every category;
- `base_url: local`: the model pack is in the store and the runner is local;
- a remote endpoint: the API key's environment variable is set, the endpoint answers, the key is
  accepted (`GET /models`, which costs nothing);
- `image.send: auto`: an endpoint that lists the model as text-only gets no image;
- the cache folder is reachable by the workers (object storage on a remote runner).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

from ..errors import UserError
from ..execution import Execution
from ..prompting.promptset import PromptSet, load_prompt_set
from .cache import default_cache_dir
from .config import GenerationConfig
from .endpoint import model_name
from .local_server import ENV_URL, gguf_path
from .secrets import api_key as api_key_for
from .secrets import check_reachable_by_workers

log = logging.getLogger("facecorpus")

def load_checked_prompt_set(cfg: GenerationConfig) -> PromptSet:
    ps = load_prompt_set(cfg.prompt_set, cfg.prompts_dir, cfg.topics, cfg.bounds)
    if ps.mode == "paraphrase" and cfg.categories:
        raise UserError(f"prompt set '{ps.name}' rewords questions (generation.paraphrase.prompt_set); "
                        "it writes no captions or QA")
    if ps.mode == "annotate" and cfg.categories:
        raise UserError(f"prompt set '{ps.name}' annotates attributes (generation.annotation.prompt_set); "
                        "it writes no captions or QA")
    for c in cfg.categories:
        ps.topic(c)  # raises UserError naming the missing topic
    return ps


def resolve_cache_dir(cfg: GenerationConfig, execution: Execution) -> str | None:
    """The response cache folder; a local one only when the workers run on this machine."""
    if not cfg.cache.enabled:
        return None
    root = cfg.cache.dir or default_cache_dir()
    if not execution.workers_local and "://" not in root:
        raise UserError(
            f"generation.cache.dir is the local folder {root}, which {execution.runner} workers cannot share; "
            "use gs://… or s3://…"
        )
    return root


def _models_listing(base_url: str, api_key: str | None, timeout: float = 15.0) -> dict[str, Any] | None:
    req = urllib.request.Request(base_url.rstrip("/") + "/models")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the recipe's endpoint
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise UserError(f"{base_url} refused the API key (HTTP {e.code}); check the key's environment variable") from None
        return None  # some compatible servers have no /models; requests will tell
    except (urllib.error.URLError, OSError) as e:
        # imported here: retries imports openai (~0.8 s), which a templates-only run never needs
        from .retries import redact

        reason = redact(str(getattr(e, "reason", e)), (api_key,) if api_key else ())
        raise UserError(f"cannot reach the LLM endpoint {base_url}: {reason}") from None
    except ValueError:
        return None


def text_only(listing: dict[str, Any] | None, model: str) -> bool:
    """True when the endpoint's /models entry for `model` (or its only model) declares no image input."""
    if not listing:
        return False
    entries = [m for m in listing.get("data", []) if isinstance(m, dict)]
    entry = next((m for m in entries if m.get("id") == model), entries[0] if len(entries) == 1 else None)
    modalities = ((entry or {}).get("architecture") or {}).get("input_modalities")
    return isinstance(modalities, list) and "image" not in modalities


def without_images_for_local(cfg: GenerationConfig) -> GenerationConfig:
    """`image.send: auto` against the embedded server becomes `never`: its model reads no images.
    Decided without contacting anything, so `prompts render` shows what a run sends."""
    if cfg.openai.base_url == "local" and cfg.openai.image.send == "auto":
        cfg = cfg.model_copy(deep=True)
        cfg.openai.image.send = "never"
    return cfg


def preflight(cfg: GenerationConfig, execution: Execution) -> GenerationConfig:
    """Check the generation config against the world; returns it, with `image.send` decided when auto."""
    load_checked_prompt_set(cfg)
    o = cfg.openai
    if o.base_url == "local":
        if cfg.mode == "batch":
            raise UserError("generation.mode: batch needs the OpenAI Batch API; the local server has none")
        if not execution.workers_local:
            raise UserError(f"generation.openai.base_url: local runs the LLM on this machine's loopback; "
                            f"{execution.runner} workers do not run here and cannot reach it")
        if not os.environ.get(ENV_URL):
            gguf_path(o.local_model)  # MissingModelPack → `facecorpus models pull smollm2`
        return without_images_for_local(cfg)
    check_reachable_by_workers(o, execution.workers_local, execution.runner)
    if o.api_key_file and not execution.workers_local and "://" not in o.api_key_file:
        # a secret mounted on the workers need not exist on this machine: the workers read it
        log.warning("generation.openai.api_key_file %s is read on the workers; endpoint not checked from here",
                    o.api_key_file)
        return cfg
    api_key = api_key_for(o)
    if not o.preflight:
        return cfg
    listing = _models_listing(o.base_url, api_key)
    if o.image.send == "auto" and text_only(listing, model_name(cfg)):
        log.warning("%s lists %s as text-only: sending no images", o.base_url, model_name(cfg))
        cfg = cfg.model_copy(deep=True)
        cfg.openai.image.send = "never"
    return cfg
