"""Where the LLM API key comes from — on the launcher and on every worker, never from pipeline options.

    generation.openai.api_key_file    a file holding the key: a secret mounted into the worker (Kubernetes,
                                      Docker), or a gs:// / s3:// object readable by the workers' account
    generation.openai.api_key_secret  a Google Secret Manager version, `projects/P/secrets/S[/versions/V]`
                                      (default `latest`), read with the workers' application default
                                      credentials (Dataflow: the worker service account)
    generation.openai.api_key_env     the NAME of an environment variable (local runs; Dataflow gives no
                                      way to set one on its workers)

The first one set wins. A recipe, run.json and the Beam pipeline options carry only these names; the
key itself is read where it is used, held in memory, and never logged, cached or written (errors name
the source, not the key).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import UserError

#: what a recipe may name, in the order they are tried
KEY_SOURCES = ("api_key_file", "api_key_secret", "api_key_env")


def key_source(o: Any) -> tuple[str, str] | None:
    """(recipe key, its value) of the configured key source, or None for endpoints without a key."""
    for name in KEY_SOURCES:
        value = getattr(o, name, None)
        if value:
            return name, value
    return None


def _read_file(path: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    from ..storage import use_storage

    use_storage()
    try:
        with FileSystems.open(path) as f:
            return f.read().decode("utf-8").strip()
    except Exception as e:  # noqa: BLE001 - missing file, no permission, no filesystem: one line
        raise UserError(f"generation.openai.api_key_file {path} cannot be read here ({type(e).__name__})") from None


def _secret_manager(name: str, client: Any = None) -> str:
    version = name if "/versions/" in name else f"{name.rstrip('/')}/versions/latest"
    if client is None:
        try:
            from google.cloud import secretmanager
        except ImportError:
            raise UserError("generation.openai.api_key_secret needs google-cloud-secret-manager: "
                            "pip install 'facecorpus[gcp]'") from None
        client = secretmanager.SecretManagerServiceClient()
    try:
        response = client.access_secret_version(request={"name": version})
    except Exception as e:  # noqa: BLE001 - permission, not found, no credentials: one line, no key in it
        raise UserError(f"generation.openai.api_key_secret {version} cannot be read ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'})") from None
    return response.payload.data.decode("utf-8").strip()


def api_key(o: Any, where: str = "here", secret_client: Any = None) -> str | None:
    """The API key for OpenAI config `o`, or None when no source is configured. UserError (one line)
    when the configured source gives nothing; `where` says whose view it is ('on this worker')."""
    source = key_source(o)
    if source is None:
        return None
    name, value = source
    if name == "api_key_file":
        key = _read_file(value)
    elif name == "api_key_secret":
        key = _secret_manager(value, secret_client)
    else:
        key = os.environ.get(value, "")
        if not key:
            raise UserError(f"environment variable {value} is not set {where}: export your API key there "
                            "(generation.openai.api_key_env names the variable; null for endpoints without keys)")
    if not key:
        raise UserError(f"generation.openai.{name} {value} holds an empty key")
    return key


def check_reachable_by_workers(o: Any, workers_local: bool, runner: str) -> None:
    """Remote workers cannot see the launcher's environment or its local files: refuse those sources."""
    source = key_source(o)
    if source is None or workers_local:
        return
    name, value = source
    if name == "api_key_env":
        raise UserError(f"generation.openai.api_key_env: {runner} workers do not get this machine's environment; "
                        "set generation.openai.api_key_secret (Secret Manager) or api_key_file (gs://, s3:// or "
                        "a file mounted on the workers)")
