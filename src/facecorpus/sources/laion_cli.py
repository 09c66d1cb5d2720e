"""`facecorpus laion …`: one-off conversions of FaRL's LAION-Face metadata into formats workers read
without torch (a sorted .npy of SAMPLE_IDs; parquet of face detections)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="LAION-Face metadata: convert FaRL's .pth files (needs torch).")


def _parts(text: str | None) -> list[int] | None:
    if text is None:
        return None
    if text.strip().lower() == "20m":
        from .laion_face_meta import LAION_FACE_20M_PARTS

        return list(LAION_FACE_20M_PARTS)
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        from ..errors import UserError

        raise UserError(f"--parts {text!r}: expected comma-separated part numbers, or 20m") from None


@app.command("convert-ids")
def convert_ids_command(
    pth: Annotated[str, typer.Argument(help="laion_face_ids.pth (FaRL).")],
    out: Annotated[str, typer.Option("--out", help="Output .npy (sorted unique int64 SAMPLE_IDs).")],
    parts: Annotated[str | None, typer.Option("--parts", help="Only these parts, e.g. 0,2,5 or '20m' (LAION-Face 20M).")] = None,
) -> None:
    """Write the SAMPLE_IDs of laion_face_ids.pth as a .npy that `ids:` in a recipe reads without torch."""
    from .laion_face_meta import convert_ids

    n = convert_ids(pth, out, _parts(parts))
    typer.echo(f"wrote {n} SAMPLE_IDs to {out}")


@app.command("convert-detections")
def convert_detections_command(
    pths: Annotated[list[str], typer.Argument(help="sample2detect_<part>.pth files (FaRL).")],
    out: Annotated[str, typer.Option("--out", help="Output .parquet (sample_id, faces).")],
) -> None:
    """Write FaRL's per-sample RetinaFace detections as parquet for `detections:` in a recipe."""
    from .laion_face_meta import convert_detections

    n = convert_detections(pths, out)
    typer.echo(f"wrote detections of {n} samples to {out}")
