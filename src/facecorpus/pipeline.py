"""Runs a recipe: pre-flight (preflight.py), the output's plan (output/resume.py), the graph
(graph.py), the job, then — on the launcher — stats.json, index.json and README.md from what was
written (sinks/finalize.py), or, detached, inside the job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import yaml
from apache_beam.io.filesystems import FileSystems

from . import progress
from .errors import UserError
from .execution import check_shared_paths, counted_inputs, execution_for, refuse_uncountable
from .generation.accounting import llm_totals, sum_llm_totals, with_ledger
from .generation.ledger import ledger_totals
from .graph import build_pipeline, uses_llm
from .output.layout import SHARDS_DIR, TMP_DIR
from .output.resume import abandon_output, commit_output, plan_output
from .output.run_info import write_run_info
from .preflight import preflight
from .recipe import Recipe
from .runtime_check import versions
from .sinks.finalize import finalize
from .sinks.shards import remove_staging
from .storage import require_filesystem, use_storage
from .worker_image import check_worker_image

log = logging.getLogger("facecorpus")


def run_started_at() -> datetime:
    """The run's timestamp; SOURCE_DATE_EPOCH (reproducible builds convention) pins it."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(tz=UTC).replace(microsecond=0)


@dataclass
class RunResult:
    out: str
    stats: dict[str, Any] | None  # None for a detached run (facecorpus finalize writes them)
    job_id: str | None = None


def run_recipe(
    recipe: Recipe,
    out: str,
    beam_args: list[str] | None = None,
    recipe_yaml: str | None = None,
    resume: bool = False,
    new_version: bool = False,
    retry_rejects: bool = False,
    detach: bool = False,
) -> RunResult:
    """Run a recipe to completion into `out`, then write stats.json, index.json and the dataset card.

    `resume` finishes an earlier run of the same recipe in `out` (see output/resume.py);
    `new_version` lets it continue under a changed recipe or prompts; `retry_rejects` also re-runs
    the inputs whose rejects are retryable. `detach` (remote runners only: a Flex Template, a job
    that outlives the launcher) submits the job and returns; `facecorpus finalize` writes the end files.
    """
    execution = execution_for(recipe.runner.runner, recipe.runner.options, beam_args or [])
    refuse_uncountable(execution)
    if detach and execution.workers_local:
        raise UserError(f"--detach needs a runner whose workers run elsewhere; {execution.runner} runs the job in this process")
    use_storage(execution.options)  # gs:// and s3:// need them before the first file access
    check_shared_paths(recipe, execution)
    execution.require_shared("--out", out)  # remote workers write the shards there
    check_worker_image(execution.worker_image, versions())
    require_filesystem(out)
    checked = preflight(recipe, execution=execution)
    progress.reset()  # the sources tell it their size while the graph is built
    created_at = run_started_at()
    t0 = time.time()
    state = plan_output(recipe, out, created_at, resume=resume, new_version=new_version, retry_rejects=retry_rejects,
                        runner=execution.record())
    p = beam.Pipeline(options=execution.options)
    build_pipeline(p, recipe, out, created_at, checked, state, execution, finalize_in_job=detach)  # the labelled sources check their tables here
    commit_output(state)  # only now is anything written: a failed pre-flight leaves no run.json
    try:
        staging_dir = FileSystems.join(out, SHARDS_DIR, TMP_DIR, "staging")
        if not FileSystems.exists(staging_dir):
            FileSystems.mkdirs(staging_dir)
        title = f"{recipe.name} → {out} · {execution.runner} · attempt {state.attempt}"
        log.debug("running %s", title)
        recipe_text = recipe_yaml or yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
        if detach:  # the job outlives this process and writes the end files itself (`facecorpus finalize` can redo them)
            result = p.run()
            info = dict(state.run_info)
            job_id = result.job_id() if hasattr(result, "job_id") else None
            info["attempts"][-1].update({"submitted_at": datetime.now(tz=UTC).replace(microsecond=0).isoformat(),
                                         "job_id": job_id, "detached": True})
            info["recipe_yaml"] = recipe_text
            write_run_info(out, info)
            return RunResult(out=out, stats=None, job_id=job_id)
        with progress.LiveProgress(title) if execution.workers_local else contextlib.nullcontext():
            result = p.run()
            result.wait_until_finish()
    except BaseException:
        abandon_output(state)  # nothing finished: leave the folder as it was, so a plain re-run works
        raise
    remove_staging(out)  # one call for every staged file: nothing in the pipeline deletes them (retries)
    inputs = counted_inputs(result, execution, out)  # refuses a job whose runner reported no metrics
    finished_at = datetime.now(tz=UTC).replace(microsecond=0).isoformat()
    # LLM spend comes from this attempt's Beam counters (it includes answers for samples later rejected);
    # run.json keeps each attempt's, and stats.json sums them: a resumed output reports what it all cost
    llm = llm_totals(result) if uses_llm(recipe) else None
    info = dict(state.run_info)
    info["attempts"][-1].update({"finished_at": finished_at, "duration_s": round(time.time() - t0, 2)})
    if llm is not None:
        info["attempts"][-1]["llm"] = llm
    if recipe.generation.judge.enabled:
        from .generation.judge import judge_totals

        info["attempts"][-1]["judge"] = judge_totals(result)
    if recipe.generation.generator == "openai":  # a rewrite prompt set's figures (lost requests: outcome.py)
        from .generation.rewrite import rewrite_totals

        rewrite = rewrite_totals(result)
        if rewrite["requests"]:
            info["attempts"][-1]["rewrite"] = rewrite
    info["recipe_yaml"] = recipe_text  # the card shows it; `facecorpus stats --write` re-reads it from here
    write_run_info(out, info)
    run_info = {k: v for k, v in info.items() if k not in ("recipe_json", "recipe_yaml")}
    run_info.update(
        {
            "started_at": created_at.isoformat(),
            "finished_at": finished_at,
            "duration_s": round(time.time() - t0, 2),
        }
    )
    llm_all = sum_llm_totals([a["llm"] for a in info["attempts"] if "llm" in a]) if llm is not None else None
    if llm_all is not None:
        # what was sent and paid for, from the spend ledger: it survives kills, the counters of a killed
        # attempt do not (generation/ledger.py)
        ledger = ledger_totals(out)
        llm_all = with_ledger(llm_all, ledger)
        if recipe.generation.judge.enabled:
            from .generation.judge import sum_judge_totals

            llm_all["judge"] = sum_judge_totals([a["judge"] for a in info["attempts"] if "judge" in a], ledger)
        rewrites = [a["rewrite"] for a in info["attempts"] if "rewrite" in a]
        if rewrites:
            from .generation.rewrite import sum_rewrite_totals

            llm_all["rewrite"] = sum_rewrite_totals(rewrites)
    # streamed from the files in bounded memory (sinks/finalize.py), however large the output
    stats = finalize(out, inputs, run_info, recipe_text, llm=llm_all, name=recipe.name, plots=recipe.output.card.plots)
    return RunResult(out=out, stats=stats)
