"""Fetch one image URL safely and politely: bytes, or a reason the caller can turn into a Reject.

For each hop (the URL, then every redirect target): the scheme must be http or https; the host is
resolved and every address checked (addresses.py); the connection goes to the checked address with
the original host name in `Host` and TLS SNI; the host's politeness slot is held while the request is
open. Before the first request to an origin its robots.txt is read (robots.py) and obeyed for every hop.
A response must be 200; `X-Robots-Tag` opt-outs (read as img2dataset reads them) are honoured; bodies are
capped by size and read against a deadline. Transient failures (timeouts, connection errors, 429 and
5xx) are retried with exponential back-off and jitter, and a Retry-After makes the whole worker wait
for that host.

Reasons (all snake_case) and whether a later `--retry-rejects` should try again:

    http_<code>          the final response was not 200      retryable for 408, 425, 429 and 5xx
    timeout              connect/read timeout or deadline    retryable
    dns                  the host name did not resolve       retryable unless the name does not exist
    connection           refused, reset, closed early        retryable
    tls                  certificate or handshake failure    no
    blocked_address      resolves to a non-public address    no
    blocked_scheme       not http(s) (file:, ftp:, data:…)   no
    bad_url              not a URL we can request            no
    too_many_redirects   more hops than allowed              no
    robots_optout        X-Robots-Tag: noai / noindex …      no
    robots_disallowed    robots.txt disallows the URL        no   (download/robots.py)
    robots_unreachable   robots.txt answered 429/5xx/failed  retryable
    too_large            over the byte cap                   no
    not_image            the bytes do not decode as image    no   (decided by images.py)

Why one module of ~400 lines: every hop's safety checks, the pinned connection, the capped read and the
retry loop share one per-request state (deadline, hop list, host slot); split apart, each piece would
need all of it passed through and a reader could no longer see in one place that no hop skips a check.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import random
import re
import socket
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import quote, urljoin, urlsplit

from ..rejection import Rejected, Rejection
from .addresses import AddressPolicy, BlockedAddress, DNSFailure, IPAddress, Resolver, resolve_checked
from .politeness import DomainGates
from .robots import ROBOTS_MAX_BYTES, RobotsCache

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524})
DEFAULT_OPTOUT = ("noai", "noimageai", "noindex", "noimageindex")
# no AVIF/HEIC in the list: OpenCV (the Resizer) cannot decode them, so do not invite them
IMAGE_ACCEPT = "image/webp,image/png,image/jpeg,image/gif,image/*;q=0.8,*/*;q=0.5"
_READ_CHUNK = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# characters left as they are when quoting a path/query ('%' keeps existing escapes intact)
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


@dataclass(frozen=True)
class FetchSettings:
    """What the fetcher needs from the recipe's `download` section (plain values: picklable, testable)."""

    user_agent: str
    user_agent_token: str = "facecorpus"
    optout_directives: tuple[str, ...] = DEFAULT_OPTOUT
    timeout_s: float = 10.0
    deadline_s: float = 60.0
    retries: int = 2
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_redirects: int = 5
    max_bytes: int = 25_000_000
    verify_tls: bool = True
    allow_networks: tuple[str, ...] = ()
    robots_txt: bool = True
    accept: str = IMAGE_ACCEPT
    #: read at most max_bytes and keep them, instead of rejecting a longer body (robots.txt)
    truncate: bool = False


@dataclass
class FetchResult:
    """The outcome for one URL: `data` holds the body on success, `rejection` says why not otherwise."""

    url: str
    data: bytes | None = None
    rejection: Rejection | None = None
    final_url: str | None = None
    status: int | None = None
    content_type: str | None = None
    attempts: int = 0
    redirects: int = 0
    retry_after: float | None = None
    #: robots.txt Crawl-delay of the URL's host (seconds), when it sets one for us
    crawl_delay: float | None = None

    @property
    def ok(self) -> bool:
        return self.rejection is None

    @property
    def reason(self) -> str | None:
        return self.rejection.reason if self.rejection is not None else None

    @property
    def detail(self) -> str:
        return self.rejection.detail if self.rejection is not None else ""

    @property
    def retryable(self) -> bool:
        return self.rejection is not None and self.rejection.retryable


class _Failure(Rejected):
    """One attempt failed: its rejection, plus the HTTP status and Retry-After the retry loop needs."""

    def __init__(self, reason: str, detail: str, retryable: bool, status: int | None = None,
                 retry_after: float | None = None, retry_now: bool = True) -> None:
        super().__init__(reason, detail, retryable)
        self.status = status
        self.retry_after = retry_after
        self.retry_now = retry_now  # False: retryable later (--retry-rejects), but not within this fetch


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    base = datetime.fromtimestamp(now, tz=UTC) if now is not None else datetime.now(tz=UTC)
    return max(0.0, (when - base).total_seconds())


#: X-Robots-Tag directives that carry a value after a colon: "unavailable_after: DATE" is not addressed to a bot
_VALUED_DIRECTIVES = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})


def robots_optout(headers: http.client.HTTPMessage, token: str, directives: tuple[str, ...]) -> str | None:
    """The X-Robots-Tag value that opts this image out of our use, or None.

    Each header line is either directives for every crawler (`noai, noimageai`) or directives addressed
    to one (`facecorpus: noai`); lines addressed to other crawlers are ignored, as img2dataset (whose
    `noai` convention this follows) reads them.
    """
    lines = headers.get_all("X-Robots-Tag") or []
    if not directives or not lines:
        return None
    wanted = {d.lower() for d in directives}
    for line in lines:
        addressee, colon, rest = line.partition(":")
        if colon and addressee.strip().lower() not in _VALUED_DIRECTIVES:
            if addressee.strip().lower() != token.lower():
                continue
            line = rest
        if wanted & {d.strip().lower() for d in line.split(",")}:
            return "; ".join(lines)
    return None


def _pinned_connection(scheme: str, host: str, port: int, ip: IPAddress, timeout: float,
                       context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    """An http.client connection whose socket goes to `ip` (already checked), while Host and SNI say `host`."""
    if scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def connect_to_checked_ip(address: tuple[str, int], timeout: float, source: object = None) -> socket.socket:
        # http.client would resolve `host` again here; we connect to the address we checked instead
        sock = socket.create_connection((str(ip), address[1]), timeout)
        peer = sock.getpeername()[0].split("%", 1)[0]
        if peer != str(ip):  # cannot happen with a literal address; refuse loudly if it ever does
            sock.close()
            raise _Failure("blocked_address", f"connected to {peer}, not the checked {ip}", False)
        return sock

    conn._create_connection = connect_to_checked_ip  # type: ignore[attr-defined]
    return conn


class Fetcher:
    """Downloads URLs under one set of rules. Thread-safe: many threads share one instance.

    With `settings.robots_txt`, each origin's robots.txt is read first (through a second Fetcher with the
    same address policy and gates) and every hop obeys it; `robots` lets callers share one cache."""

    def __init__(self, settings: FetchSettings, gates: DomainGates, resolver: Resolver = socket.getaddrinfo,
                 sleep: Callable[[float], None] = time.sleep, robots: RobotsCache | None = None) -> None:
        self.settings = settings
        self.gates = gates
        self.resolver = resolver
        self.policy = AddressPolicy.from_strings(settings.allow_networks)
        self._sleep = sleep
        self.robots = robots if robots is not None or not settings.robots_txt else self._robots_cache()
        self._tls = ssl.create_default_context()
        if not settings.verify_tls:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE
        self._headers = {
            "User-Agent": settings.user_agent,
            "Accept": settings.accept,
            "Accept-Encoding": "identity, gzip, deflate",
            "Connection": "close",
        }

    def _robots_cache(self) -> RobotsCache:
        s = self.settings
        plain = Fetcher(replace(s, robots_txt=False, optout_directives=(), max_bytes=ROBOTS_MAX_BYTES, truncate=True,
                                accept="text/plain,*/*;q=0.5"), self.gates, self.resolver, self._sleep)

        def fetch(url: str) -> tuple[int | None, bytes | None, str | None, str, bool]:
            res = plain.fetch(url)
            return res.status, res.data, res.reason, res.detail, res.retryable

        return RobotsCache(fetch, s.user_agent_token, max_crawl_delay_s=s.max_backoff_s)

    # ------------------------------------------------------------------------------------------ public

    def fetch(self, url: str) -> FetchResult:
        """Fetch `url` with retries; never raises for network or server trouble."""
        s = self.settings
        result = FetchResult(url=url)
        for attempt in range(s.retries + 1):
            result.attempts = attempt + 1
            try:
                data, final_url, status, ctype, redirects = self._attempt(url, result)
            except _Failure as f:
                result.rejection, result.status, result.retry_after = f.rejection, f.status, f.retry_after
                if not f.retryable or not f.retry_now or attempt == s.retries:
                    return result
                pause = self._backoff(attempt, f.retry_after)
                if pause is None:  # the server wants us away longer than we are willing to wait now
                    why = f" (Retry-After {f.retry_after:.0f}s exceeds max_backoff_s; left for --retry-rejects)"
                    result.rejection = dataclasses.replace(f.rejection, detail=f.detail + why)
                    return result
                self._sleep(pause)
                continue
            result.data, result.final_url, result.status, result.content_type = data, final_url, status, ctype
            result.redirects = redirects
            result.rejection = None
            return result
        return result

    # ----------------------------------------------------------------------------------------- one try

    def _backoff(self, attempt: int, retry_after: float | None) -> float | None:
        s = self.settings
        if retry_after is not None:
            return None if retry_after > s.max_backoff_s else retry_after
        base = min(s.max_backoff_s, s.backoff_s * (2**attempt))
        return base * random.uniform(0.5, 1.0)  # jitter keeps threads from retrying in lockstep

    def _attempt(self, url: str, result: FetchResult) -> tuple[bytes, str, int, str | None, int]:
        s = self.settings
        deadline = time.monotonic() + s.deadline_s
        current = url
        for hop in range(s.max_redirects + 1):
            scheme, host, port, target = self._check_url(current)
            if self.robots is not None:
                self._obey_robots(scheme, host, port, target, result if hop == 0 else None)
            addresses = self._resolve(host, port)
            location, data, status, ctype = self._request(scheme, host, port, target, addresses, deadline)
            if location is None:
                assert data is not None
                return data, current, status, ctype, hop
            current = urljoin(current, location)
        raise _Failure("too_many_redirects", f"more than {s.max_redirects} redirects starting at {url}", False)

    def _obey_robots(self, scheme: str, host: str, port: int, target: str, result: FetchResult | None) -> None:
        assert self.robots is not None
        verdict = self.robots.verdict(scheme, host.lower(), port, target)
        if result is not None:
            result.crawl_delay = verdict.crawl_delay
        if verdict.reason is not None:
            raise _Failure(verdict.reason, verdict.detail, verdict.retryable, retry_now=False)

    def _check_url(self, url: str) -> tuple[str, str, int, str]:
        url = url.strip()
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise _Failure("bad_url", f"not a valid URL: {e}", False) from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _Failure("blocked_scheme", f"scheme {scheme or '(none)'!r} is not http or https; refused", False)
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise _Failure("bad_url", "the URL has no host", False)
        if _CONTROL.search(url):
            raise _Failure("bad_url", "the URL contains control characters", False)
        # LAION URLs often carry spaces and non-ASCII characters; http.client sends ASCII only
        target = quote(parts.path or "/", safe=_SAFE_PATH) + ("?" + quote(parts.query, safe=_SAFE_QUERY) if parts.query else "")
        return scheme, host, port or (443 if scheme == "https" else 80), target

    def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return resolve_checked(host, port, self.policy, self.resolver)
        except BlockedAddress as e:
            raise _Failure("blocked_address", str(e), False) from None
        except DNSFailure as e:
            raise _Failure("dns", str(e), e.retryable) from None

    def _request(self, scheme: str, host: str, port: int, target: str, addresses: list[IPAddress],
                 deadline: float) -> tuple[str | None, bytes | None, int, str | None]:
        """One request/response on `host`; returns (redirect location or None, body, status, content type)."""
        s = self.settings
        try:
            with self.gates.slot(host, deadline):
                conn = self._connect(scheme, host, port, addresses, deadline)
                try:
                    conn.request("GET", target, headers=self._headers)
                    resp = conn.getresponse()
                    status = resp.status
                    if status in REDIRECT_CODES:
                        location = resp.getheader("Location")
                        if not location:
                            raise _Failure(f"http_{status}", f"HTTP {status} redirect without a Location header", False, status)
                        return location.strip(), None, status, None
                    if status not in (200, 203):
                        retry_after = parse_retry_after(resp.getheader("Retry-After"))
                        if status in (429, 503):
                            self.gates.slow_down(host, retry_after if retry_after is not None else s.backoff_s)
                        raise _Failure(f"http_{status}", f"HTTP {status} {resp.reason}".strip(),
                                       status in RETRYABLE_HTTP, status, retry_after)
                    optout = robots_optout(resp.headers, s.user_agent_token, s.optout_directives)
                    if optout is not None:
                        raise _Failure("robots_optout", f"X-Robots-Tag {optout!r} opts this image out", False, status)
                    length = resp.getheader("Content-Length")
                    if length and length.strip().isdigit() and int(length) > s.max_bytes and not s.truncate:
                        raise _Failure("too_large", f"Content-Length {int(length)} is over max_bytes {s.max_bytes}", False, status)
                    body = self._read_body(resp, deadline)
                    return None, body, status, resp.getheader("Content-Type")
                finally:
                    conn.close()
        except _Failure:
            raise
        except TimeoutError as e:  # socket.timeout is TimeoutError since 3.10
            raise _Failure("timeout", f"{host}: {e or 'timed out'}", True) from None
        except ssl.SSLCertVerificationError as e:
            raise _Failure("tls", f"{host}: certificate not valid: {e.verify_message or e}", False) from None
        except ssl.SSLError as e:
            raise _Failure("tls", f"{host}: TLS failed: {e.reason or e}", False) from None
        except (http.client.HTTPException, OSError) as e:
            raise _Failure("connection", f"{host}: {type(e).__name__}: {e}".rstrip(": "), True) from None

    def _connect(self, scheme: str, host: str, port: int, addresses: list[IPAddress],
                 deadline: float) -> http.client.HTTPConnection:
        last: Exception | None = None
        for ip in addresses:
            timeout = min(self.settings.timeout_s, max(0.05, deadline - time.monotonic()))
            conn = _pinned_connection(scheme, host, port, ip, timeout, self._tls if scheme == "https" else None)
            try:
                conn.connect()
                return conn
            except (TimeoutError, ssl.SSLError):
                conn.close()
                raise
            except OSError as e:  # try the next address (e.g. IPv6 unreachable, IPv4 fine)
                conn.close()
                last = e
        assert last is not None
        raise last

    def _read_body(self, resp: http.client.HTTPResponse, deadline: float) -> bytes:
        cap = self.settings.max_bytes
        encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
        inflate = None
        if encoding in ("gzip", "x-gzip"):
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            inflate = zlib.decompressobj()
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise _Failure("timeout", f"the body took longer than deadline_s {self.settings.deadline_s}s", True)
            chunk = resp.read1(_READ_CHUNK) if hasattr(resp, "read1") else resp.read(_READ_CHUNK)
            if not chunk:
                break
            if inflate is not None:
                # bounded inflation: a small gzip bomb must not become gigabytes in memory
                chunk = inflate.decompress(chunk, cap + 1 - size)
                if inflate.unconsumed_tail and self.settings.truncate:
                    chunks.append(chunk[: cap - size])
                    break
                if inflate.unconsumed_tail:
                    raise _Failure("too_large", f"the decompressed body is over max_bytes {cap}", False, resp.status)
            size += len(chunk)
            if size > cap and self.settings.truncate:
                chunks.append(chunk[: len(chunk) - (size - cap)])
                break
            if size > cap:
                raise _Failure("too_large", f"the body is over max_bytes {cap}", False, resp.status)
            chunks.append(chunk)
        return b"".join(chunks)
