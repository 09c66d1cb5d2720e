"""`--format parquet`: a Hugging Face dataset folder — parquet files with the images inside, and a card.

The layout is the one the Hub's dataset viewer and `datasets.load_dataset(folder)` read without a
loading script: `data/<split>-NNNNN-of-NNNNN.parquet` plus `README.md` whose YAML front matter names
the files per split. The image column is an Arrow struct `{bytes, path}` tagged as an `Image` feature in
the schema's `huggingface` metadata, which is how `datasets` writes images itself, so readers decode it
to a PIL image. Only pyarrow is needed to write it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..records import QAPair, Sample
from .conversations import conversation

DATA_DIR = "data"
#: images make rows big; small row groups keep the viewer and random reads responsive
ROWS_PER_GROUP = 100
SHARD_BYTES = 256 * 1024 * 1024

_TEXT_PART = pa.struct([("type", pa.string()), ("text", pa.string())])
SCHEMA = pa.schema([
    ("key", pa.string()),
    ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ("dataset", pa.string()),
    ("source_id", pa.string()),
    ("source_split", pa.string()),
    ("licence", pa.string()),
    ("labels", pa.list_(pa.struct([("name", pa.string()), ("value", pa.string())]))),
    ("caption", pa.string()),
    ("qa", pa.list_(pa.struct([("category", pa.string()), ("question", pa.string()), ("answer", pa.string())]))),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.list_(_TEXT_PART))]))),
], metadata={"huggingface": json.dumps({"info": {"features": {"image": {"_type": "Image"}}}})})

_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


def split_name(source_split: str | None) -> str:
    """The Hub split a sample goes to: its source split (FairFace's `train` / `val`), else `train`."""
    if source_split and _SPLIT_NAME.match(source_split):
        return source_split
    return "train"


def row(sample: Sample, qa: list[QAPair], jpg: bytes) -> dict[str, Any]:
    """One dataset row: the image bytes, where it came from, its labels, caption, QA and chat messages."""
    messages = conversation(qa, "messages")
    for m in messages:  # one arrow type for every content part: {type, text}
        m["content"] = [{"type": p["type"], "text": p.get("text")} for p in m["content"]]
    return {
        "key": sample.key,
        "image": {"bytes": jpg, "path": f"{sample.key}.jpg"},
        "dataset": sample.source.dataset,
        "source_id": sample.source.id,
        "source_split": sample.source.split,
        "licence": sample.source.licence,
        "labels": [{"name": k, "value": str(a.value)} for k, a in sample.attributes.items() if a.source == "label"],
        "caption": sample.caption,
        "qa": [{"category": q.category, "question": q.question, "answer": q.answer} for q in qa],
        "messages": messages,
    }


@dataclass
class _Split:
    """The parquet files of one split, written one after the other under temporary names."""

    name: str
    folder: Path
    parts: list[Path] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    writer: pq.ParquetWriter | None = None
    bytes_in_part: int = 0
    count: int = 0

    def add(self, r: dict[str, Any]) -> None:
        self.rows.append(r)
        self.count += 1
        if len(self.rows) >= ROWS_PER_GROUP:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            part = self.folder / f".{self.name}-{len(self.parts):05d}.parquet.part"
            self.parts.append(part)
            self.writer = pq.ParquetWriter(part, SCHEMA, compression="zstd")
            self.bytes_in_part = 0
        table = pa.Table.from_pylist(self.rows, schema=SCHEMA)
        self.writer.write_table(table, row_group_size=ROWS_PER_GROUP)
        self.bytes_in_part += table.nbytes
        self.rows = []
        if self.bytes_in_part >= SHARD_BYTES:
            self.close_part()

    def close_part(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def finish(self) -> list[Path]:
        """Close the last file and give every file its final `<split>-NNNNN-of-NNNNN.parquet` name."""
        self.flush()
        self.close_part()
        final = []
        for i, part in enumerate(self.parts):
            dest = self.folder / f"{self.name}-{i:05d}-of-{len(self.parts):05d}.parquet"
            part.replace(dest)
            final.append(dest)
        return final


class ParquetDataset:
    """Rows in, one growing set of parquet files per split out; `close()` names them and returns the splits."""

    def __init__(self, folder: Path) -> None:
        self.data = folder / DATA_DIR
        self.data.mkdir(parents=True, exist_ok=True)
        for stale in [*self.data.glob("*.parquet"), *self.data.glob(".*.parquet.part")]:
            stale.unlink()  # an earlier export into the same folder must not leave its files in the splits
        self.splits: dict[str, _Split] = {}

    def add(self, sample: Sample, qa: list[QAPair], jpg: bytes) -> None:
        name = split_name(sample.source.split)
        split = self.splits.get(name)
        if split is None:
            split = self.splits[name] = _Split(name, self.data)
        split.add(row(sample, qa, jpg))

    def close(self) -> dict[str, int]:
        """{split: rows}; the files are in place when this returns."""
        for split in self.splits.values():
            split.finish()
        return {name: s.count for name, s in sorted(self.splits.items())}


def data_files_config(splits: dict[str, int]) -> list[dict[str, Any]]:
    """The card's `configs` entry for the parquet folder (Hub viewer / `load_dataset(folder)`)."""
    return [{"config_name": "default",
             "data_files": [{"split": s, "path": f"{DATA_DIR}/{s}-*.parquet"} for s in splits]}]
