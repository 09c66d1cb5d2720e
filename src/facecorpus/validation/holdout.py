"""Hold-out lists: images (benchmark test sets such as FaceXBench's FairFace pictures) that must never be
trained on. `facecorpus holdout build SOURCE --out FILE` hashes a folder or WebDataset into a list;
recipes name lists under `validation.holdout.lists`, and matching images are rejected `holdout`.

A list is UTF-8 text, one image per line: a JSON object `{"sha256": …, "phash": …, "id": …}` (either
hash may be null), or a bare 64-hex sha256, or a bare 16-hex pHash. Blank lines and lines starting
with `#` are ignored.

pHashes are only comparable under one definition (`image_check.PHASH_VERSION`). A list written by
`facecorpus holdout build` names its version in its first line; a list written under another version
that holds pHashes is refused with the command that rebuilds it (its sha256 entries would still match,
its pHashes would silently not). Lists without that header line are taken as they are: their pHashes
must be facecorpus pHash v{version} values.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ..errors import UserError
from ..image_check import PHASH_VERSION, decode_image
from ..image_config import ImageConfig
from ..rejection import Rejected
from ..sources.config import FolderSource, WebDatasetSource
from ..stage import WorkItem

#: (sha256 or None, phash or None, id)
HoldoutEntry = tuple[str | None, str | None, str]

_SHA = re.compile(r"^[0-9a-f]{64}$")
_PHASH = re.compile(r"^[0-9a-f]{16}$")
HEADER = f"# facecorpus hold-out list v1: sha256 of the file bytes, 64-bit DCT pHash v{PHASH_VERSION} (hex), id"
_HEADER_LINE = re.compile(r"^# facecorpus hold-out list v1: .*?DCT pHash(?: v(\d+))? \(hex\)")


def parse_holdout_line(line: str, where: str) -> HoldoutEntry | None:
    """One line of a hold-out list → entry, None for blank/comment lines; ValueError naming `where` if malformed."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not JSON ({e.msg})") from None
        sha = (obj.get("sha256") or None) if isinstance(obj, dict) else None
        phash = (obj.get("phash") or None) if isinstance(obj, dict) else None
        if not isinstance(obj, dict) or (sha is None and phash is None):
            raise ValueError(f"{where}: a JSON entry needs 'sha256' or 'phash'")
        sha = str(sha).lower() if sha is not None else None
        phash = str(phash).lower() if phash is not None else None
        if sha is not None and not _SHA.match(sha):
            raise ValueError(f"{where}: sha256 {sha!r} is not 64 hex digits")
        if phash is not None and not _PHASH.match(phash):
            raise ValueError(f"{where}: phash {phash!r} is not 16 hex digits")
        return sha, phash, str(obj.get("id") or where)
    low = text.lower()
    if _SHA.match(low):
        return low, None, where
    if _PHASH.match(low):
        return None, low, where
    raise ValueError(f"{where}: expected a JSON object, a 64-hex sha256 or a 16-hex pHash, got {text[:40]!r}")


def read_holdout_list(path: str) -> list[HoldoutEntry]:
    """Every entry of one list; UserError (one line) when the file is missing or a line is malformed."""
    if not FileSystems.exists(path):
        raise UserError(f"hold-out list not found: {path} (make one with `facecorpus holdout build`)")
    with FileSystems.open(path) as f:
        text = f.read().decode("utf-8", errors="replace")
    entries = []
    lines = text.splitlines()
    for n, line in enumerate(lines, start=1):
        try:
            entry = parse_holdout_line(line, f"{path} line {n}")
        except ValueError as e:
            raise UserError(f"hold-out list {e}") from None
        if entry is not None:
            entries.append(entry)
    version = phash_version_of(lines[0] if lines else "")
    if version is not None and version != PHASH_VERSION and any(p is not None for _, p, _ in entries):
        raise UserError(f"hold-out list {path} holds pHashes of version {version}, this facecorpus computes version "
                        f"{PHASH_VERSION}; rebuild it: facecorpus holdout build SOURCE --out {path}")
    return entries


def phash_version_of(first_line: str) -> int | None:
    """The pHash version a `facecorpus holdout build` header names (lists before versions: 1), None
    when the line is not such a header."""
    m = _HEADER_LINE.match(first_line.strip())
    if m is None:
        return None
    return int(m.group(1)) if m.group(1) else 1


def _parse_lines(line: str) -> Iterator[HoldoutEntry]:
    entry = parse_holdout_line(line, "hold-out list")  # already checked on the launcher (check_holdout_lists)
    if entry is not None:
        yield entry


class ReadHoldout(beam.PTransform):
    """Hold-out list files → PCollection[(sha256 | None, phash | None, id)], read in parallel by line ranges."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self.paths = paths

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ListFiles" >> beam.Create(self.paths)
            | "ReadLines" >> beam.io.ReadAllFromText()
            | "Parse" >> beam.FlatMap(_parse_lines)
        )


def check_holdout_lists(paths: list[str]) -> int:
    """Pre-flight: every list exists and parses; returns the number of entries (UserError otherwise)."""
    total = 0
    for path in paths:
        n = len(read_holdout_list(path))
        if n == 0:
            raise UserError(f"hold-out list {path} has no entries")
        total += n
    return total


# --------------------------------------------------------------------------------------------- building


def holdout_entry(item: WorkItem) -> dict[str, Any]:
    """The list entry for one input: sha256 of its bytes and the pHash the image stage would compute.

    An input the image stage would reject still gets its sha256 (an undecodable copy is still that file).
    """
    data = item.data or b""
    try:
        info = decode_image(data, ImageConfig()).info
        return {"sha256": info.sha256, "phash": info.phash, "id": item.source.id}
    except Rejected:
        return {"sha256": hashlib.sha256(data).hexdigest(), "phash": None, "id": item.source.id}


def source_for(path: str, kind: str) -> FolderSource | WebDatasetSource:
    """The source config that reads `path`: a WebDataset when it is (or holds) .tar shards, else a folder."""
    from ..sources.files import list_files

    if kind == "auto":
        kind = "webdataset" if path.endswith(".tar") or list_files(path, [".tar"]) else "folder"
    if kind == "webdataset":
        return WebDatasetSource(type="webdataset", path=path, dataset="holdout")
    return FolderSource(type="folder", path=path, dataset="holdout")


def build_holdout_list(source: str, out: str, kind: str = "auto", beam_args: list[str] | None = None) -> tuple[int, list[str]]:
    """Hash every image under `source` (folder or WebDataset) into the hold-out list `out`.

    Returns (entries written, one line per input the source could not read). Hashing runs on Beam
    with the same readers and image decoder as a run, so the hashes match; the sorted list is written
    on the launcher, atomically.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    from ..sources.folder import ReadFolder
    from ..sources.webdataset import ReadWebDataset
    from ..storage import write_text

    if not FileSystems.exists(source):
        raise UserError(f"hold-out source not found: {source}")
    cfg = source_for(source, kind)
    reader = ReadWebDataset(cfg) if isinstance(cfg, WebDatasetSource) else ReadFolder(cfg)
    tmp = f"{out}.parts-{uuid.uuid4().hex[:8]}"
    with beam.Pipeline(options=PipelineOptions(beam_args or ["--runner=FnApiRunner"])) as p:
        read = p | "Read" >> reader
        _ = (
            read["main"]
            | "Hash" >> beam.Map(lambda item: json.dumps(holdout_entry(item), sort_keys=True))
            | "Write" >> beam.io.WriteToText(f"{tmp}-entries", file_name_suffix=".jsonl")
        )
        _ = (
            read["rejects"]
            | "Describe" >> beam.Map(lambda r: f"{r.source_id}: {r.detail}")
            | "WriteUnread" >> beam.io.WriteToText(f"{tmp}-unread", file_name_suffix=".txt")
        )

    def lines_of(pattern: str) -> list[str]:
        parts = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
        found: list[str] = []
        for part in parts:
            with FileSystems.open(part) as f:
                found.extend(x for x in f.read().decode("utf-8").splitlines() if x.strip())
        if parts:
            FileSystems.delete(parts)
        return found

    entries = sorted(lines_of(f"{tmp}-entries*.jsonl"), key=lambda x: json.loads(x)["id"])
    unread = sorted(lines_of(f"{tmp}-unread*.txt"))
    if not entries:
        raise UserError(f"no image could be read from {source}")
    write_text(out, "\n".join([f"{HEADER} · {len(entries)} images from {source}", *entries]) + "\n")
    return len(entries), unread
