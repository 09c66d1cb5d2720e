"""Reading files through Beam FileSystems (local paths, gs://, s3://) for the sources."""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def list_files(root: str, extensions: list[str] | None = None) -> list[str]:
    """All files under `root` (recursively), or the files a glob matches, sorted; filtered by extension."""
    pattern = root if any(c in root for c in "*?[") else root.rstrip("/") + "/**"
    matched = FileSystems.match([pattern])[0].metadata_list
    exts = tuple(e.lower() for e in extensions) if extensions else None
    paths = [m.path for m in matched if exts is None or m.path.lower().endswith(exts)]
    return sorted(paths)


def exists(path: str) -> bool:
    return FileSystems.exists(path)
