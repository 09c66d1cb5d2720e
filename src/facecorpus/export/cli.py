"""`facecorpus export DIR --format sharegpt|llava|jsonl --out PATH`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .writer import ExportFilter, export


def _split(values: list[str] | None) -> frozenset[str]:
    return frozenset(v.strip() for raw in values or [] for v in raw.split(",") if v.strip())


def export_command(
    out: Annotated[str, typer.Argument(help="A run's output folder (local, gs://, s3://).")],
    fmt: Annotated[str, typer.Option("--format", help="sharegpt (LLaMA-Factory, FairFaceGPT's layout), llava or jsonl.")],
    dest: Annotated[Path, typer.Option("--out", help="The data file to write (.json, or .jsonl for jsonl); images go to images/ beside it.")],
    category: Annotated[list[str] | None, typer.Option("--category", help="Only QA pairs of these categories (repeat or comma-separate).")] = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="Only samples from these source splits, e.g. train.")] = None,
    verdict: Annotated[str, typer.Option("--verdict", help="any, accepted (reviewers accepted it), or not-rejected.")] = "any",
    turns: Annotated[str | None, typer.Option("--turns", help="qa: one conversation per QA pair (sharegpt default); sample: one multi-turn conversation per image (llava/jsonl default).")] = None,
    name: Annotated[str, typer.Option("--name", help="Dataset name in dataset_info.json (sharegpt).")] = "facecorpus_dataset",
    image_root: Annotated[str | None, typer.Option("--image-root", help="image_root in dataset_info.json (default: the export folder).")] = None,
) -> None:
    """Write the corpus as training files (ShareGPT for LLaMA-Factory, LLaVA, JSON lines) with images beside."""
    flt = ExportFilter(categories=_split(category), splits=_split(split), verdict=verdict)
    rep = export(out, fmt, dest, flt, turns=turns, name=name, image_root=image_root)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(rep.skipped_samples.items())) or "none"
    typer.echo(f"wrote {rep.records} {fmt} records ({rep.qa_pairs} QA pairs from {rep.samples} images) to {rep.path}")
    typer.echo(f"images: {rep.path.parent / 'images'}; samples left out: {skipped}")
    if rep.dataset_info is not None:
        typer.echo(f"LLaMA-Factory entry '{name}' in {rep.dataset_info}")
