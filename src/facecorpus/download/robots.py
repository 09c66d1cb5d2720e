"""robots.txt (RFC 9309) for image downloads: fetched once per origin and worker process, then cached.

Before the first request to an origin (scheme, host, port), its `/robots.txt` is fetched through the
same SSRF-safe fetcher and per-host slots as the images (redirects followed and re-checked, at most
512 KiB read), and parsed with Protego (the Scrapy project's RFC 9309 parser). The rules of the group
that names our `user_agent_token` apply, else those of `*`. What the fetch gives decides, as RFC 9309
says:

    200                         the parsed rules                   allowed / `robots_disallowed` (not retryable)
    4xx (not 429)               no rules ("unavailable")           everything allowed
    429, 5xx, timeout, reset    assume complete disallow           `robots_unreachable` (retryable)
    DNS, TLS, blocked address   the host cannot be reached at all  the fetch's own reason (`dns`, `tls`, …)

A `Crawl-delay` line for our group is honoured (up to `max_backoff_s`): the download step spaces that
host's requests by it (download/lanes.py). Verdicts are cached for `ttl_s` (a day, as RFC 9309 allows);
an unreachable robots.txt for `retry_unreachable_s`, so a host that was down is asked again later in
a long run. The cache is bounded (least recently used origins leave first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from protego import Protego

ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: a crawler must read at least 500 KiB
#: fetch reasons that say the host itself cannot be reached: the image fetch would fail the same way
_HOST_REASONS = frozenset({"dns", "tls", "blocked_address", "bad_url", "blocked_scheme", "too_many_redirects"})


@dataclass(frozen=True)
class RobotsVerdict:
    """What robots.txt says about one URL: None `reason` means it may be fetched."""

    reason: str | None = None
    detail: str = ""
    retryable: bool = False
    crawl_delay: float | None = None


@dataclass(frozen=True)
class _Rules:
    parser: Protego | None  # None: everything allowed (no robots.txt, or a 4xx)
    failure: RobotsVerdict | None  # set when robots.txt could not be read: every URL gets this verdict
    expires: float
    crawl_delay: float | None


#: fetches `url` and returns (status or None, body or None, fetch reason or None, detail, retryable)
RobotsFetch = Callable[[str], tuple[int | None, bytes | None, str | None, str, bool]]


class RobotsCache:
    """Per-origin robots.txt rules for one worker process; thread-safe, one fetch per origin at a time."""

    def __init__(self, fetch: RobotsFetch, token: str, max_crawl_delay_s: float, ttl_s: float = 86400.0,
                 retry_unreachable_s: float = 600.0, max_origins: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.token = token.lower()
        self.max_crawl_delay_s = max_crawl_delay_s
        self.ttl_s = ttl_s
        self.retry_unreachable_s = retry_unreachable_s
        self.max_origins = max_origins
        self._clock = clock
        self._lock = threading.Lock()
        self._rules: OrderedDict[str, _Rules] = OrderedDict()
        self._pending: dict[str, threading.Event] = {}
        #: robots.txt requests made per origin (for tests and stats)
        self.fetches: dict[str, int] = {}

    def verdict(self, scheme: str, host: str, port: int, target: str) -> RobotsVerdict:
        """May `target` (path and query) on this origin be fetched by us?"""
        origin = f"{scheme}://{host}:{port}"
        rules = self._rules_for(origin)
        if rules.failure is not None:
            return rules.failure
        if rules.parser is not None and not rules.parser.can_fetch(target, self.token):
            return RobotsVerdict("robots_disallowed", f"{origin}/robots.txt disallows {target[:200]} for {self.token}",
                                 False, rules.crawl_delay)
        return RobotsVerdict(crawl_delay=rules.crawl_delay)

    def _rules_for(self, origin: str) -> _Rules:
        while True:
            with self._lock:
                rules = self._rules.get(origin)
                if rules is not None and rules.expires > self._clock():
                    self._rules.move_to_end(origin)
                    return rules
                waiting = self._pending.get(origin)
                if waiting is None:  # this thread fetches; others asking for the origin wait for it
                    waiting = self._pending[origin] = threading.Event()
                    break
            waiting.wait()
        try:
            rules = self._load(origin)
            with self._lock:
                self._rules[origin] = rules
                self._rules.move_to_end(origin)
                while len(self._rules) > self.max_origins:
                    self._rules.popitem(last=False)
            return rules
        finally:
            with self._lock:
                self._pending.pop(origin).set()

    def _load(self, origin: str) -> _Rules:
        with self._lock:
            self.fetches[origin] = self.fetches.get(origin, 0) + 1
        status, body, reason, detail, retryable = self._fetch(f"{origin}/robots.txt")
        now = self._clock()
        if reason is None and body is not None:
            parser = Protego.parse(body.decode("utf-8", errors="replace"))
            delay = parser.crawl_delay(self.token)
            delay = None if delay is None else min(float(delay), self.max_crawl_delay_s)
            return _Rules(parser, None, now + self.ttl_s, delay)
        if status is not None and 400 <= status < 500 and status != 429:
            return _Rules(None, None, now + self.ttl_s, None)  # RFC 9309 "unavailable": no restrictions
        if reason in _HOST_REASONS:
            failure = RobotsVerdict(reason, f"{origin}/robots.txt: {detail}", retryable)
        else:
            failure = RobotsVerdict("robots_unreachable",
                                    f"{origin}/robots.txt could not be read ({detail}); RFC 9309 says assume "
                                    f"everything is disallowed", True)
        return _Rules(None, failure, now + self.retry_unreachable_s, None)
