"""Beam FileSystems set up for object stores before the first file access, and folder checks that
work there.

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

import os
import threading

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
