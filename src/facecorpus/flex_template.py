"""Entry point of the Dataflow Flex Template (docker/Dockerfile.launcher, docker/flex_template_metadata.json).

Dataflow's launcher runs `python -m facecorpus.flex_template --recipe=gs://… --out=gs://… [--set=k=v …]
[Beam options]` inside the launcher image. The recipe is read through Beam FileSystems (gs://, s3://),
then `facecorpus run --detach` submits the job and returns — a Flex Template launcher must not wait for
the job. When the job has finished, `facecorpus finalize OUT --inputs N` writes index.json, stats.json
and the card (docs/dataflow.md).

Dataflow runs this file as a script (`python $FLEX_TEMPLATE_PYTHON_PY_FILE`), not as a module: its
imports are absolute (the package is installed in the launcher image), and a template always means
Dataflow, so `--runner=DataflowRunner` is added unless the options name a runner.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

TEMPLATE_PARAMETERS = ("recipe", "out", "set")


def command_line(argv: list[str]) -> tuple[str, list[str]]:
    """(recipe URL, the `facecorpus run` arguments) for the template's parameters; other options go to Beam."""
    parser = argparse.ArgumentParser(prog="facecorpus.flex_template")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], dest="sets")
    known, beam = parser.parse_known_args(argv)
    args = ["--out", known.out, "--detach"]
    for s in known.sets:
        args += ["--set", s]
    if not any(a == "--runner" or a.startswith("--runner=") for a in beam):
        beam = ["--runner=DataflowRunner", *beam]
    return known.recipe, [*args, "--", *beam]


def fetch_recipe(url: str, folder: Path) -> Path:
    """The recipe file, copied to a local file (its paths must be absolute gs:// / s3:// URLs)."""
    from apache_beam.io.filesystems import FileSystems

    from facecorpus.storage import use_storage

    use_storage()
    local = folder / url.rsplit("/", 1)[-1]
    with FileSystems.open(url) as f:
        local.write_bytes(f.read())
    return local


def main(argv: list[str] | None = None) -> None:
    from facecorpus.cli import main as cli_main

    recipe_url, run_args = command_line(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="facecorpus-template-") as tmp:
        recipe = fetch_recipe(recipe_url, Path(tmp))
        sys.argv = ["facecorpus", "run", str(recipe), *run_args]
        cli_main()


if __name__ == "__main__":
    # run as a file, its folder is sys.path[0]: keep the package's modules from shadowing top-level ones
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    main()
