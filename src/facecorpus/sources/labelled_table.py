"""The generic labelled source: a label table (CSV, JSON lines or parquet) plus images, and a mapping of
its columns onto attributes. AffectNet, LFW attributes or a private dataset is a recipe, not code.

Each table row is one input. Its image cell names a file in `images` (a folder or a zip); its
attribute cells are mapped by the recipe (`sources[i].attributes`): through `values` (raw → code, e.g.
AffectNet's `1` → `happy`), a `threshold` (LFW's attribute scores: above it, the flag is present), or
as they are. The attribute is one of the vocabulary's (labels.py) or one the recipe declares
(`declare`: its kind, the words of its values, its question).

Rejects (stage `source`): `bad_row` (unreadable line, no image cell), `unsafe_path`, `duplicate_row`,
`unknown_label` (a value the mapping or vocabulary does not know), `missing_label` (an empty cell of a
required attribute), `holdout`, `missing_file`, `read_error`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..labels import Category, Flag, Vocabulary, Years
from ..records import AttributeValue, Reject
from .files import exists, read_bytes
from .label_rows import LabelRow, ReadLabelledImages, base_name, is_unsafe, label, reject

if TYPE_CHECKING:
    from .config import LabelledSource
    from .labelled_config import AttributeColumn


def cell_text(value: Any) -> str | None:
    """A table cell as text (None when empty); whole floats lose their '.0' so mappings keyed '1' match."""
    if value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def map_value(name: str, spec: AttributeColumn, declared: Category | Flag | Years, raw: str) -> str | bool | int | None:
    """The attribute's value for a raw cell, or None when the mapping or the vocabulary does not know it."""
    if spec.values is not None:
        if raw not in spec.values:
            return None
        value: Any = spec.values[raw]
    elif spec.threshold is not None:
        try:
            return float(raw) > spec.threshold
        except ValueError:
            return None
    else:
        value = raw
    if isinstance(declared, Category):
        return value if isinstance(value, str) and value in declared.words else None
    if isinstance(declared, Flag):
        if isinstance(value, bool):
            return value
        lowered = str(value).lower()
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "-1": False, "no": False}.get(lowered)
    try:
        years = float(value)
    except (TypeError, ValueError):
        return None
    return int(years) if years.is_integer() and declared.low <= years <= declared.high else None


def table_rows(path: str, fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line or row number, row as a dict — or why the line cannot be read) of a label table."""
    if not exists(path):
        raise UserError(f"label table not found: {path}")
    if fmt == "parquet":
        import pyarrow.parquet as pq
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as f:
            table = pq.read_table(f)
        for i, row in enumerate(table.to_pylist(), start=1):
            yield i, row
        return
    text = read_bytes(path).decode("utf-8-sig", errors="replace")
    if fmt == "jsonl":
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield i, f"line {i} is not JSON ({e.msg})"
                continue
            yield i, obj if isinstance(obj, dict) else f"line {i} is not a JSON object"
        return
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    for i, row in enumerate(reader, start=2):
        if None in row or any(v is None for v in row.values()):
            yield i, f"line {i} has missing or extra cells"
            continue
        yield i, row


def table_format(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    lower = path.lower()
    for ext, name in ((".parquet", "parquet"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".tsv", "tsv"), (".csv", "csv")):
        if lower.endswith(ext):
            return name
    raise UserError(f"label table {path}: cannot tell its format from the name; set format: csv, tsv, jsonl or parquet")


class TableRows:
    """A label table's rows mapped onto attributes (see the module docstring)."""

    def __init__(self, cfg: LabelledSource, vocabulary: Vocabulary) -> None:
        self.cfg = cfg
        self.dataset = cfg.dataset
        self.licence = cfg.licence
        self.images = cfg.images
        self.split = cfg.split
        self.holdout = list(cfg.holdout)
        self.limit = cfg.limit
        self.format = table_format(cfg.table, cfg.format)
        self.declared = {name: vocabulary[name] for name in cfg.attributes}

    def partition_name(self, split: str) -> str:
        return f"{self.dataset}'s {split} split"

    def check(self) -> None:
        """Fail before the run when the table lacks a configured column (one line naming it)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq
            from apache_beam.io.filesystems import FileSystems

            if not exists(self.cfg.table):
                raise UserError(f"label table not found: {self.cfg.table}")
            with FileSystems.open(self.cfg.table) as f:
                names = list(pq.ParquetFile(f).schema_arrow.names)
        elif self.format == "jsonl":
            return  # JSON lines have no header; a missing key is per row
        else:
            if not exists(self.cfg.table):
                raise UserError(f"label table not found: {self.cfg.table}")
            first = read_bytes(self.cfg.table).decode("utf-8-sig", errors="replace").split("\n", 1)[0]
            names = [h.strip() for h in next(csv.reader([first], delimiter="\t" if self.format == "tsv" else ","), [])]
        wanted = [self.cfg.image_column, self.cfg.id_column, self.cfg.split_column,
                  *(spec.column for spec in self.cfg.attributes.values())]
        missing = [c for c in wanted if c is not None and c not in names]
        if missing:
            raise UserError(f"label table {self.cfg.table}: no column(s) {missing}; its columns are {names}")

    def rows(self) -> Iterator[LabelRow | Reject]:
        cfg, ds = self.cfg, self.dataset
        seen: set[str] = set()
        name = base_name(cfg.table)
        for n, row in table_rows(cfg.table, self.format):
            if isinstance(row, str):
                yield reject(ds, f"{name}:{n}", "bad_row", f"{name}: {row}")
                continue
            image = cell_text(row.get(cfg.image_column))
            sid = cell_text(row.get(cfg.id_column)) if cfg.id_column else image
            where = f"{name} row {n}"
            if image is None or sid is None:
                yield reject(ds, sid or f"{name}:{n}", "bad_row", f"{where}: no image name in column {cfg.image_column!r}")
                continue
            if is_unsafe(image):
                yield reject(ds, sid, "unsafe_path", f"{where}: image name {image!r} leaves the image folder")
                continue
            if sid in seen:
                yield reject(ds, sid, "duplicate_row", f"{where}: {sid} is listed more than once; the first row is kept")
                continue
            seen.add(sid)
            split = cfg.split_name(cell_text(row.get(cfg.split_column)) if cfg.split_column else None)
            labels: dict[str, AttributeValue] = {}
            problem = None
            for attr, spec in cfg.attributes.items():
                raw = cell_text(row.get(spec.column))
                if raw is None:
                    if spec.required:
                        problem = ("missing_label", f"{where}: the {spec.column!r} cell ({attr}) is empty")
                        break
                    continue
                value = map_value(attr, spec, self.declared[attr], raw)
                if value is None:
                    problem = ("unknown_label", f"{where}: {spec.column}={raw!r} is not a value of {attr} in the mapping")
                    break
                labels[attr] = label(value, raw)
            if problem is not None:
                yield reject(ds, sid, *problem)
                continue
            yield LabelRow(image=image, source_id=sid, split=split, labels=labels)


class ReadLabelledTable(ReadLabelledImages):
    """A label table + images → WorkItems (bytes, mapped labels) and source rejects."""

    def __init__(self, cfg: LabelledSource, vocabulary: Vocabulary | None = None) -> None:
        super().__init__(TableRows(cfg, vocabulary or cfg.vocabulary()))
