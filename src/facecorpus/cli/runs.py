"""`facecorpus run` and `facecorpus demo`: a recipe into an output folder, and how the run ended
(exit codes 0 done, 1 nothing written or too many inputs lost to infrastructure failures, 2 a user error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UserError
from .app import interrupted, print_summary, setup_logging


def recorded_recipe_text(text: str, overrides: list[str]) -> str:
    """The recipe text a run records (run.json, the card): the file as written, then the `--set`
    overrides it ran with as comment lines, so the card never shows settings the run did not use."""
    if not overrides:
        return text
    return text.rstrip("\n") + "\n# run with overrides:\n" + "".join(f"#   --set {o}\n" for o in overrides)


def _command(*words: str) -> str:
    import shlex

    return shlex.join(["facecorpus", *words])


def _run_and_report(recipe: Any, out: str, beam_args: list[str], text: str, again: list[str], **modes: bool) -> None:
    """Run, print the summary, and end truthfully (see outcome.py): exit 1 with one line when the run
    wrote nothing or lost too many inputs to infrastructure failures; a full or read-only disk, or a
    user error a stage raised inside the runner, becomes one UserError line (exit 2).

    `again` is the command line that runs this again (without --resume and --retry-rejects)."""
    from ..errors import environment_error, user_error
    from ..outcome import EXIT_RUN_FAILED, explain_environment_error, run_failure
    from ..pipeline import run_recipe

    try:
        result = run_recipe(recipe, out, beam_args, recipe_yaml=text, **modes)
    except UserError:
        raise
    except (KeyboardInterrupt, Exception) as e:
        if interrupted(e):  # Ctrl-C, in a stage or not: run_recipe left the output resumable
            # console_main then ends the process without joining the LLM client's threads, which may
            # wait on a stalled endpoint for their whole request timeout
            typer.echo(f"facecorpus: interrupted; continue with: {_command(*again, '--resume')}", err=True)
            raise typer.Exit(130) from None
        env = environment_error(e)
        if env is not None:
            raise UserError(explain_environment_error(env, out, _command(*again, "--resume"))) from None
        inner = user_error(e)
        if inner is not None and inner is not e:
            raise UserError(str(inner).split(" [while running ")[0]) from None
        raise
    if result.stats is None:
        typer.echo(f"submitted job {result.job_id or '(no id reported)'}; when it has finished: facecorpus finalize {out} "
                   f"--inputs N  (N: the job's facecorpus/inputs counter)")
        return
    print_summary(result.stats, out)
    rerun = _command(*again) if again[:1] == ["demo"] else f"{_command(*again)} (after removing {out})"
    why = run_failure(result.stats, recipe.runner.max_retryable_rejects, _command(*again, "--resume", "--retry-rejects"),
                      rerun)
    if why is not None:
        typer.echo(f"facecorpus: run failed: {why}", err=True)
        raise typer.Exit(EXIT_RUN_FAILED)


def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    out: Annotated[str, typer.Option("--out", help="Output folder (local, gs://, s3://).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: dotted.key=value.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted run in --out: only what is missing.")] = False,
    new_version: Annotated[
        bool, typer.Option("--new-version", help="With --resume: continue although the recipe, prompts or versions changed.")
    ] = False,
    retry_rejects: Annotated[
        bool, typer.Option("--retry-rejects", help="With --resume: also re-run the inputs whose rejects are retryable.")
    ] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Remote runners: submit the job and return; finish the "
                                         "output later with `facecorpus finalize`.")] = False,
    beam_args: Annotated[list[str] | None, typer.Argument(help="Beam pipeline options after `--`.")] = None,
) -> None:
    """Run a recipe into --out (or finish one there with --resume). Exit codes: 0 done, 1 the run wrote
    nothing or lost too many inputs to infrastructure failures (the line says how to retry), 2 a user
    error (one line)."""
    from ..recipe import load_recipe, read_recipe_text

    setup_logging(verbose)
    r = load_recipe(recipe, set_ or [])
    text = recorded_recipe_text(read_recipe_text(recipe), set_ or [])
    again = ["run", str(recipe), "--out", out, *[w for o in set_ or [] for w in ("--set", o)],
             *(["--new-version"] if new_version else [])]
    _run_and_report(r, out, beam_args or [], text, again + (["--", *beam_args] if beam_args else []),
                    resume=resume, new_version=new_version, retry_rejects=retry_rejects, detach=detach)


def demo(
    out: Annotated[str, typer.Option("--out", help="Output folder.")] = "out/demo",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key of the demo recipe: dotted.key=value "
                                   "(e.g. generation.generator=templates: no LLM)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted demo in --out instead of starting over.")] = False,
    retry_rejects: Annotated[
        bool, typer.Option("--retry-rejects", help="With --resume: also re-run the inputs whose rejects are retryable.")
    ] = False,
) -> None:
    """The main job on embedded defaults: bundled real photos, local runner, no network. Exit codes as
    for `run`."""
    import yaml

    from ..demo import build_demo_inputs
    from ..recipe import apply_override, validate_recipe
    from ..resources import data_dir

    setup_logging(verbose)
    inputs = Path(f"{out.rstrip('/')}-input").resolve()
    build_demo_inputs(inputs)
    recipe_path = data_dir("pipelines") / "demo.yaml"
    text = recipe_path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for assignment in set_ or []:
        apply_override(data, assignment)
    recipe = validate_recipe(data, str(recipe_path), inputs)
    text = recorded_recipe_text(text, set_ or [])
    if Path(out).exists() and not (resume or retry_rejects):
        import shutil

        shutil.rmtree(out)
    typer.echo(f"demo inputs: {inputs}")
    again = ["demo", "--out", out, *[w for o in set_ or [] for w in ("--set", o)]]
    _run_and_report(recipe, out, [], text, again, resume=resume, retry_rejects=retry_rejects)
    from ..demo_summary import MIN_FACE_YIELD, demo_report

    report = demo_report(out)
    for line in report.lines:
        typer.echo(line)
    typer.echo(f"next: facecorpus validate {out}  ·  facecorpus stats {out}")
    if not report.ok:
        typer.echo(f"facecorpus: error: the demo wrote {report.written} of the {report.faces} faces it found "
                   f"({100 * report.face_yield:.0f}%), fewer than {MIN_FACE_YIELD:.0%}; see {out}/rejects", err=True)
        raise typer.Exit(1)
