"""The card of a parquet export: the run's own card (DIR/README.md and its figures), its metadata pointing
at the parquet files, and a note on what the export kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from apache_beam.io.filesystems import FileSystems

from ..errors import UserError
from ..output.layout import CARD_FILE, PLOTS_DIR
from ..sinks.card_meta import join_front_matter, size_category, split_front_matter
from ..storage import match_paths
from .parquet import data_files_config

if TYPE_CHECKING:
    from .writer import ExportFilter, ExportReport


def _read(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def write_export_card(out: str, dest: Path, splits: dict[str, int], rep: ExportReport, flt: ExportFilter) -> None:
    """dest/README.md: the run's card with `configs` naming dest's parquet files; dest/plots: its figures."""
    card_path = FileSystems.join(out, CARD_FILE)
    if not FileSystems.exists(card_path):
        raise UserError(f"{out} has no {CARD_FILE} (the dataset card): run facecorpus stats {out} --write")
    meta, body = split_front_matter(_read(card_path).decode("utf-8"))
    meta["configs"] = data_files_config(splits)
    meta["size_categories"] = [size_category(sum(splits.values()))]
    (dest / PLOTS_DIR).mkdir(exist_ok=True)
    for png in match_paths(FileSystems.join(out, PLOTS_DIR, "*.png")):
        (dest / PLOTS_DIR / png.rsplit("/", 1)[-1]).write_bytes(_read(png))
    note = [
        "## This export",
        "",
        f"Parquet export of `{out}` by `facecorpus export --format parquet`: {rep.records} rows (one per image, "
        f"its QA pairs in `qa` and as chat `messages`), {rep.qa_pairs} QA pairs; splits "
        + ", ".join(f"`{s}` {n}" for s, n in splits.items()) + f"; filters: {flt.describe()}. "
        "The sections below describe the whole run the export was taken from.",
        "",
    ]
    tmp = dest / (CARD_FILE + ".part")
    tmp.write_text(join_front_matter(meta, _insert_after_title(body, note)), encoding="utf-8")
    tmp.replace(dest / CARD_FILE)


def _insert_after_title(body: str, section: list[str]) -> str:
    lines = body.split("\n")
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    while at < len(lines) and not lines[at].startswith("## "):
        at += 1  # keep the title's own paragraph (who built it, when) first
    return "\n".join([*lines[:at], *section, *lines[at:]])
