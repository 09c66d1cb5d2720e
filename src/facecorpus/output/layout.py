"""The output folder's names — the layout contract of docs/architecture.md — and where each kind of
file is found. Every writer (the sinks, the dedup stage, resume) and every reader (validate, stats,
review, export, the loader) takes its names from here, so a name lives in one place.

This module imports no area of facecorpus (only storage.py, a layer, and that inside the functions, so
that the loader reads the names without loading Beam): like `config.py`, it is a layer that every area
may read (tests/test_layers.py checks both).

```
DIR/shards/*.tar          samples (written aside in shards/_tmp/, then renamed)
DIR/shards/_tmp/          partial files: staging/ (the sink's), screen/ (the dedup stage's), shards being written
DIR/manifest/*.parquet    one manifest per shard, same name
DIR/rejects/*.jsonl       reject lines
DIR/dedup_hashes/*.jsonl  (key, sha256, pHash) of every image dedup saw, for a resumed run's dedup
DIR/run.json, stats.json, index.json, README.md, plots/*.png
```
"""

from __future__ import annotations

SHARDS_DIR = "shards"
MANIFEST_DIR = "manifest"
#: under shards/: partial files; `--resume` clears it
TMP_DIR = "_tmp"
#: under shards/_tmp/: the sink's staged samples (sinks/shards.py)
STAGING_DIR = "staging"
#: under shards/_tmp/: the dedup stage's parked items (validation/dedup_stage.py)
SCREEN_DIR = "screen"
REJECTS_DIR = "rejects"
#: (key, sha256, pHash) of every image dedup saw, one file per bundle (validation/dedup_stage.py)
HASHES_DIR = "dedup_hashes"
STATS_FILE = "stats.json"
INDEX_FILE = "index.json"
RUN_FILE = "run.json"
CARD_FILE = "README.md"
#: the card's figures (sinks/plots.py draws them)
PLOTS_DIR = "plots"


def join(out: str, *parts: str) -> str:
    """A path under the output folder `out` (local, gs://, s3://)."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(out, *parts)


def _files(out: str, *pattern: str) -> list[str]:
    from ..storage import match_paths

    return match_paths(join(out, *pattern))


def shard_files(out: str) -> list[str]:
    return _files(out, SHARDS_DIR, "*.tar")


def manifest_files(out: str) -> list[str]:
    return _files(out, MANIFEST_DIR, "*.parquet")


def reject_files(out: str) -> list[str]:
    return _files(out, REJECTS_DIR, "*.jsonl")


def hash_files(out: str) -> list[str]:
    return _files(out, HASHES_DIR, "*.jsonl")


def tmp_dir(out: str) -> str:
    """shards/_tmp/ of `out`: where partial files lie."""
    return join(out, SHARDS_DIR, TMP_DIR)


def half_written_files(out: str) -> list[str]:
    """Files `write_atomically` left beside their target when killed (stats.json.tmp-…, rejects, hashes)."""
    return [p for folder in ("", REJECTS_DIR, HASHES_DIR) for p in _files(out, *([folder] if folder else []), "*.tmp-*")]


def name_of(path: str) -> str:
    """The last part of a path or URL (a shard's or manifest's file name)."""
    return path.rstrip("/").rsplit("/", 1)[-1]
