"""Beam FileSystems set up for object stores before the first file access, and the file operations
every writer and reader shares, with one behaviour on local disk, gs:// and s3://: folder checks,
listing (`match_paths`), streamed reading (`iter_lines`) and atomic writes (`write_atomically`).

Beam's `s3://` and `gs://` filesystems are built from pipeline options; without any they refuse to
start ("Must provide one of client or options"). Every command that touches an output — `run`,
`validate`, `stats`, `export`, `review` — and the loader's readers call `use_storage()` first. Its
default options are empty, so the clients fall back to the standard environment: for S3 boto3's
chain (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`, `~/.aws`, instance roles); for GCS Google's application
default credentials. `facecorpus run … -- --s3_endpoint_url=…` passes explicit Beam options instead.

An object store has no folders: a prefix never "exists" (`FileSystems.exists` is False for it), so
`folder_exists` asks whether any object lies under it.
"""

from __future__ import annotations

import io
import os
import threading
import uuid
from collections.abc import Iterable, Iterator

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

_configured = False


def use_storage(options: PipelineOptions | None = None) -> None:
    """Give Beam's FileSystems their options: `options` when given (a run's effective ones, which win),
    else empty ones (the standard environment decides) unless a run set them already."""
    global _configured
    if options is not None:
        FileSystems.set_options(options)
        _configured = True
    elif not _configured:
        FileSystems.set_options(PipelineOptions([]))
        _configured = True


#: the install that brings a scheme's Beam filesystem
EXTRAS = {"gs": "facecorpus[gcp]", "s3": "facecorpus[aws]"}


def require_filesystem(path: str) -> str:
    """`path`, after checking that Beam has a filesystem for its scheme here; else one UserError naming
    the extra to install (Beam's own message is a traceback)."""
    from .errors import UserError

    scheme = FileSystems.get_scheme(path)
    if scheme is None or scheme == "file":
        return path
    use_storage()
    try:
        FileSystems.get_filesystem(path)
    except ValueError:
        extra = EXTRAS.get(scheme)
        hint = f"pip install '{extra}'" if extra else "install the Beam filesystem for it"
        raise UserError(f"{path}: Beam has no filesystem for {scheme}:// in this installation; {hint}") from None
    return path


def is_remote(path: str) -> bool:
    """True for URLs of a filesystem other than the local disk (gs://, s3://, …)."""
    scheme = FileSystems.get_scheme(path)
    return scheme is not None and scheme != "file"


def folder_exists(path: str) -> bool:
    """A local folder, or a prefix holding at least one object (local disk, gs://, s3://)."""
    if not is_remote(path):
        return os.path.isdir(path.removeprefix("file://"))
    require_filesystem(path)
    try:
        found = FileSystems.match([path.rstrip("/") + "/**"], limits=[1])[0].metadata_list
    except Exception:  # noqa: BLE001 - Beam raises when nothing matches
        return False
    return bool(found)


def match_paths(pattern: str) -> list[str]:
    """Sorted paths a FileSystems glob matches (local, gs://, s3://); a missing folder matches nothing."""
    return [path for path, _ in match_sizes(pattern)]


def match_sizes(pattern: str) -> list[tuple[str, int]]:
    """(path, size in bytes) of every file a FileSystems glob matches, sorted; nothing for a missing folder."""
    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001 - Beam raises when a folder is missing: it matches nothing
        return []
    return sorted((m.path, m.size_in_bytes) for m in found)


def read_text(path: str) -> str:
    """A whole (small) UTF-8 file: run.json, stats.json, index.json."""
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")


def iter_lines(path: str) -> Iterator[str]:
    """The lines of a UTF-8 text file, streamed (memory: one line and the reader's buffer)."""
    with FileSystems.open(path) as raw:
        yield from io.TextIOWrapper(raw, encoding="utf-8", newline=None)


def write_atomically(path: str, data: bytes | Iterable[bytes], aside_dir: str | None = None) -> None:
    """Write `data` (bytes, or chunks streamed one at a time) under a unique temporary name, then rename
    it over `path`: a reader (or a run killed mid-write) sees the old file or the new one, never half.
    The temporary file lies beside the target (`NAME.tmp-XXXXXXXX`), or in `aside_dir` when given
    (shards: `shards/_tmp/`)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    tag = uuid.uuid4().hex
    tmp = FileSystems.join(aside_dir, f"{name}.{tag}") if aside_dir else f"{path}.tmp-{tag[:8]}"
    with FileSystems.create(tmp) as f:
        for chunk in [data] if isinstance(data, bytes | bytearray) else data:
            f.write(chunk)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def write_text(path: str, text: str) -> None:
    """`write_atomically` for UTF-8 text (stats.json, index.json, the card, hold-out lists)."""
    write_atomically(path, text.encode("utf-8"))


class _SharedS3Clients:
    """Stands in for the `boto3` module inside Beam's S3 client wrapper: same sessions, but one
    low-level client per distinct configuration and process, instead of one per file operation.

    Beam builds a new boto3 session and client for every `exists`, `open`, `rename`, `match`… on
    s3:// (apache_beam/io/aws/clients/s3/boto3_client.py); building a client costs tens of
    milliseconds of CPU (seconds on a loaded machine), which made a 20-image run crawl at 0.5
    images/s. boto3's low-level clients are thread-safe, so sharing them is allowed; Beam's wrapper
    keeps its per-file read state in its own object, which stays per operation.
    """

    def __init__(self, boto3_module: object) -> None:
        self._boto3 = boto3_module
        self._clients: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self.session = self  # Beam calls boto3.session.Session()

    def Session(self) -> _SharedS3Clients:  # noqa: N802 - the name Beam calls
        return self

    def client(self, **kwargs: object) -> object:
        key = tuple(sorted((k, str(v)) for k, v in kwargs.items()))
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._boto3.session.Session().client(**kwargs)  # type: ignore[attr-defined]
            return client


def share_s3_clients() -> None:
    """Make Beam's S3 filesystem reuse boto3 clients in this process (a no-op without boto3)."""
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:
        return
    if boto3_client.boto3 is not None and not isinstance(boto3_client.boto3, _SharedS3Clients):
        boto3_client.boto3 = _SharedS3Clients(boto3_client.boto3)


share_s3_clients()
