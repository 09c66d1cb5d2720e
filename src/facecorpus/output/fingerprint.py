"""A run's fingerprint: the hashes of what shapes its records (recipe, sources, prompts, versions),
recorded in run.json; `--resume` compares it with the recipe it is given (output/resume.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .. import __version__
from ..recipe import Recipe, source_identity
from ..records import PHASH_VERSION, SCHEMA_VERSION


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def prompts_sha256(recipe: Recipe) -> str:
    """Hash of what shapes the generated text for this recipe: the templates generator's phrasing, or
    the one prompt set the LLM generator uses (its verified hash: templates, topics, bounds, version),
    and the annotation's, the paraphrase's and the judge's prompt sets when those stages run. Other
    prompt sets in the folder do not count, so editing one never blocks a resume of another."""
    g = recipe.generation
    text = _generation_sha256(recipe)
    if not g.annotation.enabled and not g.paraphrase.enabled and not g.judge.enabled:
        return text
    from ..prompting.promptset import load_prompt_set

    parts = {"text": text}
    if g.annotation.enabled:
        parts["annotation"] = load_prompt_set(g.annotation.prompt_set, g.prompts_dir).sha256
    if g.paraphrase.enabled:
        parts["paraphrase"] = load_prompt_set(g.paraphrase.prompt_set, g.prompts_dir).sha256
    if g.judge.enabled:
        parts["judge"] = load_prompt_set(g.judge.prompt_set, g.prompts_dir).sha256
    return _sha(parts)


def _generation_sha256(recipe: Recipe) -> str:
    g = recipe.generation
    if g.generator == "templates":
        from ..generation.templates import templates_sha256

        return _sha({"templates_generator": templates_sha256()})
    if g.generator == "labels":
        from ..generation.label_qa import label_qa_sha256

        return _sha({"labels_generator": label_qa_sha256()})
    from ..generation.preflight import load_checked_prompt_set

    prompt_set = load_checked_prompt_set(g)
    if prompt_set.mode == "rewrite":  # the LLM rephrases the templates' texts: both shape them
        from ..generation.templates import templates_sha256

        return _sha({"prompt_set": prompt_set.sha256, "templates_generator": templates_sha256()})
    return _sha({"prompt_set": prompt_set.sha256})


def fingerprint(recipe: Recipe) -> dict[str, Any]:
    """{'sha256', 'recipe_sha256', 'sources_sha256', 'prompts_sha256', 'versions'} of a run's settings.

    The recipe hash leaves out the fields marked execution-only (config.EXECUTION_ONLY); versions are facecorpus's and
    the record schema's — what changes the records written.
    """
    parts = {
        "recipe_sha256": recipe.sha256(),
        "sources_sha256": _sha([source_identity(s) for s in recipe.sources]),
        "prompts_sha256": prompts_sha256(recipe),
        "versions": {"facecorpus": __version__, "schema": SCHEMA_VERSION, "phash": PHASH_VERSION},
    }
    return {"sha256": _sha(parts), **parts}


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human names of the parts that differ between two fingerprints."""
    names = {"recipe_sha256": "recipe", "prompts_sha256": "prompts", "versions": "versions"}
    changed = [label for k, label in names.items() if old.get(k) != new.get(k)]
    if old.get("versions") != new.get("versions"):
        changed[-1] = f"versions ({old.get('versions')} → {new.get('versions')})"
    return changed or (["fingerprint"] if old.get("sha256") != new.get("sha256") else [])
