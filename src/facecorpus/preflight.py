"""The one pre-flight of a run: every check that must fail before anything is read or written, each a
one-line UserError, and what it decided (`Checked`), from which `pipeline` builds the stages.

Each area's own checks live with the area (`faces.face_stage.check_ready`, `generation/preflight.py`,
`generation.annotation.preflight_annotation`, `generation.paraphrase.preflight_paraphrase`,
`validation.holdout.check_holdout_lists`, the labelled sources' vocabulary); this module calls them in
order, for `facecorpus run` and for `prompts render` (`dry_run`: nothing contacted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UserError
from .execution import Execution, execution_for
from .generation.config import GenerationConfig
from .recipe import Recipe
from .validation.holdout import check_holdout_lists

#: `prompts render` runs the front of the graph in this process
DRY_RUN_RUNNER = "FnApiRunner"


@dataclass(frozen=True)
class Checked:
    """What pre-flight decided: the generation settings as they will run (`image.send` decided when
    auto) and the response cache folder (None when the cache is off or not needed); the same for the
    LLM's attribute annotation and question paraphrase when the recipe asks for them (else None)."""

    generation: GenerationConfig
    cache_dir: str | None
    annotation: GenerationConfig | None = None
    annotation_cache_dir: str | None = None
    annotation_min_confidence: float = 0.0
    paraphrase: GenerationConfig | None = None
    paraphrase_cache_dir: str | None = None
    judge: GenerationConfig | None = None
    judge_cache_dir: str | None = None


def preflight(recipe: Recipe, dry_run: bool = False, execution: Execution | None = None) -> Checked:
    """The one pre-flight: every check that must fail before anything is read or written, each a
    one-line UserError — face model packs and providers, hold-out lists, the labelled sources'
    vocabulary, the prompt set, and for the openai generator its model pack (local), key and endpoint.
    `dry_run` (`prompts render`): decided without contacting anything, for this process's own runner,
    so it shows what a run would send. `execution`: the effective runner (default: the recipe's own,
    without command-line options); a remote one refuses the local LLM, a local cache and local key files."""
    from .generation import preflight as generation
    from .sources.labelled_config import sources_vocabulary

    if recipe.faces.backend != "none":  # face_stage imports Beam's RunInference, which imports torch (~2 s CPU)
        from .faces.face_stage import check_ready

        check_ready(recipe.faces)
    check_holdout_lists(recipe.validation.holdout.lists)
    try:
        sources_vocabulary(recipe.sources)
    except ValueError as e:
        raise UserError(f"recipe {recipe.name}: {e}") from None
    g = recipe.generation
    if dry_run:
        return _dry_run_checked(recipe)
    runner = execution or execution_for(recipe.runner.runner, recipe.runner.options, [])
    annotation: dict[str, Any] = {}
    if g.annotation.enabled:
        from .generation.annotation import preflight_annotation

        a = preflight_annotation(recipe, runner)
        annotation = {"annotation": a, "annotation_cache_dir": generation.resolve_cache_dir(a, runner),
                      "annotation_min_confidence": g.annotation.min_confidence}
    if g.paraphrase.enabled:
        from .generation.paraphrase import preflight_paraphrase

        para = preflight_paraphrase(recipe, runner)
        annotation |= {"paraphrase": para, "paraphrase_cache_dir": generation.resolve_cache_dir(para, runner)}
    if g.judge.enabled:
        from .generation.judge import preflight_judge

        jc = preflight_judge(recipe, runner)
        annotation |= {"judge": jc, "judge_cache_dir": generation.resolve_cache_dir(jc, runner)}
    if g.generator != "openai":
        return Checked(g, None, **annotation)
    g = generation.preflight(g, runner)
    return Checked(g, generation.resolve_cache_dir(g, runner), **annotation)


def _dry_run_checked(recipe: Recipe) -> Checked:
    """`prompts render`'s pre-flight: each LLM stage before validation (annotation, generation,
    paraphrase) as a run would set it up, its prompt set checked, nothing contacted."""
    from .generation import preflight as generation
    from .generation.annotation import annotation_config
    from .generation.paraphrase import paraphrase_config

    local = execution_for(DRY_RUN_RUNNER, [], [])
    g = generation.without_images_for_local(recipe.generation)  # a run decides the same before it starts
    if g.generator == "openai":
        generation.load_checked_prompt_set(g)
    extra: dict[str, Any] = {}
    if g.annotation.enabled:
        a = generation.without_images_for_local(annotation_config(recipe))
        generation.load_checked_prompt_set(a)
        extra |= {"annotation": a, "annotation_cache_dir": generation.resolve_cache_dir(a, local),
                  "annotation_min_confidence": g.annotation.min_confidence}
    if g.paraphrase.enabled:
        para = paraphrase_config(recipe)
        generation.load_checked_prompt_set(para)
        extra |= {"paraphrase": para, "paraphrase_cache_dir": generation.resolve_cache_dir(para, local)}
    return Checked(g, generation.resolve_cache_dir(g, local), **extra)
