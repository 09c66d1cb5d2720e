"""`facecorpus export DIR… --format sharegpt|fairfacegpt|llava|jsonl|parquet|stages|mcq-eval --out PATH`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .llamafactory import DEFAULT_NAME, FAIRFACEGPT_WARNING, training_arguments


def _split(values: list[str] | None) -> frozenset[str]:
    return frozenset(v.strip() for raw in values or [] for v in raw.split(",") if v.strip())


def export_command(
    outs: Annotated[list[str], typer.Argument(help="A run's output folder (local, gs://, s3://); stages and mcq-eval take several.", metavar="DIR...")],
    fmt: Annotated[str, typer.Option("--format", help="sharegpt (LLaMA-Factory), fairfacegpt (FairFaceGPT's published layout, not read by LLaMA-Factory), llava, jsonl, parquet (Hugging Face dataset folder), stages (Face-MLLM's three training stages for LLaMA-Factory) or mcq-eval (a FaceXBench-style test set from held-out partitions).")],
    dest: Annotated[Path, typer.Option("--out", help="The data file (.json; .jsonl for jsonl), images go to images/ beside it; for parquet, stages and mcq-eval a folder.")],
    mixture: Annotated[Path | None, typer.Option("--mixture", help="stages: the mixture file (default: the shipped face_mllm_stages.yaml).")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="Only QA pairs of these categories (repeat or comma-separate).")] = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="Only samples from these source splits, e.g. train.")] = None,
    verdict: Annotated[str, typer.Option("--verdict", help="any, accepted (reviewers accepted it), or not-rejected.")] = "any",
    turns: Annotated[str | None, typer.Option("--turns", help="qa: one conversation per QA pair (sharegpt default); sample: one multi-turn conversation per image (llava/jsonl/parquet default).")] = None,
    name: Annotated[str, typer.Option("--name", help="Dataset name in dataset_info.json (sharegpt, fairfacegpt).")] = DEFAULT_NAME,
    media_dir: Annotated[str | None, typer.Option("--media-dir", help="sharegpt: where the export folder will be on the training machine, for the printed LLaMA-Factory arguments (default: the export folder).")] = None,
    image_root: Annotated[str | None, typer.Option("--image-root", help="fairfacegpt: image_root in dataset_info.json (default: the export folder).")] = None,
) -> None:
    """Write the corpus as training files (LLaMA-Factory ShareGPT, LLaVA, JSON lines, Hugging Face parquet,
    Face-MLLM's training stages) or as a multiple-choice evaluation set."""
    from .writer import ExportFilter, export  # here: `facecorpus --help` must not load the record models

    outs = [o if "://" in o else str(Path(o).resolve()) for o in outs]
    if fmt in ("stages", "mcq-eval"):
        _export_folder(outs, fmt, dest, mixture)
        return
    if len(outs) != 1:
        raise UserError(f"--format {fmt} exports one output; {len(outs)} given (stages and mcq-eval take several)")
    out = outs[0]
    flt = ExportFilter(categories=_split(category), splits=_split(split), verdict=verdict)
    if fmt == "fairfacegpt":
        typer.echo(FAIRFACEGPT_WARNING, err=True)
    rep = export(out, fmt, dest, flt, turns=turns, name=name, image_root=image_root)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(rep.skipped_samples.items())) or "none"
    typer.echo(f"wrote {rep.records} {fmt} records ({rep.qa_pairs} QA pairs from {rep.samples} images) to {rep.path}")
    if fmt == "parquet":
        splits = ", ".join(f"{s} {n}" for s, n in rep.splits.items()) or "none"
        typer.echo(f"splits: {splits}; card: {rep.path / 'README.md'}; samples left out: {skipped}")
        typer.echo(f"load with: datasets.load_dataset({str(rep.path.resolve())!r})")
        return
    typer.echo(f"images: {rep.path.parent / 'images'}; samples left out: {skipped}")
    if fmt == "sharegpt" and rep.dataset_info is not None:
        folder = str(rep.path.parent.resolve())
        typer.echo(f"LLaMA-Factory entry '{name}' in {rep.dataset_info}; image paths are relative to media_dir")
        typer.echo(f"train with: llamafactory-cli train YOUR_CONFIG.yaml {training_arguments(name, folder, media_dir or folder)}")
    elif rep.dataset_info is not None:
        typer.echo(f"FairFaceGPT-layout entry '{name}' in {rep.dataset_info} (not readable by LLaMA-Factory)")


def _export_folder(outs: list[str], fmt: str, dest: Path, mixture: Path | None) -> None:
    """The folder exports: Face-MLLM's training stages, or the mcq-eval evaluation set."""
    if dest.suffix in (".json", ".jsonl") or dest.is_file():
        raise UserError(f"--out {dest}: a {fmt} export is a folder")
    if fmt == "stages":
        from .mixture import export_stages

        rep = export_stages(outs, dest, mixture)
        for name, stage in rep.stages.items():
            typer.echo(f"{name}: {stage['records']} records in {dest / stage['file']}")
            for pool in stage["pools"]:
                note = " (matched nothing: left out)" if pool.get("empty") else (
                    f" (short: {pool['short_by']})" if "short_by" in pool else "")
                typer.echo(f"  {pool['pool']}: {pool['taken']} of {pool['matched']} matched{note}")
        folder = str(dest.resolve())
        typer.echo(f"LLaMA-Factory entries in {rep.dataset_info}; report in {dest / 'mixture.json'}")
        first = next(iter(rep.stages), None)
        if first is not None:
            typer.echo(f"train stage 1 with: llamafactory-cli train YOUR_CONFIG.yaml "
                       f"{training_arguments(rep.names[first], folder, folder)}")
        return
    from .mcq_eval import export_mcq_eval

    rep = export_mcq_eval(outs, dest)
    letters = ", ".join(f"{c} {rep.letters[c]}" for c in "ABCD")
    typer.echo(f"wrote {rep.questions} questions in {len(rep.files)} files to {dest} (right letters: {letters})")
    typer.echo(f"card: {dest / 'README.md'}; hold-out list for other recipes: {dest / 'holdout.txt'}")
    if rep.skipped:
        typer.echo("left out: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.skipped.items())))
