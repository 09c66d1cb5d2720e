"""Per-domain politeness shared by every download thread of a worker process.

Web hosts behind LAION URLs are not ours: a worker never holds more than `per_domain` requests open
to one host at a time, and when a host answers 429/503 with Retry-After (or keeps failing), every
thread of the worker waits before sending that host anything else. img2dataset has neither; cloud
projects have been suspended for the download storms that follow.

The cap is per worker process (Beam gives no cheap cross-worker coordination); the fleet-wide load on
a host is at most `per_domain × workers`, which is why the default is small.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class DomainGates:
    """A bounded semaphore and a 'not before' time per host name."""

    def __init__(self, per_domain: int) -> None:
        if per_domain < 1:
            raise ValueError("per_domain must be at least 1")
        self.per_domain = per_domain
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._not_before: dict[str, float] = {}
        self._open: dict[str, int] = {}
        #: highest number of simultaneous requests seen per host (for stats and tests)
        self.peak: dict[str, int] = {}

    def _slot(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._slots.get(host)
            if sem is None:
                sem = self._slots[host] = threading.BoundedSemaphore(self.per_domain)
            return sem

    def wait_time(self, host: str) -> float:
        """Seconds until `host` may be contacted again (0 when it may be now)."""
        with self._lock:
            return max(0.0, self._not_before.get(host, 0.0) - time.monotonic())

    def slow_down(self, host: str, seconds: float) -> None:
        """Ask every thread to leave `host` alone for `seconds` (the longest request wins)."""
        until = time.monotonic() + max(0.0, seconds)
        with self._lock:
            if until > self._not_before.get(host, 0.0):
                self._not_before[host] = until

    @contextmanager
    def slot(self, host: str, deadline: float | None = None) -> Iterator[None]:
        """Hold one of `host`'s slots for the duration of a request.

        Waits for the host's back-off to pass and for a free slot. Raises TimeoutError when `deadline`
        (a time.monotonic() value) comes first, so one slow host cannot stall a thread for ever.
        """
        sem = self._slot(host)
        while True:
            pause = self.wait_time(host)
            if pause <= 0:
                break
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(f"{host} asked to slow down for {pause:.1f}s more than this request may wait")
            time.sleep(min(pause, 1.0))
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(f"no free slot for {host} before the deadline")
        if not sem.acquire(timeout=remaining if remaining is not None else -1):
            raise TimeoutError(f"no free slot for {host} within {remaining:.1f}s ({self.per_domain} busy)")
        with self._lock:
            n = self._open[host] = self._open.get(host, 0) + 1
            if n > self.peak.get(host, 0):
                self.peak[host] = n
        try:
            yield
        finally:
            with self._lock:
                self._open[host] -= 1
            sem.release()


_shared: dict[int, DomainGates] = {}
_shared_lock = threading.Lock()


def worker_gates(per_domain: int) -> DomainGates:
    """The process-wide gates for a given cap, so all DoFn instances on a worker share one view of each host."""
    with _shared_lock:
        gates = _shared.get(per_domain)
        if gates is None:
            gates = _shared[per_domain] = DomainGates(per_domain)
        return gates
