"""The LAION-Face id list, held once per worker machine rather than once per SDK process.

A 50M-id list is ≈ 400 MB as a sorted int64 array. Dataflow starts one SDK process per vCPU on a
worker, and each process runs several DoFn instances (threads), so a per-instance or per-process copy
multiplies that by the core count. Here:

- within a process, every DoFn instance gets the same object through Beam's `shared.Shared` (tag:
  the list's path, parts, size and modification time);
- across the processes of one machine, the first one to need the list writes it, sorted and unique, as
  a plain `.npy` under the worker's temp folder (`FACECORPUS_ID_CACHE` overrides it) and every
  process — that one included — maps the file read-only (`np.load(mmap_mode="r")`): the pages are the
  OS page cache's, one copy per machine. The file is written aside and renamed, so a process never maps a
  half-written list; two processes that race both write the same bytes and one rename wins.

Lists holding non-integer ids (rare text lists) stay in process memory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils.shared import Shared

from .laion_face_meta import IdList, read_id_list

CACHE_ENV = "FACECORPUS_ID_CACHE"


class SharedIdList:
    """Holder that `apache_beam.utils.shared.Shared` keeps alive across the DoFn instances of a process
    (Shared needs a weak-referenceable object; an IdList holds numpy arrays)."""

    def __init__(self, ids: IdList) -> None:
        self.ids = ids


def _identity(path: str, parts: tuple[int, ...] | None) -> str:
    """A name for this list's content: path, parts, size and modification time (a replaced list gets a new one)."""
    meta = FileSystems.match([path])[0].metadata_list
    size, mtime = (meta[0].size_in_bytes, meta[0].last_updated_in_seconds) if meta else (0, 0)
    return hashlib.sha256(f"{path}|{parts}|{size}|{mtime}".encode()).hexdigest()[:24]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "facecorpus-ids")


def load_mapped(path: str, parts: tuple[int, ...] | None) -> IdList:
    """The id list as a read-only memory map of this machine's copy (written first when missing)."""
    mapped = cache_dir() / f"ids-{_identity(path, parts)}.npy"
    if not mapped.is_file():
        ids = read_id_list(path, parts)
        if ids.others:
            return ids
        mapped.parent.mkdir(parents=True, exist_ok=True)
        tmp = mapped.with_name(f".{mapped.name}.{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(ids.ints), allow_pickle=False)
        tmp.replace(mapped)
    return IdList.presorted(np.load(mapped, mmap_mode="r", allow_pickle=False))


def shared_id_list(shared: Shared, path: str, parts: list[int] | None) -> SharedIdList:
    """One IdList per process (through `shared`: the caller keeps the holder, Shared only holds it
    weakly), backed by one copy per machine (`load_mapped`)."""
    key = tuple(parts) if parts is not None else None
    return shared.acquire(lambda: SharedIdList(load_mapped(path, key)), tag=f"ids|{_identity(path, key)}")
