"""The launcher and the worker image must run the same Python and Beam: checked before a job starts.

The images (docker/Dockerfile.*) carry labels `org.facecorpus.python`, `org.facecorpus.apache_beam` and
`org.facecorpus.version`. When a run names an image (`--sdk_container_image=…`), the launcher reads
the image's config from its registry with the OCI distribution API (`/v2/<name>/manifests/<tag>`,
then the config blob; a registry's Bearer challenge is answered anonymously, or for Google's
registries with the application default credentials) and refuses, in one line, a Python minor
version or Beam version that differs from its own: pickled DoFns and Beam's wire formats do not
survive such a mismatch, and the job would otherwise fail on the workers minutes later with an
unpickling error. FACECORPUS_SKIP_IMAGE_CHECK=1 skips the check (e.g. a registry the launcher cannot
read); it says so in the log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .errors import UserError

log = logging.getLogger("facecorpus")
LABEL_PREFIX = "org.facecorpus."
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
))
_LOCAL = ("localhost", "127.0.0.1")


def parse_reference(ref: str) -> tuple[str, str, str]:
    """(registry, repository, tag or digest) of an image reference; Docker Hub when no registry is named."""
    name, digest = (ref.split("@", 1) + [""])[:2]
    tag = ""
    if not digest:
        head, _, last = name.rpartition("/")
        if ":" in last:
            last, tag = last.split(":", 1)
        name = f"{head}/{last}" if head else last
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first in _LOCAL):
        registry, repo = name.split("/", 1)
    else:
        registry, repo = "registry-1.docker.io", name if "/" in name else f"library/{name}"
    return registry, repo, digest or tag or "latest"


def _google_token() -> str | None:
    try:
        import google.auth
        import google.auth.transport.requests
    except ImportError:
        return None
    try:
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        creds.refresh(google.auth.transport.requests.Request())
        return creds.token
    except Exception:  # noqa: BLE001 - no credentials here: the registry may still allow anonymous pulls
        return None


class _Registry:
    def __init__(self, registry: str, repo: str) -> None:
        scheme = "http" if registry.split(":", 1)[0] in _LOCAL else "https"
        self.base = f"{scheme}://{registry}/v2/{repo}"
        self.registry, self.repo = registry, repo
        self.token: str | None = None

    def get(self, path: str, accept: str) -> bytes:
        for attempt in (0, 1):
            req = urllib.request.Request(f"{self.base}/{path}", headers={"Accept": accept})
            if self.token:
                req.add_header("Authorization", f"Bearer {self.token}")
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the image's own registry
                    return resp.read()
            except urllib.error.HTTPError as e:
                if e.code == 401 and attempt == 0:
                    self.token = self._answer(e.headers.get("WWW-Authenticate", ""))
                    continue
                raise
        raise AssertionError("unreachable")

    def _answer(self, challenge: str) -> str:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if not challenge.lower().startswith("bearer") or "realm" not in fields:
            raise UserError(f"{self.registry} asks for authentication the launcher cannot give ({challenge[:80]})")
        query = {k: v for k, v in fields.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{self.repo}:pull")
        req = urllib.request.Request(f"{fields['realm']}?{urllib.parse.urlencode(query)}")
        google = _google_token() if self.registry.endswith(("gcr.io", "pkg.dev")) else None
        if google:
            import base64

            req.add_header("Authorization", "Basic " + base64.b64encode(f"oauth2accesstoken:{google}".encode()).decode())
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the registry's token service
            body = json.loads(resp.read())
        return body.get("token") or body.get("access_token") or ""


def image_labels(ref: str) -> dict[str, str]:
    """The labels of image `ref` (linux/amd64 when it is multi-platform), read from its registry."""
    registry, repo, tag = parse_reference(ref)
    reg = _Registry(registry, repo)
    manifest = json.loads(reg.get(f"manifests/{tag}", MANIFEST_TYPES))
    if "manifests" in manifest:  # an index: the linux/amd64 image, which Dataflow workers run
        chosen = next((m for m in manifest["manifests"] if m.get("platform", {}).get("os") == "linux"
                       and m.get("platform", {}).get("architecture") == "amd64"), manifest["manifests"][0])
        manifest = json.loads(reg.get(f"manifests/{chosen['digest']}", MANIFEST_TYPES))
    config = json.loads(reg.get(f"blobs/{manifest['config']['digest']}", "application/json, */*"))
    return dict((config.get("config") or {}).get("Labels") or {})


def check_worker_image(image: str | None, launcher: dict[str, str], read: Any = image_labels) -> None:
    """UserError (one line) when `image`'s labels name another Python or Beam than `launcher` (runtime_check.versions())."""
    if not image:
        return
    if os.environ.get("FACECORPUS_SKIP_IMAGE_CHECK") == "1":
        log.warning("FACECORPUS_SKIP_IMAGE_CHECK=1: %s is not checked against this launcher's Python and Beam", image)
        return
    try:
        labels = read(image)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - network, auth, not found: one line with the way out
        raise UserError(f"cannot read the labels of worker image {image} ({type(e).__name__}: {str(e)[:160]}); "
                        f"make it readable, or set FACECORPUS_SKIP_IMAGE_CHECK=1 to run unchecked") from None
    wanted = {k: launcher[k] for k in ("python", "apache_beam")}
    found = {k: labels.get(LABEL_PREFIX + k) for k in wanted}
    if None in found.values():
        raise UserError(f"worker image {image} has no {LABEL_PREFIX}python / {LABEL_PREFIX}apache_beam labels: build it "
                        f"from docker/Dockerfile.* (or set FACECORPUS_SKIP_IMAGE_CHECK=1 to run unchecked)")
    differ = [f"{k} {found[k]} in the image, {wanted[k]} here" for k in wanted if found[k] != wanted[k]]
    if differ:
        raise UserError(f"worker image {image} does not match this launcher: {'; '.join(differ)} — rebuild the image "
                        f"or run from a matching environment")
