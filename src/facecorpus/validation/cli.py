"""`facecorpus holdout build SOURCE --out FILE`: hash a benchmark's images into a hold-out list."""

from __future__ import annotations

from typing import Annotated

import typer

holdout_app = typer.Typer(no_args_is_help=True, help="Hold-out lists: images a corpus must never contain.")


@holdout_app.command("build")
def build(
    source: Annotated[str, typer.Argument(help="Folder of images, a WebDataset .tar, or a folder/glob of .tar shards.")],
    out: Annotated[str, typer.Option("--out", help="The list to write (one JSON object per line).")],
    kind: Annotated[str, typer.Option("--format", help="auto | folder | webdataset")] = "auto",
) -> None:
    """Hash every image under SOURCE (sha256 of the bytes + 64-bit pHash) into a hold-out list.

    Name the list in a recipe under `validation.holdout.lists`; matching images are rejected `holdout`.
    """
    from ..errors import UserError
    from .holdout import build_holdout_list

    if kind not in ("auto", "folder", "webdataset"):
        raise UserError(f"--format {kind!r}: expected auto, folder or webdataset")
    n, unreadable = build_holdout_list(source, out, kind)
    typer.echo(f"hold-out list {out}: {n} images from {source}")
    for line in unreadable[:10]:
        typer.echo(f"not hashed: {line}", err=True)
    if len(unreadable) > 10:
        typer.echo(f"… and {len(unreadable) - 10} more inputs not hashed", err=True)
