"""The launcher refuses a worker image whose Python or Beam differs from its own, reading the image's
labels from a registry over the OCI distribution API — here a loopback registry speaking that API
(manifest index → image manifest → config blob, behind a Bearer token challenge), since no real
registry can be reached from the test machine."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from facecorpus.errors import UserError
from facecorpus.runtime_check import versions
from facecorpus.worker_image import check_worker_image, image_labels, parse_reference


class _Registry(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.blobs: dict[str, bytes] = {}
        self.tags: dict[str, bytes] = {}
        self.seen_tokens: list[str] = []

    def add_image(self, repo: str, tag: str, labels: dict[str, str]) -> None:
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels}}).encode()
        cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
        self.blobs[f"{repo}/{cdigest}"] = config
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"digest": cdigest, "size": len(config)}, "layers": []}).encode()
        mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.tags[f"{repo}/{mdigest}"] = manifest
        index = json.dumps({"schemaVersion": 2, "manifests": [
            {"digest": "sha256:" + "0" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": mdigest, "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
        self.tags[f"{repo}/{tag}"] = index


class _Handler(BaseHTTPRequestHandler):
    server: _Registry  # type: ignore[assignment]

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        host = f"127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/token"):
            return self._send(200, json.dumps({"token": "pull-token"}).encode())
        if self.headers.get("Authorization") != "Bearer pull-token":
            return self._send(401, b"{}", {"WWW-Authenticate": f'Bearer realm="http://{host}/token",service="{host}"'})
        self.server.seen_tokens.append(self.headers["Authorization"])
        _, v2, rest = self.path.split("/", 2)
        repo, kind, ref = rest.rsplit("/", 2)
        store = self.server.tags if kind == "manifests" else self.server.blobs
        body = store.get(f"{repo}/{ref}")
        return self._send(200, body) if body is not None else self._send(404, b'{"errors": []}')


@pytest.fixture()
def registry():
    srv = _Registry()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_references_are_parsed_like_docker_does():
    assert parse_reference("europe-docker.pkg.dev/p/r/facecorpus-gpu:0.1") == ("europe-docker.pkg.dev", "p/r/facecorpus-gpu", "0.1")
    assert parse_reference("apache/beam_python3.11_sdk:2.77.0") == ("registry-1.docker.io", "apache/beam_python3.11_sdk", "2.77.0")
    assert parse_reference("ubuntu") == ("registry-1.docker.io", "library/ubuntu", "latest")
    assert parse_reference("localhost:5000/x@sha256:ab") == ("localhost:5000", "x", "sha256:ab")


def test_matching_image_passes_and_a_mismatch_is_one_line(registry):
    srv, host = registry
    here = versions()
    srv.add_image("team/facecorpus", "good", {"org.facecorpus.python": here["python"],
                                              "org.facecorpus.apache_beam": here["apache_beam"]})
    srv.add_image("team/facecorpus", "old", {"org.facecorpus.python": "3.10", "org.facecorpus.apache_beam": "2.60.0"})
    srv.add_image("team/facecorpus", "plain", {"maintainer": "someone"})
    assert image_labels(f"{host}/team/facecorpus:good")["org.facecorpus.apache_beam"] == here["apache_beam"]
    assert srv.seen_tokens  # the Bearer challenge was answered
    check_worker_image(f"{host}/team/facecorpus:good", here)
    with pytest.raises(UserError, match=r"python 3\.10 in the image, 3\.\d+ here; apache_beam 2\.60\.0 in the image") as e:
        check_worker_image(f"{host}/team/facecorpus:old", here)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="has no org.facecorpus.python"):
        check_worker_image(f"{host}/team/facecorpus:plain", here)
    with pytest.raises(UserError, match="cannot read the labels of worker image .*FACECORPUS_SKIP_IMAGE_CHECK"):
        check_worker_image(f"{host}/team/missing:1", here)


def test_skip_switch(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FACECORPUS_SKIP_IMAGE_CHECK", "1")
    check_worker_image("127.0.0.1:9/nothing:1", versions(), read=lambda ref: pytest.fail("must not be read"))
