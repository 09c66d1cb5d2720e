"""The `facecorpus` command. Thin: parses arguments, then calls the modules that do the work.

User mistakes (missing file, bad YAML, unknown key, missing model pack, unreachable endpoint) are one
line on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain click help: rendering it with rich imports rich and markdown-it, more than the rest of start-up
    rich_markup_mode=None,
    help="Build face image-text corpora (WebDataset shards) with Apache Beam.",
)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"facecorpus {__version__}")
        raise typer.Exit()


#: commands that read or write an output folder: Beam's FileSystems get their options before they start
OUTPUT_COMMANDS = frozenset({"run", "demo", "validate", "stats", "export", "review", "finalize"})


@app.callback()
def _options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Build face image-text corpora (WebDataset shards) with Apache Beam."""
    if ctx.invoked_subcommand in OUTPUT_COMMANDS:
        from .storage import use_storage

        use_storage()  # s3:// and gs:// from the standard environment (storage.py); `run` may override


def _setup_logging(verbose: bool) -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=fmt, stream=sys.stderr)
    # A library that logged through the root logger at import time has already given it a plain default
    # handler, and basicConfig then changes nothing: give that handler our format (handlers of other
    # types, e.g. a test harness's capture, are left alone).
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(logging.Formatter(fmt))
    logging.getLogger("facecorpus").setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DropReportedErrors) for f in handler.filters):
            handler.addFilter(_DropReportedErrors())
    # Beam's own INFO logs drown the progress lines on the local runner
    for noisy in ("apache_beam", "root"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)


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
    from .errors import environment_error, user_error
    from .outcome import EXIT_RUN_FAILED, explain_environment_error, run_failure
    from .pipeline import run_recipe

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
    _print_summary(result.stats, out)
    rerun = _command(*again) if again[:1] == ["demo"] else f"{_command(*again)} (after removing {out})"
    why = run_failure(result.stats, recipe.runner.max_retryable_rejects, _command(*again, "--resume", "--retry-rejects"),
                      rerun)
    if why is not None:
        typer.echo(f"facecorpus: run failed: {why}", err=True)
        raise typer.Exit(EXIT_RUN_FAILED)


def _print_summary(stats: dict, out: str) -> None:
    typer.echo(
        f"inputs {stats['inputs']} → written {stats['written']}, rejected {stats['rejected']} "
        f"({', '.join(f'{k} {v}' for k, v in stats['by_reason'].items()) or 'none'})"
    )
    typer.echo(f"shards {stats['shards']}, QA pairs {stats['qa_pairs']}; output: {out}")


@app.command()
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
    from .recipe import load_recipe, read_recipe_text

    _setup_logging(verbose)
    r = load_recipe(recipe, set_ or [])
    text = recorded_recipe_text(read_recipe_text(recipe), set_ or [])
    again = ["run", str(recipe), "--out", out, *[w for o in set_ or [] for w in ("--set", o)],
             *(["--new-version"] if new_version else [])]
    _run_and_report(r, out, beam_args or [], text, again + (["--", *beam_args] if beam_args else []),
                    resume=resume, new_version=new_version, retry_rejects=retry_rejects, detach=detach)


@app.command()
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

    from .demo import build_demo_inputs
    from .recipe import apply_override, validate_recipe
    from .resources import data_dir

    _setup_logging(verbose)
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
    from .demo_summary import MIN_FACE_YIELD, demo_report

    report = demo_report(out)
    for line in report.lines:
        typer.echo(line)
    typer.echo(f"next: facecorpus validate {out}  ·  facecorpus stats {out}")
    if not report.ok:
        typer.echo(f"facecorpus: error: the demo wrote {report.written} of the {report.faces} faces it found "
                   f"({100 * report.face_yield:.0f}%), fewer than {MIN_FACE_YIELD:.0%}; see {out}/rejects", err=True)
        raise typer.Exit(1)


@app.command()
def validate(out: Annotated[str, typer.Argument(help="A run's output folder.")]) -> None:
    """Exit 0 iff every sample and file in the output is valid and the stats are consistent, and it
    holds at least one sample; an empty output is reported as empty (exit 1), not as a success."""
    from .output.check import check_output

    rep = check_output(out)
    for note in rep.notes:
        typer.echo(f"note: {note}", err=True)
    for p in rep.problems:
        typer.echo(p, err=True)
    if not rep.ok:
        typer.echo(f"INVALID: {len(rep.problems)} problem(s) in {out}", err=True)
        raise typer.Exit(1)
    if rep.samples == 0:
        typer.echo(f"EMPTY: {out} is consistent but holds no samples ({rep.rejects} rejects; "
                   f"see facecorpus stats {out})", err=True)
        raise typer.Exit(1)
    typer.echo(f"valid: {rep.samples} samples in {rep.shards} shards, {rep.rejects} rejects")


def _recorded_card_plots(out: str) -> bool:
    from .output.run_info import read_run_info, recorded_card_plots

    return recorded_card_plots(read_run_info(out) or {})


def _recorded_recipe_yaml(out: str) -> str:
    from .output.run_info import read_run_info, recorded_recipe_yaml

    return recorded_recipe_yaml(read_run_info(out) or {})


@app.command()
def stats(
    out: Annotated[str, typer.Argument(help="A run's output folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print stats.json as JSON.")] = False,
    write: Annotated[bool, typer.Option("--write", help="Recompute stats.json, index.json and README.md from the files.")] = False,
) -> None:
    """Counts, distributions and costs of an output."""
    from apache_beam.io.filesystems import FileSystems

    from .output.layout import STATS_FILE
    from .storage import read_text, require_filesystem

    path = FileSystems.join(require_filesystem(out), STATS_FILE)
    if not FileSystems.exists(path):
        raise UserError(f"{out} has no stats.json: is it a facecorpus output?")
    current = json.loads(read_text(path))
    if write:
        from .sinks.finalize import finalize

        inputs = current.get("inputs") if current.get("inputs_counted_by") == "run" else None
        current = finalize(out, inputs, current.get("run", {}), _recorded_recipe_yaml(out), llm=current.get("llm"),
                           plots=_recorded_card_plots(out))
        typer.echo(f"rewrote stats.json, index.json, README.md and plots/ in {out}", err=True)
    if as_json:
        typer.echo(json.dumps(current, indent=2))
        return
    _print_summary(current, out)
    for attr, dist in current["labels"].items():
        typer.echo(f"{attr}: " + ", ".join(f"{k} {v}" for k, v in dist.items()))
    typer.echo("QA per category: " + ", ".join(f"{k} {v}" for k, v in current["qa_by_category"].items()))
    llm = current.get("llm", {})
    typer.echo(
        f"LLM: {llm.get('requests', 0)} requests, {llm.get('cache_hits', 0)} cache hits, "
        f"{llm.get('prompt_tokens', 0)}+{llm.get('completion_tokens', 0)} tokens, ${llm.get('cost_usd', 0):.4f}"
    )


@app.command()
def finalize(
    out: Annotated[str, typer.Argument(help="A finished job's output folder (local, gs://, s3://).")],
    inputs: Annotated[int | None, typer.Option("--inputs", min=0, help="The job's `facecorpus/inputs` counter (Dataflow: "
                                                 "the job page's custom counters); without it inputs are not proven.")] = None,
) -> None:
    """Write index.json, stats.json and the card of a job that ran detached (streamed, bounded memory)."""
    from .output.run_info import read_run_info
    from .sinks.finalize import finalize_recorded
    from .storage import require_filesystem

    info = read_run_info(require_filesystem(out))
    if info is None:
        raise UserError(f"{out} has no run.json: is it a facecorpus output?")
    stats = finalize_recorded(out, info, inputs)
    _print_summary(stats, out)
    if not stats["invariant_ok"]:
        typer.echo(f"INVALID: inputs {stats['inputs']} != written {stats['written']} + rejected {stats['rejected']}", err=True)
        raise typer.Exit(1)
    if inputs is None:
        typer.echo("note: inputs counted from the outputs (pass --inputs N from the job's counter to prove none was lost)",
                   err=True)


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON Schema here (default: print).")] = None,
    check: Annotated[Path | None, typer.Option("--check", help="Exit 1 if this file differs from the model.")] = None,
) -> None:
    """JSON Schema of the sample record, generated from the pydantic model."""
    from .records import sample_json_schema_text

    text = sample_json_schema_text()
    if check is not None:
        if not check.is_file() or check.read_text(encoding="utf-8") != text:
            typer.echo(f"{check} is stale: run `make schema`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{check} is up to date")
        return
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")


from .review.cli import review  # noqa: E402 - command modules register after the app exists

app.command()(review)
from .export.cli import export_command  # noqa: E402

app.command("export")(export_command)
from .faces.cli import faces_command  # noqa: E402
from .models_cli import app as models_app  # noqa: E402

app.command("faces")(faces_command)
app.add_typer(models_app, name="models")
from .generation.cli import app as llm_app  # noqa: E402
from .prompting.cli import app as prompts_app  # noqa: E402

app.add_typer(llm_app, name="llm")
app.add_typer(prompts_app, name="prompts")
from .sources.laion_cli import app as laion_app  # noqa: E402

app.add_typer(laion_app, name="laion")
from .validation.cli import holdout_app  # noqa: E402

app.add_typer(holdout_app, name="holdout")


class _DropReportedErrors(logging.Filter):
    """Beam logs a worker's exception with its traceback before re-raising it on the launcher; when that
    exception is a user error or an environment error (full disk, read-only folder), the command reports
    it as one line instead, so the traceback is not printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .errors import environment_error, user_error

        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or (environment_error(exc) is None and user_error(exc) is None and not interrupted(exc))


def interrupted(exc: BaseException) -> bool:
    """True for a Ctrl-C, also when Beam re-raised it from a stage as a RuntimeError ("KeyboardInterrupt
    [while running 'generate/AwaitOutcomes']"): the command then ends as interrupted (130), in one line."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, KeyboardInterrupt) or (isinstance(e, RuntimeError) and str(e).startswith("KeyboardInterrupt")):
            return True
        e = e.__cause__ or e.__context__
    return False


class _DropGcpClientNotice(logging.Filter):
    """Beam logs, on import, that the optional Google Cloud client libraries are missing; facecorpus
    does not use BigQuery, and gs:// paths fail with Beam's own clear error when they are needed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found")


def _click_exceptions() -> tuple[type[Exception], ...]:
    """Usage-error classes: typer >= 0.2x raises its vendored click's (`typer._click`), which are not
    the `click` package's (not even installed by typer then); older typer raises click's own."""
    found: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except ImportError:
            continue
    return tuple(found)


def main() -> None:
    """Entry point: run the typer app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if not any(isinstance(f, _DropGcpClientNotice) for f in logging.getLogger().filters):
        logging.getLogger().addFilter(_DropGcpClientNotice())
    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit codes instead of raising here
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except UserError as e:
        typer.echo(f"facecorpus: error: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("facecorpus: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("facecorpus: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # click usage errors come through here with standalone_mode=False
        from .errors import environment_error
        from .extras import remote_path_error
        from .outcome import explain_environment_error

        if isinstance(e, _click_exceptions()):
            typer.echo(f"facecorpus: error: {e.format_message()}", err=True)
            sys.exit(2)
        env = environment_error(e)
        if env is not None:  # a full disk or a read-only folder, met by a command other than run/demo
            typer.echo(f"facecorpus: error: {explain_environment_error(env, None, None)}", err=True)
            sys.exit(UserError.exit_code)
        missing = remote_path_error(e)  # gs:// or s3:// without the extra that reads it
        if missing is not None:
            typer.echo(f"facecorpus: error: {missing}", err=True)
            sys.exit(missing.exit_code)
        raise


def console_main() -> None:
    """The `facecorpus` command: `main()`, then a process exit that skips native library teardown.

    pyarrow's parquet reader leaves pool threads that the C++ runtime sometimes tears down while
    still joinable at interpreter exit ("terminate called without an active exception", SIGABRT) after
    all work is done (apache/arrow#34314); measured here: 1 `validate` in 20. Our own exit handlers
    (the local LLM server's stop, temp-file finalizers) still run, output is flushed, then the process
    ends with the command's code. Uncaught errors keep the normal exit (and their traceback).
    """
    import atexit

    try:
        main()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
