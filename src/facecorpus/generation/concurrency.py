"""How many requests a worker has at the endpoint at once, adapted to how the endpoint answers.

An endpoint has a capacity nobody tells us (a llama.cpp server's slots, a vLLM batch, a provider's
rate limit). Sending more than it can serve only lengthens its queue: every request waits longer,
timeouts start, retries add to the queue, and goodput collapses. `ConcurrencyLimit` keeps the
requests in flight near what the endpoint serves without queueing, by additive increase and
multiplicative decrease (AIMD, as TCP does):

- it starts at a few requests and, while nothing says otherwise, grows by one per answer (doubling
  per round trip: "slow start"), then by one per round trip once it has had to back off or latency
  has begun to rise (by an eighth of the floor below, as TCP's HyStart leaves slow start);
- an overload signal — a 429, a 503, a timeout, a refused or dropped connection — halves it;
- rising latency stops the growth, then shrinks it more gently (x 0.75): the answers' latency,
  smoothed over a few answers, against a floor (the lowest smoothed latency seen over the last few
  hundred answers, so the floor follows an endpoint that really got slower). Up to `grow_below` x
  the floor the limit may grow; beyond `tolerance` x the floor a queue is building at the endpoint
  and it shrinks; in between it holds. Rises of less than `min_rise_s` never count (this host's
  scheduling noise: a busy 2-core machine wakes a thread 10-50 ms late);
- at most one decrease per round trip (the smoothed latency): the answers still arriving from
  before a decrease say nothing about the new limit;
- never below 1, never above `ceiling` (the recipe's `openai.concurrency`; for `base_url: local`
  also the embedded server's slots).

`acquire()` waits for a free slot and returns a ticket; `release(ticket, signal)` gives it back with
what the endpoint said (`OK`, `OVERLOAD`, or `OTHER` for answers that say nothing about load, such as
a 400). The wait for a slot is not part of a request's timeout: the timeout starts after `acquire`.
With `adaptive=False` the limit is the ceiling, fixed (the behaviour before this module).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

OK = "ok"
OVERLOAD = "overload"
OTHER = "other"

_SMOOTHING = 0.25  # EWMA weight of one answer's latency: about the last four answers
_FLOOR_BUCKET = 32  # answers per bucket of the floor's sliding window
_FLOOR_BUCKETS = 12  # buckets kept: the floor is the lowest smoothed latency of the last ~384 answers


class ConcurrencyLimit:
    """A counting semaphore whose size follows the endpoint (see the module docstring)."""

    def __init__(
        self,
        ceiling: int,
        adaptive: bool = True,
        initial: int = 4,
        tolerance: float = 2.0,
        grow_below: float = 1.5,
        min_rise_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.tolerance = tolerance
        self.grow_below = grow_below
        self.min_rise_s = min_rise_s
        self.limit = float(min(ceiling, initial) if adaptive else ceiling)
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._waiting = 0
        self._slow_start = True
        self._smoothed: float | None = None
        self._floor_window: deque[float] = deque(maxlen=_FLOOR_BUCKETS)
        self._bucket_min = float("inf")
        self._bucket_n = 0
        self._next_decrease = 0.0
        self.max_in_flight = 0
        self.decreases = 0

    # ------------------------------------------------------------------------------------- slots

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self) -> tuple[float, bool]:
        """Wait for a free slot. The ticket: when the request starts (for its latency), and whether
        it took the last free slot or left others waiting (the limit was in use, so it may grow)."""
        with self._cond:
            if self._in_flight >= int(self.limit):
                self._waiting += 1
                try:
                    while self._in_flight >= int(self.limit):
                        self._cond.wait()
                finally:
                    self._waiting -= 1
            self._in_flight += 1
            if self._in_flight > self.max_in_flight:
                self.max_in_flight = self._in_flight
            full = self._in_flight >= int(self.limit) or self._waiting > 0
        return self._clock(), full

    def release(self, ticket: tuple[float, bool], signal: str = OK) -> None:
        """The request that took `ticket` is done; `signal` is what its answer says about load."""
        now = self._clock()
        start, full = ticket
        with self._cond:
            self._in_flight -= 1
            if self.adaptive:
                self._adapt(now, now - start, signal, full)
            if self._waiting:
                self._cond.notify(max(1, int(self.limit) - self._in_flight))

    # --------------------------------------------------------------------------------- the control

    def floor(self) -> float | None:
        """The lowest smoothed latency over the sliding window (None before the first answer)."""
        lows = [*self._floor_window, self._bucket_min]
        low = min(lows)
        return None if low == float("inf") else low

    def _adapt(self, now: float, latency: float, signal: str, full: bool) -> None:
        if signal == OVERLOAD:
            self._decrease(now, 0.5)
            return
        if signal != OK:
            return
        smoothed = latency if self._smoothed is None else self._smoothed + _SMOOTHING * (latency - self._smoothed)
        self._smoothed = smoothed
        self._bucket_min = min(self._bucket_min, smoothed)
        self._bucket_n += 1
        if self._bucket_n >= _FLOOR_BUCKET:
            self._floor_window.append(self._bucket_min)
            self._bucket_min, self._bucket_n = float("inf"), 0
        floor = self.floor()
        rise = smoothed - floor if floor is not None else 0.0
        if rise > self.min_rise_s and smoothed > self.tolerance * floor:  # type: ignore[operator]
            self._decrease(now, 0.75)
        elif rise > self.min_rise_s and smoothed > self.grow_below * floor:  # type: ignore[operator]
            self._slow_start = False  # a queue is starting: hold
        else:
            if self._slow_start and rise > max(self.min_rise_s, floor / 8):  # type: ignore[operator]
                self._slow_start = False  # the first sign of a queue: grow by one per round trip from now
            if full:  # grow only a limit that is in use
                self.limit = min(float(self.ceiling), self.limit + (1.0 if self._slow_start else 1.0 / self.limit))

    def _decrease(self, now: float, factor: float) -> None:
        self._slow_start = False
        if now < self._next_decrease:
            return  # one decrease per round trip
        self.limit = max(1.0, self.limit * factor)
        self.decreases += 1
        self._next_decrease = now + (self._smoothed or 0.0)
