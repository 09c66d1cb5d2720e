"""The fetch layer against a real loopback HTTP server: reasons, retries, politeness and the SSRF guard."""

from __future__ import annotations

import io
import ipaddress
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageOps

from facecorpus.download.addresses import AddressPolicy
from facecorpus.download.config import DownloadConfig
from facecorpus.download.download_rows import WebRow, default_user_agent, download_row
from facecorpus.download.fetch import Fetcher, FetchSettings, parse_retry_after
from facecorpus.download.images import ResizeSettings, map_faces, orient_point
from facecorpus.download.politeness import DomainGates
from tests.support.loopback_web import WebServer, photo_bytes

ALLOW_TEST_HOST = ("127.0.0.1/32",)


@pytest.fixture(scope="module")
def photos() -> dict[str, tuple[bytes, str]]:
    return photo_bytes()


@pytest.fixture()
def servers(photos):
    """(allowed server on 127.0.0.1, 'blocked' server on 127.0.0.2 that must never be reached)."""
    with WebServer("127.0.0.1", photos) as web, WebServer("127.0.0.2", photos) as blocked:
        web.set_blocked_target(blocked.base)
        yield web, blocked


def fetcher(allow=ALLOW_TEST_HOST, resolver=socket.getaddrinfo, per_domain: int = 4, **kw) -> Fetcher:
    settings = FetchSettings(
        user_agent=default_user_agent(DownloadConfig()), allow_networks=tuple(allow),
        timeout_s=kw.pop("timeout_s", 2.0), deadline_s=kw.pop("deadline_s", 10.0), retries=kw.pop("retries", 0),
        backoff_s=kw.pop("backoff_s", 0.01), max_backoff_s=kw.pop("max_backoff_s", 0.5),
        robots_txt=kw.pop("robots_txt", False), **kw,  # robots.txt has its own tests (test_politeness.py)
    )
    return Fetcher(settings, DomainGates(per_domain), resolver=resolver)


def test_real_photo_is_fetched_with_an_honest_user_agent(servers, photos):
    web, _ = servers
    res = fetcher().fetch(web.url("/img/t1.jpg"))
    assert res.ok and res.data == photos["t1.jpg"][0] and res.status == 200
    ua = web.hits[0].user_agent
    assert ua.startswith("facecorpus/") and "Mozilla" not in ua and "X-Robots-Tag" in ua


@pytest.mark.parametrize(("path", "reason", "retryable"), [
    ("/missing", "http_404", False),
    ("/gone", "http_410", False),
    ("/flaky", "http_503", True),
    ("/noai", "robots_optout", False),
    ("/huge", "too_large", False),
])
def test_failures_have_reasons(servers, path, reason, retryable):
    web, _ = servers
    res = fetcher(max_bytes=5_000_000).fetch(web.url(path))
    assert (res.reason, res.retryable) == (reason, retryable), res.detail
    assert res.detail


def test_x_robots_tag_for_another_bot_does_not_opt_out(servers):
    web, _ = servers
    assert fetcher().fetch(web.url("/noai-other-bot")).ok


def test_slow_server_times_out_quickly(servers):
    web, _ = servers
    web.set_slow(5)
    res = fetcher(timeout_s=0.3).fetch(web.url("/slow"))
    # A timeout, not the answer the server sends after 5 s: we gave up first. No wall-clock bound (a
    # busy machine may stretch 0.3 s), the outcome itself says which came first.
    assert (res.reason, res.retryable) == ("timeout", True)


def test_redirect_chain_is_followed_and_limited(servers, photos):
    web, _ = servers
    res = fetcher().fetch(web.url("/redirect/3"))
    assert res.ok and res.redirects == 3 and res.final_url.endswith("/img/astronaut.png")
    assert res.data == photos["astronaut.png"][0]
    res = fetcher(max_redirects=2).fetch(web.url("/redirect/5"))
    assert (res.reason, res.retryable) == ("too_many_redirects", False)
    # 3 redirect hops (then the photo), then 3 requests before the limit stops the second chain
    assert [p for p in web.paths() if p.startswith("/redirect/")] == ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/5", "/redirect/4", "/redirect/3"]


def test_redirect_to_a_blocked_address_is_refused_before_connecting(servers):
    web, blocked = servers
    res = fetcher().fetch(web.url("/to-blocked"))
    assert (res.reason, res.retryable) == ("blocked_address", False)
    assert "127.0.0.2" in res.detail
    assert web.paths() == ["/to-blocked"]
    assert blocked.hits == []  # asserted on the server side: nothing reached it


def test_direct_blocked_addresses_never_reach_a_server(servers):
    web, blocked = servers
    port = blocked.port
    f = fetcher()
    for url in (
        f"http://127.0.0.2:{port}/direct",
        f"http://2130706434:{port}/decimal-form",  # 127.0.0.2 written as one integer
        f"http://0x7f000002:{port}/hex-form",
        f"http://[::1]:{port}/ipv6-loopback",
        f"http://[::ffff:127.0.0.2]:{port}/mapped",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/internal",
        "http://224.0.0.1/multicast",
        "http://0.0.0.0:9/unspecified",
    ):
        res = f.fetch(url)
        assert (res.reason, res.retryable) == ("blocked_address", False), (url, res.reason, res.detail)
    assert blocked.hits == []


def test_production_default_refuses_loopback(servers):
    web, _ = servers
    res = fetcher(allow=()).fetch(web.url("/img/t1.jpg"))
    assert res.reason == "blocked_address"
    assert web.hits == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x.jpg", "gopher://x/", "data:image/png;base64,AA=="])
def test_other_schemes_are_refused(url):
    res = fetcher().fetch(url)
    assert (res.reason, res.retryable) == ("blocked_scheme", False)


@pytest.mark.parametrize("url", ["http:///nohost.jpg", "http://example.com:99999999/x", "http://exa mple.com/\r\nX: y"])
def test_malformed_urls(url):
    assert fetcher().fetch(url).reason == "bad_url"


def test_connection_is_pinned_to_the_checked_address(servers, photos):
    """The resolver answers 127.0.0.1 once, then 127.0.0.2 (DNS rebinding): the request still goes to
    the address that was checked, with the host name in the Host header; the second answer is never used."""
    web, blocked = servers
    calls = []

    def rebinding(host, port, *a, **kw):
        calls.append(host)
        ip = "127.0.0.1" if len(calls) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    res = fetcher(resolver=rebinding).fetch(f"http://photos.example:{web.port}/img/t1.jpg")
    assert res.ok and res.data == photos["t1.jpg"][0]
    assert calls == ["photos.example"]
    assert web.hits[0].host_header == f"photos.example:{web.port}"
    assert blocked.hits == []


def test_a_name_with_any_private_answer_is_refused(servers):
    web, blocked = servers

    def mixed(host, port, *a, **kw):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]

    res = fetcher(resolver=mixed).fetch(f"http://mixed.example:{web.port}/img/t1.jpg")
    assert res.reason == "blocked_address"
    assert web.hits == [] and blocked.hits == []


@pytest.mark.parametrize(("errno", "retryable"), [(socket.EAI_NONAME, False), (socket.EAI_AGAIN, True)])
def test_dns_failures(errno, retryable):
    def failing(host, *a, **kw):
        raise socket.gaierror(errno, "test resolver says no")

    res = fetcher(resolver=failing).fetch("http://no-such-host.example/x.jpg")
    assert (res.reason, res.retryable) == ("dns", retryable)


def test_connection_refused_is_retryable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    res = fetcher().fetch(f"http://127.0.0.1:{port}/x.jpg")
    assert (res.reason, res.retryable) == ("connection", True)


def test_transient_errors_are_retried_with_backoff_then_succeed(servers):
    web, _ = servers
    f = fetcher(retries=2)
    res = f.fetch(web.url("/flaky/a"))
    assert res.reason == "http_503" and res.attempts == 3
    assert web.paths().count("/flaky/a") == 3
    web.recover()
    assert f.fetch(web.url("/flaky/a")).ok


def test_retry_after_longer_than_we_wait_is_left_for_later(servers):
    web, _ = servers
    f = fetcher(retries=3, max_backoff_s=0.2)
    res = f.fetch(web.url("/rate-limited"))
    assert (res.reason, res.retryable, res.attempts) == ("http_429", True, 1)
    assert "Retry-After" in res.detail
    # the whole worker now leaves that host alone for the Retry-After period
    assert f.gates.wait_time("127.0.0.1") > 0.5


def test_per_domain_cap_holds_under_load(servers):
    web, _ = servers
    web.set_slow(0.3)
    f = fetcher(per_domain=3, timeout_s=5)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(f.fetch, [web.url(f"/slow/{i}") for i in range(12)]))
    assert all(r.ok for r in results)
    assert web.peak == 3  # never more than 3 at once on the server, and the cap was used
    assert f.gates.peak["127.0.0.1"] == 3


def test_not_image_and_resized_photo_through_download_row(servers, photos):
    web, _ = servers
    f = fetcher()
    resize = ResizeSettings(mode="keep_ratio_largest", size=256)
    bad = download_row(WebRow(source_id="1", url=web.url("/html-as-jpeg"), dataset="laion"), f, resize)
    assert bad.reject is not None and (bad.reject.reason, bad.reject.retryable) == ("not_image", False)
    assert "image/jpeg" in bad.reject.detail and bad.reject.stage == "download"
    ok = download_row(WebRow(source_id="2", url=web.url("/img/t1.jpg"), dataset="laion", text="a group"), f, resize)
    assert ok.item is not None and ok.item.source.text == "a group"
    img = Image.open(io.BytesIO(ok.item.data))
    w0, h0 = Image.open(io.BytesIO(photos["t1.jpg"][0])).size
    assert max(img.size) == 256 and (ok.item.source.extra["original_width"], ok.item.source.extra["original_height"]) == (w0, h0)


def test_rotated_photo_is_turned_upright_with_its_given_faces(servers):
    web, _ = servers
    raw = Image.open(io.BytesIO(photo_bytes()["t1_rotated.jpg"][0]))
    w_raw, h_raw = raw.size  # stored sideways: taller than wide
    face = {"box": [10.0, 20.0, 60.0, 90.0], "score": 0.99, "landmarks5": [[20, 40], [40, 40], [30, 55], [22, 70], [38, 70]]}
    row = WebRow(source_id="3", url=web.url("/img/t1_rotated.jpg"), dataset="laion", given_faces=[face],
                 given_faces_source="farl")
    out = download_row(row, fetcher(), ResizeSettings(mode="no"))
    assert out.item is not None
    img = Image.open(io.BytesIO(out.item.data))
    assert img.size == (h_raw, w_raw)  # upright: wide again
    assert out.item.given_faces.size == [h_raw, w_raw]
    (moved,) = out.item.given_faces.faces
    # orientation 6: (x, y) → (H - y, x)
    assert moved["box"] == pytest.approx([h_raw - 90, 10, h_raw - 20, 60])
    assert moved["landmarks5"][0] == pytest.approx([h_raw - 40, 20])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_point_matches_pil_exif_transpose(orientation):
    w, h, x, y = 7, 5, 2, 1
    arr = np.zeros((h, w), np.uint8)
    arr[y, x] = 255
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif.tobytes())
    turned = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    ty, tx = np.argwhere(turned == 255)[0]
    # pixel centres: a pixel index i covers [i, i+1), so compare centres
    px, py = orient_point(x + 0.5, y + 0.5, orientation, w, h)
    assert (px - 0.5, py - 0.5) == (tx, ty)


def test_map_faces_scales_to_the_kept_image():
    faces = [{"box": [100, 50, 200, 150], "score": 0.9, "landmarks5": None}]
    (out,) = map_faces(faces, 1, (1000, 500), (500, 250))
    assert out["box"] == [50, 25, 100, 75]


def test_address_policy_table():
    policy = AddressPolicy.from_strings(["127.0.0.1/32"])
    allowed = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "127.0.0.1"]
    refused = ["127.0.0.2", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
               "224.0.0.251", "239.255.255.250", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00::1",
               "ff02::1", "::ffff:10.0.0.1", "2002:0a00:0001::1", "64:ff9b::7f00:1"]
    for a in allowed:
        assert policy.refusal(ipaddress.ip_address(a)) is None, a
    for a in refused:
        assert policy.refusal(ipaddress.ip_address(a)) is not None, a
    with pytest.raises(ValueError):
        AddressPolicy.from_strings(["not-a-network"])


def test_retry_after_parsing():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_gates_wait_for_a_slow_down_and_respect_deadlines():
    gates = DomainGates(1)
    gates.slow_down("h", 0.3)
    t0 = time.monotonic()
    with gates.slot("h"):
        pass
    assert time.monotonic() - t0 >= 0.25
    gates.slow_down("h", 5)
    with pytest.raises(TimeoutError):
        with gates.slot("h", deadline=time.monotonic() + 0.1):
            pass
    gates2 = DomainGates(1)
    entered = threading.Event()

    def hold():
        with gates2.slot("x"):
            entered.set()
            time.sleep(0.4)

    t = threading.Thread(target=hold)
    t.start()
    entered.wait()
    with pytest.raises(TimeoutError):
        with gates2.slot("x", deadline=time.monotonic() + 0.1):
            pass
    t.join()


def test_resizing_from_many_threads_leaves_stdout_and_stderr_alone(photos):
    """img2dataset's Resizer swaps fds 1/2 to /dev/null around each call; from many threads that used
    to leave the process writing into /dev/null. Our wrapper must keep the fds where they were."""
    import os

    from facecorpus.download.images import check_image

    before = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)]
    open_fds = len(os.listdir("/proc/self/fd"))
    settings = ResizeSettings(mode="keep_ratio_largest", size=128)
    with ThreadPoolExecutor(16) as pool:
        sizes = list(pool.map(lambda _: check_image(photos["t1.jpg"][0], settings).width, range(64)))
    assert sizes == [128] * 64
    assert [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)] == before
    assert len(os.listdir("/proc/self/fd")) <= open_fds + 2
