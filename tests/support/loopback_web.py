"""A loopback web server with the failure modes of real LAION links, for the download and LAION tests.

`WebServer` serves real face photos (insightface's t1.jpg, scikit-image's astronaut, the Tom Hanks
crop) plus 404s, a slow endpoint, redirect chains, a redirect to a "blocked" address, HTML served as
image/jpeg, X-Robots-Tag opt-outs, a robots.txt a test can set, a huge Content-Length, and a "flaky" endpoint that fails until
`recover()` is called. Every request is recorded server-side so tests can assert what was (and was
not) fetched. A second server bound to 127.0.0.2 stands in for a private address: tests allow only
127.0.0.1/32, so nothing may ever reach it.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import insightface
import numpy as np
import skimage
from PIL import Image

INSIGHTFACE_IMAGES = Path(insightface.__file__).parent / "data" / "images"
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"


def photo_bytes() -> dict[str, tuple[bytes, str]]:
    """name → (bytes, content type) of the real photos the server hands out."""
    jpeg_rotated = io.BytesIO()
    t1 = Image.open(INSIGHTFACE_IMAGES / "t1.jpg")
    # the same group photo stored sideways with EXIF orientation 6, as phone cameras write it
    exif = Image.Exif()
    exif[0x0112] = 6
    t1.transpose(Image.Transpose.ROTATE_90).save(jpeg_rotated, format="JPEG", quality=90, exif=exif.tobytes())
    return {
        "t1.jpg": ((INSIGHTFACE_IMAGES / "t1.jpg").read_bytes(), "image/jpeg"),
        "astronaut.png": ((SKIMAGE_DATA / "astronaut.png").read_bytes(), "image/png"),
        "hanks.png": ((INSIGHTFACE_IMAGES / "Tom_Hanks_54745.png").read_bytes(), "image/png"),
        "mask.jpg": ((INSIGHTFACE_IMAGES / "mask_white.jpg").read_bytes(), "image/jpeg"),
        # distinct photos for the slow and flaky endpoints, so dedup keeps them apart from the others
        "mask_black.jpg": ((INSIGHTFACE_IMAGES / "mask_black.jpg").read_bytes(), "image/jpeg"),
        "mask_blue.jpg": ((INSIGHTFACE_IMAGES / "mask_blue.jpg").read_bytes(), "image/jpeg"),
        "t1_rotated.jpg": (jpeg_rotated.getvalue(), "image/jpeg"),
    }


@dataclass
class Hit:
    path: str
    user_agent: str
    host_header: str
    started: float
    ended: float


class _Handler(BaseHTTPRequestHandler):
    server: _Server  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:  # keep test output clean
        pass

    def _leave(self) -> None:
        """Stop counting this request as open: called before the answer goes out, so a client that is
        already sending its next request can never be counted together with this one."""
        if getattr(self, "_open", False):
            self._open = False
            with self.server.lock:
                self.server.open_now -= 1

    def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain", headers: dict | None = None) -> None:
        self._leave()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        srv = self.server
        # recorded before answering, so a client that has its response can already see the hit
        hit = Hit(self.path, self.headers.get("User-Agent", ""), self.headers.get("Host", ""), time.monotonic(), 0.0)
        with srv.lock:
            srv.hits.append(hit)
            srv.open_now += 1
            srv.peak = max(srv.peak, srv.open_now)
        self._open = True
        try:
            self._route(srv)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self._leave()
            hit.ended = time.monotonic()

    def _route(self, srv: _Server) -> None:
        path = self.path.split("?", 1)[0]
        if srv.delay_s:
            time.sleep(srv.delay_s)
        if path == "/robots.txt":  # 404 unless a test sets one (RFC 9309: then nothing is disallowed)
            status, text = srv.robots
            return self._send(status, text.encode("utf-8"))
        if path.startswith("/img/"):
            name = path[len("/img/"):]
            if name in srv.photos:
                body, ctype = srv.photos[name]
                return self._send(200, body, ctype)
            return self._send(404, b"no such photo")
        if path.startswith("/bench/"):  # benchmark: many distinct URLs, same photo
            body, ctype = srv.photos["t1.jpg"]
            return self._send(200, body, ctype)
        if path.startswith("/missing"):
            return self._send(404, b"Not Found")
        if path.startswith("/gone"):
            return self._send(410, b"Gone")
        if path.startswith("/slow"):
            srv.stop.wait(srv.slow_s)  # longer than the client's timeout; returns early on shutdown
            body, ctype = srv.photos["mask_black.jpg"]
            return self._send(200, body, ctype)
        if path.startswith("/redirect/"):
            # /redirect/N[?to=NAME]: N hops, then /img/NAME.png (astronaut by default)
            n = int(path.rsplit("/", 1)[1])
            query = self.path.partition("?")[2]
            to = query[3:] if query.startswith("to=") else "astronaut"
            target = f"/img/{to}.png" if n <= 1 else f"/redirect/{n - 1}" + (f"?{query}" if query else "")
            return self._send(302, b"", headers={"Location": target})
        if path.startswith("/to-blocked"):
            return self._send(302, b"", headers={"Location": srv.blocked_url + "/secret-from-redirect"})
        if path.startswith("/html-as-jpeg"):
            return self._send(200, b"<html><body>This page moved.</body></html>" * 20, "image/jpeg")
        if path.startswith("/noai-other-bot"):
            body, ctype = srv.photos["hanks.png"]
            return self._send(200, body, ctype, {"X-Robots-Tag": "otherbot: noai"})
        if path.startswith("/noai"):
            body, ctype = srv.photos["t1.jpg"]
            return self._send(200, body, ctype, {"X-Robots-Tag": "noai, noimageai"})
        if path.startswith("/huge"):
            self._leave()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(10**10))
            self.send_header("Connection", "close")
            self.end_headers()
            return None
        if path.startswith("/flaky"):
            if srv.recovered.is_set():
                body, ctype = srv.photos["mask_blue.jpg"]
                return self._send(200, body, ctype)
            return self._send(503, b"busy", headers={"Retry-After": "0"})
        if path.startswith("/rate-limited"):
            return self._send(429, b"slow down", headers={"Retry-After": "1"})
        return self._send(404, b"unknown route")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, photos: dict[str, tuple[bytes, str]]) -> None:
        super().__init__((host, 0), _Handler)
        self.photos = photos
        self.lock = threading.Lock()
        self.hits: list[Hit] = []
        self.open_now = 0
        self.peak = 0
        self.stop = threading.Event()
        self.recovered = threading.Event()
        self.slow_s = 30.0
        self.delay_s = 0.0
        self.blocked_url = ""
        self.robots: tuple[int, str] = (404, "no robots.txt here")


class WebServer:
    """A started server on `host` (127.0.0.1 by default); use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", photos: dict[str, tuple[bytes, str]] | None = None) -> None:
        self._srv = _Server(host, photos if photos is not None else photo_bytes())
        self.host = host
        self.port = self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def hits(self) -> list[Hit]:
        with self._srv.lock:
            return list(self._srv.hits)

    def paths(self) -> list[str]:
        return [h.path for h in self.hits]

    @property
    def peak(self) -> int:
        return self._srv.peak

    def clear(self) -> None:
        with self._srv.lock:
            self._srv.hits.clear()
            self._srv.peak = 0

    def recover(self) -> None:
        self._srv.recovered.set()

    def set_blocked_target(self, url: str) -> None:
        self._srv.blocked_url = url

    def set_delay(self, seconds: float) -> None:
        self._srv.delay_s = seconds

    def set_slow(self, seconds: float) -> None:
        self._srv.slow_s = seconds

    def set_robots(self, text: str, status: int = 200) -> None:
        """Serve `text` as /robots.txt with `status` (a 5xx status makes it 'unreachable')."""
        self._srv.robots = (status, text)

    def __enter__(self) -> WebServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._srv.stop.set()
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(timeout=5)


def solid_jpeg(width: int = 64, height: int = 48) -> bytes:
    """A small real JPEG (not a face) for size tests."""
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()
