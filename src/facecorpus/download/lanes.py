"""Fleet-wide politeness: each host's URLs travel in at most `per_domain` keyed lanes.

A row's lane is `host#n`, n = crc32(URL) mod `per_domain`: a host never has more than `per_domain`
lanes, however many URLs it has (hot hosts are spread over exactly that many keys, cold ones use the
few their URLs hash to). The download step is a keyed, stateful Beam DoFn, and a Beam runner never
processes one key in two places at once (Dataflow, FnApiRunner, Flink… — it is what makes per-key
state consistent), while the step itself runs at most one request per lane at a time. So a host
sees at most `per_domain` requests in flight from the whole job — every worker, VM and process
together — not per process.

`LaneScheduler` is that one-request-per-lane rule inside one DoFn instance: many lanes run at once
on the worker's thread pool (up to `threads`), each lane strictly one after another, spaced by a
robots.txt Crawl-delay or a Retry-After when the host asked for one. It holds at most `max_held` rows
(waiting or in flight); beyond that, taking a new row waits for one to finish (back-pressure).
"""

from __future__ import annotations

import heapq
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Generic, TypeVar
from urllib.parse import urlsplit

Row = TypeVar("Row")
Out = TypeVar("Out")


def host_of(url: str) -> str:
    """The lower-case host name of `url` ('' when it has none or cannot be parsed: such rows never
    reach the network, the fetcher rejects them)."""
    try:
        return (urlsplit(url.strip()).hostname or "").rstrip(".")
    except ValueError:
        return ""


def lane_of(url: str, per_domain: int) -> str:
    """The key a URL's download runs under: its host and one of `per_domain` lanes."""
    return f"{host_of(url)}#{zlib.crc32(url.encode('utf-8', 'replace')) % per_domain}"


class LaneScheduler(Generic[Row, Out]):
    """Runs `work(row)` for queued rows on `pool`: one at a time per lane, `max_running` at a time overall.

    Not thread-safe: one DoFn thread calls `add`, `drain` and reads the results they yield; only
    `work` runs on the pool. `pause_after(out)` says how long a lane waits after a result (seconds).
    """

    def __init__(self, pool: Executor, work: Callable[[Row], Out], max_running: int, max_held: int,
                 pause_after: Callable[[Out], float | None] = lambda _out: None,
                 clock: Callable[[], float] = time.time) -> None:
        self._pool = pool
        self._work = work
        self.max_running = max(1, max_running)
        self.max_held = max(self.max_running, max_held)
        self._pause_after = pause_after
        self._clock = clock
        self._queues: dict[str, deque[Row]] = {}
        self._ready: deque[str] = deque()  # lanes with rows, nothing in flight and no pause
        self._sleeping: list[tuple[float, str]] = []  # (wake-up time, lane): lanes pausing
        self._running: dict[Future, str] = {}
        self._not_before: dict[str, float] = {}
        self.held = 0

    def not_before(self, lane: str) -> float | None:
        """Wall-clock time before which `lane` sends nothing more, if it pauses."""
        until = self._not_before.get(lane)
        return until if until is not None and until > self._clock() else None

    def pause(self, lane: str, until: float) -> None:
        """Let `lane` send nothing before `until` (a back-off learnt elsewhere, e.g. from Beam state)."""
        if until > self._not_before.get(lane, 0.0):
            self._not_before[lane] = until

    def add(self, lane: str, row: Row) -> Iterator[Out]:
        """Queue `row` on `lane`; yields results that finished meanwhile (waits while too many are held)."""
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = deque()
            self._ready.append(lane)  # a new lane: nothing in flight on it
        queue.append(row)
        self.held += 1
        yield from self._step(block=False)
        while self.held > self.max_held:
            yield from self._step(block=True)

    def drain(self) -> Iterator[Out]:
        """Yields every remaining result (waiting for them)."""
        while self.held:
            yield from self._step(block=True)

    # ------------------------------------------------------------------------------------------ inside

    def _start(self) -> None:
        now = self._clock()
        while self._sleeping and self._sleeping[0][0] <= now:
            _, lane = heapq.heappop(self._sleeping)
            self._ready.append(lane)
        while self._ready and len(self._running) < self.max_running:
            lane = self._ready.popleft()
            until = self._not_before.get(lane, 0.0)
            if until > now:
                heapq.heappush(self._sleeping, (until, lane))
                continue
            row = self._queues[lane].popleft()
            self._running[self._pool.submit(self._work, row)] = lane

    def _step(self, block: bool) -> Iterator[Out]:
        self._start()
        if block and self._running:
            timeout = max(0.0, self._sleeping[0][0] - self._clock()) if self._sleeping else None
            done, _ = wait(list(self._running), timeout=timeout, return_when=FIRST_COMPLETED)
        elif block:  # only pausing lanes: sleep until the first wakes
            time.sleep(max(0.0, self._sleeping[0][0] - self._clock()) if self._sleeping else 0.0)
            done = set()
        else:
            done = {f for f in self._running if f.done()}
        for fut in done:
            lane = self._running.pop(fut)
            self.held -= 1
            out = fut.result()  # `work` never raises (download_row turns every failure into a reject)
            pause = self._pause_after(out)
            if pause:
                self.pause(lane, self._clock() + pause)
            queue = self._queues[lane]
            if queue:
                self._ready.append(lane)
            else:
                del self._queues[lane]
                if self._not_before.get(lane, 0.0) <= self._clock():
                    self._not_before.pop(lane, None)  # a finished lane keeps only a pause still running
            yield out
        self._start()
