"""What benchmarks/llm.py and goodput.py share: the loopback server in a child process, its stats, CPU time.

`fault_server(*args)` starts tests/support/llm_fault_server.py (`python -m tests.support.llm_fault_server ARGS`) in a
child process, so its work is not in our interpreter's CPU time, yields its base URL and stops it;
each run or round of either benchmark uses a fresh one. `server_stats` reads what it counted
(requests, arrivals, in flight, queue, wasted answers). `cpu_s` and `CpuSampler` read this
process's CPU time, whole and inside a window of wall-clock time (the server's first to last arrival).
`from_memory` feeds a Beam pipeline on FnApiRunner the items already built in this process, the way
the other sides of a benchmark get their inputs (see benchmarks/llm.py).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def fault_server(*args: str) -> Iterator[str]:
    """A fresh loopback OpenAI-compatible server (`tests.support.llm_fault_server ARGS`); yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.llm_fault_server", *args], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    assert proc.stdout is not None
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def server_stats(base_url: str, arrivals: bool = False) -> dict[str, Any]:
    """The server's counters (`arrivals`: also every request's arrival time, time.time())."""
    url = base_url.removesuffix("/v1") + "/_stats" + ("?arrivals=1" if arrivals else "")
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def cpu_s(children: bool = False) -> float:
    """This process's CPU seconds so far (user + system, all threads; `children`: plus its finished children)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN) if children else None
    return r.ru_utime + r.ru_stime + (c.ru_utime + c.ru_stime if c else 0.0)


class CpuSampler:
    """(wall clock, this process's CPU seconds) every 20 ms, to read the CPU spent inside a window."""

    def __init__(self, children: bool = False) -> None:
        self.children = children
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), cpu_s(self.children)))
            self._stop.wait(0.02)

    @classmethod
    def of(cls, samples: list[tuple[float, float]]) -> CpuSampler:
        """A stopped sampler holding samples taken elsewhere (another process's)."""
        sampler = cls.__new__(cls)
        sampler.samples = samples
        return sampler

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), cpu_s(self.children)))

    def cpu_between(self, t0: float, t1: float) -> float:
        def at(t: float) -> float:
            after = [c for w, c in self.samples if w >= t]
            return after[0] if after else self.samples[-1][1]
        return at(t1) - at(t0)


_INPUTS: dict[str, list[Any]] = {}


def hold_inputs(token: str, items: list[Any]) -> None:
    """Keep `items` for `from_memory(token)` (until `drop_inputs`)."""
    _INPUTS[token] = items


def drop_inputs(token: str) -> None:
    _INPUTS.pop(token, None)


def from_memory(token: str) -> Iterator[Any]:
    """The items held under `token`, one by one: `beam.Create([token], reshuffle=False) | FlatMap(from_memory)`.

    FnApiRunner's embedded worker runs in this process, so it reads them where they were built —
    not pickled into the pipeline graph (`beam.Create(items)` pickles and zlib-compresses them
    twice, then reshuffles them: CPU no pipeline that reads a source pays)."""
    if token not in _INPUTS:
        raise RuntimeError("from_memory runs only in the process that built the inputs (FnApiRunner, in process)")
    yield from _INPUTS[token]
