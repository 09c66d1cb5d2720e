"""Requests-per-minute and tokens-per-minute budgets for one worker: token buckets.

A bucket refills continuously at `per_minute / 60` units a second and holds at most one second's
worth (`burst_s`), so over any window of T seconds at most `rate * (T + burst_s)` units pass —
a per-minute budget is never exceeded by more than one second's worth. `acquire` reserves first and
sleeps after (outside the lock): many threads wait in arrival order without busy loops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        per_minute: float,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate * burst_s, 1.0)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, n: float) -> float:
        """Take `n` units now (possibly going into debt); returns the seconds to wait before using them."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            return max(0.0, -self._tokens / self.rate)

    def acquire(self, n: float = 1.0) -> float:
        """Block until `n` units are available; returns the seconds waited."""
        wait = self.reserve(n)
        if wait > 0:
            self._sleep(wait)
        return wait

    def refund(self, n: float) -> None:
        """Give back units reserved but not used (an estimate that was too high)."""
        if n <= 0:
            return
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + n)


class RateLimits:
    """The recipe's `limits`: optional RPM and TPM buckets used together."""

    def __init__(self, rpm: int | None, tpm: int | None) -> None:
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None

    def acquire(self, estimated_tokens: int) -> float:
        """Wait for one request slot and `estimated_tokens`; returns the seconds waited."""
        waited = 0.0
        if self.requests is not None:
            waited += self.requests.acquire(1)
        if self.tokens is not None:
            waited += self.tokens.acquire(estimated_tokens)
        return waited

    def settle(self, estimated_tokens: int, actual_tokens: int | None) -> None:
        """After a response: refund what the estimate over-reserved (a failed request refunds nothing:
        the provider counts it against the limit as well)."""
        if self.tokens is not None and actual_tokens is not None:
            self.tokens.refund(estimated_tokens - actual_tokens)
