"""The embedded OpenAI-compatible LLM server: llama.cpp (`xllamacpp`) serving a GGUF from the model store.

`LocalLLMServer` starts llama.cpp's HTTP server on 127.0.0.1 in a child process
(`python -m facecorpus.generation.local_server_process`). A child, not a thread of ours: releasing an
in-process `xllamacpp.Server` joins llama.cpp's HTTP threads, and with requests still in its queue
(a client that gave up on a busy machine) that join never returns — seen as a test suite hung for
half an hour inside `~Server`. A process can always be stopped (SIGTERM, then SIGKILL), and it exits
by itself when its parent is gone, so a killed run leaves no server behind.

llama.cpp does not always notice a taken port (older builds only log "couldn't bind" and keep running,
so a client can end up talking to a stale server), hence: the port is checked free first, the server
must answer `/health` and list its model under our alias on `/v1/models`, and the port must then be held.

- `local_llm_server()` — a context manager for the demo and tests: start, export the URL in
  `$FACECORPUS_LOCAL_LLM_URL` (so `generation.openai.base_url: local` resolves to it), stop on exit.
- `shared_local_server()` — used by workers when the recipe says `base_url: local` and no server was
  exported: one server per process, stopped at interpreter exit.
- `facecorpus llm serve` runs one in the foreground until Ctrl-C.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import UserError

log = logging.getLogger("facecorpus")

ENV_URL = "FACECORPUS_LOCAL_LLM_URL"
#: model pack → its GGUF file inside the pack
GGUF_FILES = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def gguf_path(pack: str, store: str | None = None) -> Path:
    """The GGUF of a model pack; a missing pack raises MissingModelPack (`facecorpus models pull NAME`)."""
    from ..models import pack_file

    if pack not in GGUF_FILES:
        raise UserError(f"model pack '{pack}' is not an LLM pack (LLM packs: {', '.join(GGUF_FILES)})")
    return pack_file(pack, GGUF_FILES[pack], store)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (connections lingering in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind, llama.cpp's included
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
        return json.loads(resp.read())


def default_threads() -> int:
    """Decode threads for the embedded server: one on machines of up to three cores, else half the cores
    (at most 8). llama.cpp's threads meet at a barrier after every step; when other processes hold a core,
    the thread left waiting spins and each token waits for the slowest thread. Measured on a shared 2-core
    machine at load 13: 8.7 tokens/s with one thread, 0.5 with two."""
    n = os.cpu_count() or 1
    return 1 if n <= 3 else min(n // 2, 8)


class LocalLLMServer:
    """llama.cpp's server for one model pack on 127.0.0.1:`port` (0 = pick a free port)."""

    def __init__(
        self,
        pack: str = "smollm2",
        port: int = 0,
        threads: int | None = None,
        parallel: int = 2,
        ctx_size: int = 4096,
        store: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.pack = pack
        self.model_path = gguf_path(pack, store)
        self.port = port or free_port()
        self.threads = threads or default_threads()
        self.parallel = parallel
        self.ctx_size = ctx_size
        self.verbose = verbose
        self._proc: subprocess.Popen | None = None
        self._log: Any = None  # the child's stderr (a temporary file)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 120.0) -> LocalLLMServer:
        """Start and wait until healthy; raises UserError with the reason when it cannot."""
        if not port_is_free(self.port):
            raise UserError(f"port {self.port} on 127.0.0.1 is already in use; choose another with --port")
        args = [
            sys.executable, "-m", "facecorpus.generation.local_server_process",
            "--model", str(self.model_path), "--alias", self.pack, "--port", str(self.port),
            "--parallel", str(self.parallel), "--ctx-size", str(self.ctx_size * self.parallel),
            "--threads", str(self.threads), "--parent", str(os.getpid()),
        ]
        if self.verbose:
            args.append("--verbose")
        t0 = time.monotonic()
        # the child's stderr goes to a file, not a pipe: a pipe nobody reads would block llama.cpp's logging
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(  # noqa: S603 - our own module, arguments we built
            args, stdin=subprocess.DEVNULL, stdout=None if self.verbose else subprocess.DEVNULL,
            stderr=None if self.verbose else self._log,
        )
        self._wait_healthy(t0 + timeout_s)
        log.info("local LLM %s serving at %s (%.1fs to start)", self.pack, self.base_url, time.monotonic() - t0)
        return self

    def _wait_healthy(self, deadline: float) -> None:
        root = f"http://127.0.0.1:{self.port}"
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                detail = self._child_error() or f"exit code {self._proc.returncode}"
                self.stop()
                raise UserError(f"the local LLM server did not start on port {self.port}: {detail}")
            try:
                if _get_json(root + "/health").get("status") == "ok":
                    models = _get_json(root + "/v1/models")
                    ids = {m.get("id") for m in models.get("data", [])}
                    if self.pack not in ids:  # something else answers on this port
                        self.stop()
                        raise UserError(f"port {self.port} answers with models {sorted(ids)}, not '{self.pack}'")
                    if port_is_free(self.port):
                        self.stop()
                        raise UserError(f"the local LLM server reports healthy but does not hold port {self.port}")
                    return
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = str(e)
            time.sleep(0.2)
        self.stop()
        raise UserError(f"the local LLM server on port {self.port} did not become healthy ({last or 'no answer'})")

    def stop(self, grace_s: float = 10.0) -> None:
        """Shut down: SIGTERM, then SIGKILL after `grace_s` (the child exits at once on SIGTERM)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _child_error(self) -> str:
        """The last line the child wrote to stderr (why it failed to start), or ''."""
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:300] if lines else ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LocalLLMServer:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def local_llm_server(pack: str = "smollm2", port: int = 0, **kwargs: Any) -> Iterator[LocalLLMServer]:
    """Start the embedded server for the duration of a block and point `base_url: local` at it.

    Example (the demo): `with local_llm_server() as srv: run_recipe(recipe, out)` — a recipe with
    `generation.openai.base_url: local` then talks to `srv.base_url`.
    """
    server = LocalLLMServer(pack=pack, port=port, **kwargs).start()
    previous = os.environ.get(ENV_URL)
    os.environ[ENV_URL] = server.base_url
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop(ENV_URL, None)
        else:
            os.environ[ENV_URL] = previous
        server.stop()


def server_slots(base_url: str) -> int | None:
    """How many requests a llama.cpp server decodes at once (`total_slots` of its `/props`), or None
    when it does not say. More in flight than that only wait in its queue, inside their timeout."""
    try:
        props = _get_json(base_url.removesuffix("/v1").rstrip("/") + "/props", timeout=10.0)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    slots = props.get("total_slots") if isinstance(props, dict) else None
    return slots if isinstance(slots, int) and slots > 0 else None


_shared: dict[str, LocalLLMServer] = {}
_shared_lock = threading.Lock()


def shared_local_server(pack: str = "smollm2") -> str:
    """Base URL of the local server for this process: `$FACECORPUS_LOCAL_LLM_URL` if a caller started
    one, else one started here on first use and stopped at interpreter exit."""
    exported = os.environ.get(ENV_URL)
    if exported:
        return exported
    with _shared_lock:
        server = _shared.get(pack)
        if server is None or not server.running:
            server = _shared[pack] = LocalLLMServer(pack=pack).start()
            atexit.register(server.stop)
        return server.base_url


def serve_forever(pack: str, port: int, threads: int | None, parallel: int, verbose: bool) -> None:
    """`facecorpus llm serve`: run until SIGINT/SIGTERM, then shut down cleanly."""
    import signal

    import typer

    stop = threading.Event()
    # handlers first: a Ctrl-C that lands between start-up and the wait must still stop us cleanly
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = LocalLLMServer(pack=pack, port=port, threads=threads, parallel=parallel, verbose=verbose)
    try:
        server.start()
        typer.echo(f"serving {pack} at {server.base_url} (OpenAI-compatible; Ctrl-C stops it)")
        typer.echo(f"use it: --set generation.generator=openai --set generation.openai.base_url={server.base_url}")
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo("stopped")
