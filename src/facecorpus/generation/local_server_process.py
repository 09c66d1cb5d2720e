"""The child process that hosts llama.cpp's server for `LocalLLMServer` (see local_server.py).

It builds one `xllamacpp.Server`, then waits. SIGTERM, SIGINT or the death of the parent process
ends it with `os._exit`: the process goes away with the server's threads and memory, and nothing runs
llama.cpp's shutdown path, which can block forever while requests are still queued.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def _params(a: argparse.Namespace):  # noqa: ANN202 - xllamacpp.CommonParams, imported lazily
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = a.model
    params.model_alias = {a.alias}
    params.hostnames = ["127.0.0.1"]
    params.port = a.port
    params.n_parallel = a.parallel
    params.n_ctx = a.ctx_size  # llama.cpp splits the context among the slots
    params.cpuparams.n_threads = a.threads
    params.cpuparams_batch.n_threads = a.threads
    params.verbosity = 3 if a.verbose else -1  # llama.cpp logs every slot at default verbosity
    return params


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="facecorpus-local-llm")
    ap.add_argument("--model", required=True)
    ap.add_argument("--alias", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--ctx-size", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parent", type=int, default=0, help="exit when this process is no longer our parent")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    import xllamacpp

    try:
        server = xllamacpp.Server(_params(a))
    except RuntimeError as e:
        print(f"llama.cpp server failed: {e}", file=sys.stderr, flush=True)
        os._exit(1)
    while not done.wait(1.0):
        if a.parent and os.getppid() != a.parent:
            break
    del server  # kept alive until here; never released through its destructor
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
