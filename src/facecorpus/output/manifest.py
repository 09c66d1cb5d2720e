"""The manifest: one parquet row per written sample, the columns worth querying without opening a shard.

Each column is declared once, in `COLUMNS`: its name, its Arrow type and how it reads the `Sample`.
The parquet schema (`MANIFEST_SCHEMA`), the rows the sink writes (`manifest_row`), the columns
`facecorpus validate` compares against the shards and the empty table of an output without samples
all derive from that table. To make a record field queryable, add its column here.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..records import Face, Sample
from .annotation_agreement import annotation_pairs


@dataclass(frozen=True)
class Row:
    """What a column reads: the sample, the shard it is in, and its tar members by extension."""

    sample: Sample
    shard: str
    members: dict[str, bytes]

    @property
    def face(self) -> Face | None:
        """The primary face, if any."""
        s = self.sample
        return s.faces[s.primary_face] if s.primary_face is not None and s.faces else None

    def attribute(self, name: str) -> str | None:
        v = self.sample.attributes.get(name)
        return None if v is None else str(v.value)

    def labels(self) -> dict[str, Any]:
        """Every attribute that came from the dataset's labels, by name."""
        return {k: v.value for k, v in sorted(self.sample.attributes.items()) if v.source == "label"}

    def label(self, name: str) -> str | None:
        v = self.sample.attributes.get(name)
        return str(v.value) if v is not None and v.source == "label" else None

    def sha256_of(self, ext: str) -> str | None:
        data = self.members.get(ext)
        return hashlib.sha256(data).hexdigest() if data is not None else None


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    value: Callable[[Row], Any]


def _face(read: Callable[[Face], Any]) -> Callable[[Row], Any]:
    return lambda r: read(r.face) if r.face is not None else None


COLUMNS: tuple[Column, ...] = (
    Column("key", pa.string(), lambda r: r.sample.key),
    Column("shard", pa.string(), lambda r: r.shard),
    Column("source_dataset", pa.string(), lambda r: r.sample.source.dataset),
    Column("source_id", pa.string(), lambda r: r.sample.source.id),
    Column("split", pa.string(), lambda r: r.sample.source.split),
    Column("url", pa.string(), lambda r: r.sample.source.url),
    Column("licence", pa.string(), lambda r: r.sample.source.licence),
    Column("n_faces", pa.int32(), lambda r: len(r.sample.faces)),
    Column("generator", pa.string(), lambda r: r.sample.provenance.generator),
    Column("llm_model", pa.string(), lambda r: r.sample.provenance.llm_model),
    Column("n_qa", pa.int32(), lambda r: len(r.sample.qa)),
    Column("categories", pa.list_(pa.string()), lambda r: [q.category for q in r.sample.qa]),
    Column("prompt_sha256", pa.string(), lambda r: r.sample.provenance.prompt_sha256),
    Column("prompt_set", pa.string(), lambda r: r.sample.provenance.prompt_set),
    Column("label_age", pa.string(), lambda r: r.label("age")),
    Column("label_gender", pa.string(), lambda r: r.label("gender")),
    Column("label_race", pa.string(), lambda r: r.label("race")),
    # every dataset label (CelebA's 40 flags, RAF-DB's expression…) for the card's balance tables
    Column("labels_json", pa.string(), lambda r: json.dumps(r.labels(), sort_keys=True, separators=(",", ":"))),
    # short answers of label-derived pairs ("attribute_mcq=B", "attribute_yes_no=no") for answer balance
    Column("answer_keys", pa.list_(pa.string()),
           lambda r: [f"{q.category}={q.answer_key}" for q in r.sample.qa if q.answer_key is not None]),
    # the LLM's annotations beside the labels and face models they can be compared with (the card's agreement)
    Column("annotation_pairs", pa.list_(pa.string()), lambda r: annotation_pairs(r.sample)),
    Column("age", pa.string(), lambda r: r.attribute("age")),
    Column("gender", pa.string(), lambda r: r.attribute("gender")),
    Column("race", pa.string(), lambda r: r.attribute("race")),
    Column("expression", pa.string(), _face(lambda f: f.expression.label if f.expression else None)),
    Column("pose_yaw", pa.float64(), _face(lambda f: f.pose.yaw if f.pose else None)),
    Column("pose_pitch", pa.float64(), _face(lambda f: f.pose.pitch if f.pose else None)),
    Column("pose_roll", pa.float64(), _face(lambda f: f.pose.roll if f.pose else None)),
    Column("face_score", pa.float64(), _face(lambda f: f.score)),
    Column("face_size_px", pa.float64(), _face(lambda f: f.quality.size_px if f.quality else None)),
    Column("width", pa.int32(), lambda r: r.sample.image.width),
    Column("height", pa.int32(), lambda r: r.sample.image.height),
    Column("sha256", pa.string(), lambda r: r.sample.image.sha256),
    Column("phash", pa.string(), lambda r: r.sample.image.phash),
    Column("caption_chars", pa.int32(), lambda r: len(r.sample.caption)),
    Column("answer_chars", pa.list_(pa.int32()), lambda r: [len(q.answer) for q in r.sample.qa]),
    Column("n_conflicts", pa.int32(), lambda r: len(r.sample.attribute_conflicts)),
    Column("flags", pa.list_(pa.string()), lambda r: list(r.sample.flags)),
    Column("prompt_tokens", pa.int64(), lambda r: r.sample.provenance.usage.prompt_tokens),
    Column("completion_tokens", pa.int64(), lambda r: r.sample.provenance.usage.completion_tokens),
    Column("cost_usd", pa.float64(), lambda r: r.sample.provenance.usage.cost_usd),
    # with the sample's tar members: the sha256 of its KEY.json and KEY.jpg (`facecorpus validate` notices edits)
    Column("record_sha256", pa.string(), lambda r: r.sha256_of("json")),
    Column("jpeg_sha256", pa.string(), lambda r: r.sha256_of("jpg")),
)

MANIFEST_SCHEMA = pa.schema([(c.name, c.type) for c in COLUMNS])
#: columns computed from the files themselves, not from the record
FILE_COLUMNS = ("record_sha256", "jpeg_sha256")


def manifest_row(sample: Sample, shard: str, members: list[tuple[str, bytes]] | None = None) -> dict[str, Any]:
    """One manifest row. Without the sample's tar members, the file columns are None."""
    row = Row(sample, shard, {name.rsplit(".", 1)[-1]: data for name, data in members or []})
    return {c.name: c.value(row) for c in COLUMNS}


def manifest_bytes(rows: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()
