"""Fleet-wide politeness: keyed lanes, the lane scheduler, robots.txt — and a multi-process Beam run
whose loopback host never sees more than `per_domain` connections at once."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facecorpus.download.config import DownloadConfig
from facecorpus.download.download_rows import default_user_agent
from facecorpus.download.fetch import Fetcher, FetchSettings
from facecorpus.download.lanes import LaneScheduler, host_of, lane_of
from facecorpus.download.politeness import DomainGates
from tests.support.helpers import run_cli, write_recipe
from tests.support.loopback_web import WebServer


@pytest.fixture()
def web():
    with WebServer("127.0.0.1") as a, WebServer("127.0.0.2") as blocked:
        a.set_blocked_target(blocked.base)
        yield a, blocked


def robots_fetcher(**kw) -> Fetcher:
    settings = FetchSettings(user_agent=default_user_agent(DownloadConfig()), allow_networks=("127.0.0.1/32",),
                             timeout_s=2.0, deadline_s=10.0, retries=kw.pop("retries", 0), backoff_s=0.01,
                             max_backoff_s=kw.pop("max_backoff_s", 5.0), robots_txt=True, **kw)
    return Fetcher(settings, DomainGates(4))


# ------------------------------------------------------------------------------------------ lanes


def test_a_host_never_gets_more_lanes_than_per_domain():
    urls = [f"http://cdn.example.com/img/{i}.jpg" for i in range(5000)]
    lanes = {lane_of(u, 3) for u in urls}
    assert lanes == {"cdn.example.com#0", "cdn.example.com#1", "cdn.example.com#2"}  # hot host: exactly 3 keys
    assert lane_of("HTTP://CDN.Example.COM./a.jpg", 3).startswith("cdn.example.com#")
    assert host_of("file:///etc/passwd") == "" and host_of("http://[::1") == ""  # no host: rejected by the fetcher


def test_scheduler_runs_one_request_per_lane_and_bounds_what_it_holds():
    open_now: dict[str, int] = {}
    peak_lane, peak_all, lock = [0], [0], threading.Lock()

    def work(row: tuple[str, int]) -> tuple[str, int]:
        lane, _ = row
        with lock:
            open_now[lane] = open_now.get(lane, 0) + 1
            peak_lane[0] = max(peak_lane[0], open_now[lane])
            peak_all[0] = max(peak_all[0], sum(open_now.values()))
        time.sleep(0.01)
        with lock:
            open_now[lane] -= 1
        return row

    held_seen = []
    with ThreadPoolExecutor(16) as pool:
        sched = LaneScheduler(pool, work, max_running=6, max_held=10)
        rows = [(f"h{i % 4}#0", i) for i in range(60)]  # 4 lanes, 15 rows each
        done = []
        for row in rows:
            done += list(sched.add(row[0], row))
            held_seen.append(sched.held)
        done += list(sched.drain())
    assert sorted(done) == sorted(rows)  # every row once
    assert peak_lane[0] == 1  # a lane never had two requests open
    assert peak_all[0] == 4  # 4 lanes ran side by side (max_running 6 is more than there are lanes)
    assert max(held_seen) <= 10


def test_scheduler_spaces_a_lane_by_its_pause():
    starts: list[float] = []

    def work(row: int) -> int:
        starts.append(time.monotonic())
        return row

    with ThreadPoolExecutor(4) as pool:
        sched = LaneScheduler(pool, work, max_running=4, max_held=8, pause_after=lambda _out: 0.3)
        done = [*sched.add("h#0", 1), *sched.add("h#0", 2), *sched.add("h#0", 3), *sched.drain()]
    assert sorted(done) == [1, 2, 3]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) == 2 and min(gaps) >= 0.29, gaps


# ------------------------------------------------------------------------------------------ robots.txt


def test_robots_txt_disallow_is_obeyed_and_read_once_per_origin(web):
    a, _ = web
    a.set_robots("User-agent: facecorpus\nDisallow: /img/astronaut\nCrawl-delay: 1.5\n\nUser-agent: *\nDisallow: /\n")
    f = robots_fetcher()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(f.fetch, [a.url("/img/t1.jpg")] * 6 + [a.url("/img/astronaut.png")] * 2))
    ok, refused = results[:6], results[6:]
    assert all(r.ok and r.crawl_delay == 1.5 for r in ok)
    assert {(r.reason, r.retryable) for r in refused} == {("robots_disallowed", False)}
    assert "robots.txt disallows /img/astronaut.png" in refused[0].detail
    assert a.paths().count("/robots.txt") == 1  # one fetch for eight URLs on eight threads
    assert "/img/astronaut.png" not in a.paths()  # a disallowed image is never requested


def test_other_bots_rules_do_not_apply_and_a_missing_robots_txt_allows_everything(web):
    a, _ = web
    a.set_robots("User-agent: otherbot\nDisallow: /\n")
    assert robots_fetcher().fetch(a.url("/img/t1.jpg")).ok
    a.set_robots("gone", status=404)
    assert robots_fetcher().fetch(a.url("/img/t1.jpg")).ok


def test_robots_txt_server_error_means_complete_disallow_retryable(web):
    a, _ = web
    a.set_robots("busy", status=503)
    res = robots_fetcher(retries=1).fetch(a.url("/img/t1.jpg"))
    assert (res.reason, res.retryable) == ("robots_unreachable", True)
    assert "/img/t1.jpg" not in a.paths()
    assert a.paths().count("/robots.txt") == 2  # the robots fetch retried once; the image fetch did not retry it


def test_robots_txt_of_a_redirect_target_on_a_blocked_address_is_never_fetched(web):
    a, blocked = web
    res = robots_fetcher().fetch(a.url("/to-blocked"))
    assert (res.reason, res.retryable) == ("blocked_address", False)
    assert blocked.paths() == []  # neither its robots.txt nor the image


def test_huge_robots_txt_is_read_up_to_its_cap(web):
    a, _ = web
    a.set_robots("User-agent: *\nDisallow: /img/t1\n" + "# padding\n" * 80_000)  # ~800 KB
    res = robots_fetcher().fetch(a.url("/img/t1.jpg"))
    assert res.reason == "robots_disallowed"


# ------------------------------------------------------------------------------------------ the whole job


def test_per_domain_holds_across_four_worker_processes(web, tmp_path):
    """A LAION run on FnApiRunner with 4 worker processes: one loopback host, `per_domain: 2`, 8 threads.

    The download step would take 8 requests at once if it could (each is slowed to 150 ms); the server
    counts connections open at the same moment and must never see more than 2 — the robots.txt request
    included — yet must see 2 (the cap is used). With the former per-process cap, each of the 4
    processes held its own 2.
    """
    a, _ = web
    a.set_delay(0.15)
    a.set_robots("User-agent: *\nAllow: /\n")
    n = 40
    parquet = tmp_path / "laion.parquet"
    pq.write_table(pa.table({
        "SAMPLE_ID": pa.array(range(1, n + 1), pa.int64()),
        "URL": [a.url(f"/bench/{i}.jpg") for i in range(1, n + 1)],
        "TEXT": ["a photo"] * n, "NSFW": ["UNLIKELY"] * n,
    }), parquet, row_group_size=5)  # 8 read units, spread over the workers
    recipe = write_recipe(tmp_path / "r.yaml", {
        "name": "politeness",
        "sources": [{"type": "laion", "path": str(parquet), "download": {
            "allow_networks": ["127.0.0.1/32"], "threads": 8, "per_domain": 2, "retries": 0, "timeout_s": 5,
            "resize_mode": "no", "batch_size": 16}}],
        "image": {"min_side": 32},
        "generation": {"generator": "templates"},
        "validation": {"dedup": {"exact": False, "near": False}},  # one photo behind every URL
    })
    out = tmp_path / "out"
    proc = run_cli("run", str(recipe), "--out", str(out), "--",
                   "--direct_running_mode=multi_processing", "--direct_num_workers=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["written"] == n and stats["rejected"] == 0
    assert len([p for p in a.paths() if p.startswith("/bench/")]) == n
    assert a.peak == 2, f"server saw {a.peak} connections at once with per_domain 2"
