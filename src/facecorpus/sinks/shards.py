"""WebDataset shards and their manifest rows.

Samples are spread over buckets by a stable hash of their key (bucket count = written samples / the
target per shard, known from a side input), each bucket is sorted by key and written as one or more
tar shards under a byte cap. Only small `Staged` locators wait for that count: a sample's bytes are
in a file under `shards/_tmp/staging/` before the count is known, so no runner holds JPEGs behind the
global count. Tar bytes are reproducible: fixed member order, mtime, owner and mode.
A shard is written aside (`shards/_tmp/`) and renamed into place, through Beam FileSystems, so a
reader never sees a partial shard, locally or on object storage. Each shard's manifest rows
(output/manifest.py) go to `manifest/<shard>.parquet` the same way.

Each sample is packed once (`pack`: its tar members serialised and its manifest row computed); the
writer only sorts, splits and concatenates packed samples. With `staging=True` (local runners) a
packed sample waits in a staging file instead of the runner's memory:
- each StageSample bundle appends its packed samples to one file of its own under
  `shards/_tmp/staging/` (pickles back to back) and passes on only a `Staged` locator (key, file,
  offset, length); it closes the file when the bundle finishes, before any writer can read it (the
  writers run after a grouping); a retried bundle writes a new file;
- nothing in the pipeline deletes a staging file (a retried writer bundle must find its samples
  again); `remove_staging` removes the staging folders in one call once the pipeline has succeeded,
  and `--resume` clears `shards/_tmp/` after a kill.

With `staging=False` (remote runners) the runner's shuffle carries the samples, grouped by a fine
bucket that does not depend on the count (`FINE_BUCKETS`, a hash of the key); `WritePart` writes each
fine bucket's packed samples once into a part file of its own next to the staging files (a retried
bundle writes a new one) and passes on their locators. From there both modes are the same steps:
count the locators, bucket them by key, group, write — so both write byte-identical shards.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import tarfile
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ..output.layout import MANIFEST_DIR, SCREEN_DIR, SHARDS_DIR, STAGING_DIR, TMP_DIR
from ..output.manifest import manifest_bytes, manifest_row
from ..stage import ShardSample
from ..storage import write_atomically


def key_hash(key: str) -> int:
    """A key's stable 32-bit hash: where it falls among the buckets, coarse and fine alike."""
    return zlib.crc32(key.encode("utf-8"))


def bucket_of(key: str, n_buckets: int) -> int:
    """The key's bucket among n: its hash's range (n equal ranges of the 32-bit hash), so that the
    samples of one bucket form one run in a part file ordered by hash (`WritePart`)."""
    return (key_hash(key) * max(1, n_buckets)) >> 32


#: fine buckets of the shuffle path (`WritePart`): fixed, so grouping the samples needs no count. A part
#: is sorted in memory: written / 16384 samples (~90 MB for 37.5M samples of 40 KB). A shard's
#: bucket reads one run from each part its hash range overlaps (1–2 once there are more shards than parts)
FINE_BUCKETS = 16384


def n_buckets_for(count: int, samples_per_shard: int) -> int:
    return max(1, math.ceil(count / samples_per_shard))


def tar_bytes_for(members: Iterable[tuple[str, bytes]]) -> bytes:
    """Reproducible tar of (name, bytes) members in the given order: the bytes `tarfile` writes in GNU
    format with mtime 0, mode 0644, owner 0 and no owner names (`tar_bytes_with_tarfile`), built here
    from a header template (a third of the sink's CPU went to tarfile's per-member header code). A name
    that is not ASCII or longer than 100 bytes, or a member of 8 GiB or more, is left to tarfile."""
    members = list(members)
    if not all(len(name) <= _NAME_MAX and name.isascii() and len(data) < _SIZE_MAX for name, data in members):
        return tar_bytes_with_tarfile(members)
    parts: list[bytes] = []
    for name, data in members:
        parts.append(_header(name.encode("ascii"), len(data)))
        parts.append(data)
        parts.append(b"\0" * (-len(data) % tarfile.BLOCKSIZE))
    parts.append(b"\0" * (2 * tarfile.BLOCKSIZE))  # end of archive
    size = sum(map(len, parts))
    parts.append(b"\0" * (-size % tarfile.RECORDSIZE))  # tarfile pads the archive to whole records
    return b"".join(parts)


_NAME_MAX = 100  # longer names need a GNU long-name header: tarfile writes those
_SIZE_MAX = 8**11  # sizes that fit the 11 octal digits of the size field


def _header(name: bytes, size: int) -> bytes:
    """One member's 512-byte GNU header, as tarfile's TarInfo.tobuf(GNU_FORMAT) writes it for our fixed fields."""
    head = name.ljust(_NAME_MAX, b"\0") + _HEAD_MODE_IDS + b"%011o\0" % size + _HEAD_TAIL
    chksum = sum(head[:148]) + 256 + sum(head[156:])  # the checksum field counts as eight spaces (8 × 32)
    return head[:148] + b"%06o\0 " % chksum + head[156:]


_HEAD_MODE_IDS = b"0000644\0" + b"0000000\0" + b"0000000\0"  # mode, uid, gid
#: mtime 0, checksum placeholder, type regular file, no link name, GNU magic, empty owner names,
#: no device numbers (tarfile leaves them empty for regular files), no prefix, padded to 512 bytes
_HEAD_TAIL = (b"00000000000\0" + b" " * 8 + tarfile.REGTYPE + b"\0" * 100 + tarfile.GNU_MAGIC + b"\0" * 64
              + b"\0" * 16 + b"\0" * 155).ljust(512 - 100 - 24 - 12, b"\0")


def tar_bytes_with_tarfile(members: Iterable[tuple[str, bytes]]) -> bytes:
    """The same tar through the standard library's tarfile (names or sizes outside the fast path; tests)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class PackedSample:
    """A sample ready for a shard: its tar members in order and its manifest row (`shard` set on writing)."""

    key: str
    members: list[tuple[str, bytes]]
    row: dict[str, Any]


def pack(s: ShardSample) -> PackedSample:
    """Serialise a sample once: members and manifest row (with the sha256 of its record and JPEG)."""
    members = s.members()
    return PackedSample(key=s.key, members=members, row=manifest_row(s.sample, "", members))


def split_by_bytes(samples: list[PackedSample], max_bytes: int) -> list[list[PackedSample]]:
    """Consecutive groups whose estimated tar size stays under max_bytes (a lone huge sample gets its own)."""
    groups: list[list[PackedSample]] = [[]]
    size = 1024  # end-of-archive blocks
    for s in samples:
        est = sum(512 + ((len(d) + 511) // 512) * 512 for _, d in s.members)
        if groups[-1] and size + est > max_bytes:
            groups.append([])
            size = 1024
        groups[-1].append(s)
        size += est
    return groups


class WriteShardBucket(beam.DoFn):
    """(bucket, samples) → shard tar(s) + manifest parquet(s); outputs (shard name, n samples, bytes)."""

    def __init__(self, out_dir: str, max_shard_bytes: int, name_prefix: str = "shard") -> None:
        self.out_dir = out_dir
        self.max_shard_bytes = max_shard_bytes
        self.name_prefix = name_prefix  # a resumed run writes under its own names (shard-r1-…), never over finished shards

    def process(self, element: tuple[int, Iterable[ShardSample]]) -> Iterator[tuple[str, int, int]]:
        bucket, samples = element
        yield from self.write(bucket, [pack(s) for s in samples])

    def write(self, bucket: int, samples: list[PackedSample]) -> Iterator[tuple[str, int, int]]:
        """The bucket's shard(s) and manifest(s) from packed samples (any order: sorted by key here)."""
        ordered = sorted(samples, key=lambda s: s.key)
        groups = split_by_bytes(ordered, self.max_shard_bytes)
        tmp_dir = FileSystems.join(self.out_dir, SHARDS_DIR, TMP_DIR)
        for part, group in enumerate(groups):
            name = f"{self.name_prefix}-{bucket:05d}" + (f"-{part}" if part else "")
            data = tar_bytes_for(m for s in group for m in s.members)
            rows = [{**s.row, "shard": f"{name}.tar"} for s in group]
            write_atomically(FileSystems.join(self.out_dir, SHARDS_DIR, f"{name}.tar"), data, tmp_dir)
            write_atomically(FileSystems.join(self.out_dir, MANIFEST_DIR, f"{name}.parquet"), manifest_bytes(rows), tmp_dir)
            yield name, len(group), len(data)


@dataclass(frozen=True)
class Staged:
    """Where a staged sample waits: its key, its bundle's staging file, and its bytes there."""

    key: str
    path: str
    offset: int
    length: int


class StageSample(beam.DoFn):
    """Pack each sample and append it to this bundle's file under `shards/_tmp/staging/`; pass on only
    its `Staged` locator (see the module docstring for what retries and kills may rely on).

    Local runners hold a GroupByKey's whole input in memory; grouping locators instead of images keeps
    the run's memory flat however many samples it writes.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self._file: Any = None
        self._path = ""
        self._written = 0

    def start_bundle(self) -> None:
        self._file, self._path, self._written = None, "", 0

    def process(self, s: ShardSample) -> Iterator[Staged]:
        if self._file is None:
            self._path = FileSystems.join(self.out_dir, SHARDS_DIR, TMP_DIR, STAGING_DIR, f"stage-{uuid.uuid4().hex}.pkl")
            self._file = FileSystems.create(self._path)
        data = pickle.dumps(pack(s), protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(data)
        offset, self._written = self._written, self._written + len(data)
        yield Staged(key=s.key, path=self._path, offset=offset, length=len(data))

    def finish_bundle(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class WritePart(beam.DoFn):
    """(fine bucket, samples) → one part file under `shards/_tmp/staging/` holding the bucket's packed
    samples in hash order; outputs their `Staged` locators once the file is closed (the shuffle path of
    WriteShards). Hash order makes each shard bucket's samples one contiguous run of the part: its
    writer reads them in one request, not one (buffer-sized, 16 MB on GCS and S3) request per sample."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def process(self, element: tuple[int, Iterable[ShardSample]]) -> Iterator[Staged]:
        fine, samples = element
        path = FileSystems.join(self.out_dir, SHARDS_DIR, TMP_DIR, STAGING_DIR, f"part-{fine:05d}-{uuid.uuid4().hex}.pkl")
        locators: list[Staged] = []
        written = 0
        packed = sorted((pack(s) for s in samples), key=lambda s: (key_hash(s.key), s.key))
        with FileSystems.create(path) as f:
            for s in packed:
                data = pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)
                f.write(data)
                locators.append(Staged(key=s.key, path=path, offset=written, length=len(data)))
                written += len(data)
        yield from locators  # only after the close: a writer may read the part as soon as it sees a locator


def load_staged(locators: Iterable[Staged]) -> list[PackedSample]:
    """The packed samples behind locators, each staging file opened once and read in file order, one
    read per run of adjacent samples (an object store's reader fetches a whole buffer per seek)."""
    by_file: dict[str, list[Staged]] = {}
    for loc in locators:
        by_file.setdefault(loc.path, []).append(loc)
    out: list[PackedSample] = []
    for path, locs in by_file.items():
        locs.sort(key=lambda x: x.offset)
        runs: list[list[Staged]] = []
        for loc in locs:
            if runs and runs[-1][-1].offset + runs[-1][-1].length == loc.offset:
                runs[-1].append(loc)
            else:
                runs.append([loc])
        with FileSystems.open(path) as f:
            for run in runs:
                f.seek(run[0].offset)
                data = memoryview(f.read(run[-1].offset + run[-1].length - run[0].offset))
                start = run[0].offset
                out.extend(pickle.loads(data[loc.offset - start:loc.offset - start + loc.length]) for loc in run)
    return out


class WriteStagedBucket(WriteShardBucket):
    """(bucket, Staged locators) → the same shards as WriteShardBucket, reading each packed sample from staging."""

    def process(self, element: tuple[int, Iterable[Staged]]) -> Iterator[tuple[str, int, int]]:  # type: ignore[override]
        bucket, locators = element
        yield from self.write(bucket, load_staged(locators))


def remove_staging(out_dir: str) -> None:
    """Remove every staging file (the dedup stage's and the sink's) in one call, once the pipeline has
    succeeded: nothing reads them any more; then `shards/_tmp` when that leaves it empty. Folders that
    were never made are fine."""
    from ..storage import is_remote

    folders = [FileSystems.join(out_dir, SHARDS_DIR, TMP_DIR, sub) for sub in (STAGING_DIR, SCREEN_DIR)]
    if is_remote(out_dir):  # an object store has no folders to delete: its objects under the prefixes
        from ..storage import match_paths

        present = [p for f in folders for p in match_paths(f + "/**")]
    else:
        present = [f for f in folders if FileSystems.exists(f)]
    if present:
        FileSystems.delete(present)
    if not is_remote(out_dir):  # and shards/_tmp itself once empty (a finished output keeps no empty folder)
        import os

        try:
            os.rmdir(FileSystems.join(out_dir, SHARDS_DIR, TMP_DIR))
        except OSError:  # never made, or still holds something (then the output check names it)
            pass


class WriteShards(beam.PTransform):
    """PCollection[ShardSample] → shards/ + manifest/; returns PCollection[(shard name, n, bytes)].

    `staging=True` stages each bundle's samples in a file where they are (no shuffle of samples): flat
    memory on local runners. `staging=False` groups whole samples by fine bucket through the runner's
    shuffle (Dataflow's shuffle spills to disk) and writes each fine bucket as one part file. Either
    way only locators meet the count side input and the last grouping; both write byte-identical shards.
    """

    def __init__(
        self, out_dir: str, samples_per_shard: int, max_shard_bytes: int, staging: bool = True, name_prefix: str = "shard"
    ) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.samples_per_shard = samples_per_shard
        self.max_shard_bytes = max_shard_bytes
        self.staging = staging
        self.name_prefix = name_prefix

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        if self.staging:
            located = samples | "Stage" >> beam.ParDo(StageSample(self.out_dir))
        else:
            located = (samples
                       | "FineBucket" >> beam.Map(lambda s: (bucket_of(s.key, FINE_BUCKETS), s))
                       | "GroupFine" >> beam.GroupByKey()
                       | "WriteParts" >> beam.ParDo(WritePart(self.out_dir)))
        count = located | "Count" >> beam.combiners.Count.Globally()
        per_shard = self.samples_per_shard
        keyed = located | "Bucket" >> beam.Map(
            lambda s, n: (bucket_of(s.key, n_buckets_for(n, per_shard)), s), n=beam.pvalue.AsSingleton(count)
        )
        writer = WriteStagedBucket(self.out_dir, self.max_shard_bytes, self.name_prefix)
        return keyed | "GroupBuckets" >> beam.GroupByKey() | "WriteBuckets" >> beam.ParDo(writer)


def reject_line(reject: Any) -> str:
    return json.dumps(reject.model_dump(mode="json"), ensure_ascii=False, sort_keys=True)
