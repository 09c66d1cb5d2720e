"""Reading an output folder's files as streams, on any Beam filesystem (local, gs://, s3://): the
manifest a column batch at a time (pyarrow), reject lines one at a time, a shard's samples member by
member. Memory is one batch, one line or one sample, never a whole file — what `validate`, stats,
review, export and the loader build on.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ..records import Reject
from ..storage import iter_lines, use_storage
from .layout import manifest_files, name_of, reject_files, shard_files
from .manifest import MANIFEST_SCHEMA

#: manifest rows read at a time
BATCH_ROWS = 8192


def iter_manifest_batches(paths: Iterable[str], columns: Iterable[str] | None = None,
                          batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches of the manifest files `paths`, one file and `batch_rows` rows at a time; with
    `columns`, only those (the ones a file lacks are left out: older outputs)."""
    wanted = None if columns is None else list(columns)
    for path in paths:
        with FileSystems.open(path) as f:
            pf = pq.ParquetFile(f)
            present = None if wanted is None else [c for c in wanted if c in pf.schema_arrow.names]
            yield from pf.iter_batches(batch_size=batch_rows, columns=present)


def iter_manifest_columns(paths: Iterable[str], columns: tuple[str, ...], batch_rows: int = BATCH_ROWS) -> Iterator[dict[str, list]]:
    """Batches of manifest rows as {column: values}; a column an older file lacks comes as Nones."""
    for batch in iter_manifest_batches(paths, columns, batch_rows):
        col = batch.to_pydict()
        for c in columns:
            col.setdefault(c, [None] * batch.num_rows)
        yield col


def read_manifest(out: str, columns: Iterable[str] | None = None) -> pa.Table:
    """The whole manifest as one table (review's queue, small outputs); streaming readers use the batches."""
    batches = list(iter_manifest_batches(manifest_files(out), columns))
    if not batches:
        schema = MANIFEST_SCHEMA if columns is None else pa.schema([MANIFEST_SCHEMA.field(c) for c in columns])
        return schema.empty_table()
    return pa.Table.from_batches(batches) if len({b.schema for b in batches}) == 1 else pa.concat_tables(
        [pa.Table.from_batches([b]) for b in batches], promote_options="default")


def iter_rejects(out: str) -> Iterator[tuple[str, int, str]]:
    """(file, line number, raw line) for every non-empty line of rejects/*.jsonl, streamed."""
    for path in reject_files(out):
        for i, line in enumerate(iter_lines(path), start=1):
            if line.strip():
                yield path, i, line.rstrip("\r\n")


def load_rejects(out: str) -> list[Reject]:
    """Every reject as a record (small outputs: the demo's report); large ones stream `iter_rejects`."""
    return [Reject.model_validate_json(line) for _, _, line in iter_rejects(out)]


def iter_shard_groups(path: str, keys: set[str] | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each run of consecutive members with the same key in the shard at
    `path`, read member by member through a FileSystems stream (memory: one sample). A key whose
    members are not contiguous comes twice. With `keys`, other samples are skipped unread. Errors of a
    broken tar (tarfile.TarError, OSError, EOFError) reach the caller after the samples before it."""
    current: str | None = None
    members: dict[str, bytes] = {}
    with FileSystems.open(path) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for m in tar:
            key, _, ext = m.name.rpartition("/")[2].partition(".")
            if not m.isfile() or (keys is not None and key not in keys):
                continue
            if key != current:
                if current is not None:
                    yield current, members
                current, members = key, {}
            f = tar.extractfile(m)
            members[ext] = f.read() if f is not None else b""
    if current is not None:
        yield current, members


def iter_output_samples(
    out: str, keys: set[str] | None = None, shards: set[str] | None = None
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for every sample of every shard of an output, in shard order.

    With `keys`, other samples are skipped; with `shards` (file names such as 'shard-00003.tar'),
    other shards are not opened. Reads through Beam FileSystems, like the writer, so local, gs:// and
    s3:// outputs all work.
    """
    use_storage()
    for path in shard_files(out):
        if shards is None or name_of(path) in shards:
            yield from iter_shard_groups(path, keys)
