"""The Beam step that turns rows with a URL into WorkItems holding image bytes, or into Rejects.

`PoliteDownload` takes `(lane, WebRow)` pairs keyed by `key_by_lane` (lanes.py: at most `per_domain`
lanes per host, one request per lane at a time, so the cap holds for the whole job) and fetches many
lanes concurrently on a thread pool shared by the whole worker process. Counters are incremented on
the DoFn's own thread (Beam's metrics are thread-local), one per outcome.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.coders import FloatCoder
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import GlobalWindows

from .. import __version__
from ..keys import make_key
from ..records import Reject, SourceFaces, SourceInfo
from ..rejection import Rejection
from ..stage import REJECTS, Counters, Progress, WorkItem, make_reject
from .config import DownloadConfig
from .fetch import Fetcher, FetchSettings
from .images import (
    CheckedImage,
    NotAnImage,
    ResizeSettings,
    check_image,
    exif_orientation,
    make_upright,
    map_faces,
)
from .lanes import LaneScheduler, lane_of
from .politeness import worker_gates

log = logging.getLogger("facecorpus")
STAGE = "download"

Scalar = str | int | float | bool | None


@dataclass
class WebRow:
    """One row of a URL list on its way to the downloader (what the parquet said about it)."""

    source_id: str
    url: str
    dataset: str
    order: tuple[int, int] = (0, 0)  # (file index, row index): the first of duplicate ids wins
    split: str | None = None
    licence: str | None = None
    text: str | None = None  # web alt-text: untrusted, data only
    source_caption: str | None = None
    extra: dict[str, Scalar] = field(default_factory=dict)
    #: faces a dataset already found ({box: [x1,y1,x2,y2], score, landmarks5}), in the stored image's pixels
    given_faces: list[dict] | None = None
    given_faces_source: str | None = None
    #: already downloaded (img2dataset output): the tar holding the image, its member key, or why it failed
    archive: str | None = None
    member: str | None = None
    fetch_error: Rejection | None = None  # img2dataset could not download it


def default_user_agent(cfg: DownloadConfig) -> str:
    """An honest User-Agent: who we are, why, what we honour, and how to reach the operator."""
    contact = f"; +{cfg.contact}" if cfg.contact else ""
    return (
        f"facecorpus/{__version__} (image-text research dataset builder; "
        f"honours X-Robots-Tag {'/'.join(cfg.optout_directives) or 'none'}{contact})"
    )


def worker_fetcher(cfg: DownloadConfig) -> Fetcher:
    """The process-wide fetcher for a download config: one set of per-host gates and one robots.txt cache."""
    with _pools_lock:
        key = repr(cfg.model_dump(mode="json"))
        fetcher = _fetchers.get(key)
        if fetcher is None:
            fetcher = _fetchers[key] = Fetcher(fetch_settings(cfg), worker_gates(cfg.per_domain))
        return fetcher


def fetch_settings(cfg: DownloadConfig) -> FetchSettings:
    return FetchSettings(
        user_agent=cfg.user_agent or default_user_agent(cfg),
        user_agent_token=cfg.user_agent_token,
        optout_directives=tuple(cfg.optout_directives),
        timeout_s=cfg.timeout_s,
        deadline_s=cfg.deadline_s,
        retries=cfg.retries,
        backoff_s=cfg.backoff_s,
        max_backoff_s=cfg.max_backoff_s,
        max_redirects=cfg.max_redirects,
        max_bytes=cfg.max_bytes,
        verify_tls=cfg.verify_tls,
        allow_networks=tuple(cfg.allow_networks),
        robots_txt=cfg.robots_txt,
    )


def resize_settings(cfg: DownloadConfig) -> ResizeSettings:
    return ResizeSettings(mode=cfg.resize_mode, size=cfg.image_size, only_if_bigger=cfg.resize_only_if_bigger)


_pools: dict[int, ThreadPoolExecutor] = {}
_fetchers: dict[str, Fetcher] = {}
_pools_lock = threading.RLock()


def worker_pool(threads: int) -> ThreadPoolExecutor:
    """One download pool per worker process and size: Beam may run many DoFn instances in one process,
    and `threads` is meant as the process's number of requests in flight, not each instance's."""
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="facecorpus-download")
        return pool


@dataclass
class _Outcome:
    item: WorkItem | None = None
    reject: Reject | None = None
    attempts: int = 0
    redirects: int = 0
    nbytes: int = 0
    retry_after: float | None = None
    crawl_delay: float | None = None


def row_reject(row: WebRow, rejection: Rejection, stage: str = STAGE) -> Reject:
    """The reject line for `row` (its key, id and URL filled in)."""
    return make_reject(None, stage, rejection, source_id=row.source_id, dataset=row.dataset, url=row.url or None,
                       key=make_key(row.dataset, row.source_id))


def item_from_bytes(row: WebRow, data: bytes, resize: ResizeSettings | None, final_url: str | None = None,
                    content_type: str | None = None) -> WorkItem | Reject:
    """Image bytes of `row` → its WorkItem: turned upright, checked and resized (images.check_image)
    (`resize` None: taken as they are, e.g. already written by img2dataset), given faces moved along."""
    orientation, raw_size = exif_orientation(data)
    if orientation != 1:
        data = make_upright(data)
    if resize is not None:
        try:
            checked = check_image(data, resize)
        except NotAnImage as e:
            served = f" (served as {content_type})" if content_type else ""
            return row_reject(row, Rejection("not_image", f"{e}{served}"))
    else:
        _, size = exif_orientation(data) if orientation != 1 else (1, raw_size)
        if size is None:
            return row_reject(row, Rejection("not_image", "the stored bytes are not an image the decoder knows"))
        checked = CheckedImage(data=data, width=size[0], height=size[1], original_width=size[0], original_height=size[1])
    extra: dict[str, Scalar] = dict(row.extra)
    extra.update({"original_width": checked.original_width, "original_height": checked.original_height})
    if final_url and final_url != row.url:
        extra["final_url"] = final_url
    if orientation != 1:
        extra["exif_orientation_applied"] = orientation
    given = None
    if row.given_faces is not None:
        frame = raw_size or (checked.original_width, checked.original_height)
        given = SourceFaces(faces=map_faces(row.given_faces, orientation, frame, (checked.width, checked.height)),
                            size=[checked.width, checked.height], source=row.given_faces_source)
    return WorkItem(
        key=make_key(row.dataset, row.source_id),
        source=SourceInfo(
            dataset=row.dataset, id=row.source_id, split=row.split, url=row.url or None, licence=row.licence,
            text=row.text, source_caption=row.source_caption, extra=extra,
        ),
        data=checked.data,
        given_faces=given,
    )


def download_row(row: WebRow, fetcher: Fetcher, resize: ResizeSettings) -> _Outcome:
    """Fetch and check one row's image. Never raises: every failure is a Reject with a reason."""
    try:
        res = fetcher.fetch(row.url)
        pacing = {"retry_after": res.retry_after, "crawl_delay": res.crawl_delay}
        if not res.ok:
            assert res.rejection is not None
            return _Outcome(reject=row_reject(row, res.rejection), attempts=res.attempts, **pacing)
        assert res.data is not None
        made = item_from_bytes(row, res.data, resize, res.final_url, res.content_type)
        if isinstance(made, Reject):
            return _Outcome(reject=made, attempts=res.attempts, **pacing)
        return _Outcome(item=made, attempts=res.attempts, redirects=res.redirects, nbytes=len(res.data), **pacing)
    except Exception as e:  # a bug or something unforeseen: one reject, the batch goes on
        log.warning("download of %s failed: %s", row.url, traceback.format_exc(limit=3))
        return _Outcome(reject=row_reject(row, Rejection("internal_error", f"{type(e).__name__}: {e}"[:500], True)))


class PoliteDownload(beam.DoFn):
    """(lane, WebRow) → WorkItems (image bytes) on the main output, Rejects on REJECTS.

    Keyed and stateful, so the runner never has one lane in two places at once (lanes.py): with one
    request per lane at a time, `per_domain` holds for the whole job. The state keeps a lane's pause
    (a Retry-After, a Crawl-delay) as wall-clock time, so a lane that moves to another worker between
    bundles still waits. Rows of many lanes download at once on the process's thread pool.
    """

    NOT_BEFORE = ReadModifyWriteStateSpec("not_before", FloatCoder())

    def __init__(self, cfg: DownloadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._fetcher: Fetcher | None = None
        self._resize: ResizeSettings | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._progress: Progress | None = None
        self._lanes: LaneScheduler[WebRow, _Outcome] | None = None

    def setup(self) -> None:
        self._fetcher = worker_fetcher(self.cfg)
        self._resize = resize_settings(self.cfg)
        self._pool = worker_pool(self.cfg.threads)
        self._progress = Progress("urls downloaded")

    def start_bundle(self) -> None:
        fetcher, resize = self._fetcher, self._resize
        assert fetcher is not None and resize is not None and self._pool is not None
        self._lanes = LaneScheduler(self._pool, lambda row: download_row(row, fetcher, resize), self.cfg.threads,
                                    self.cfg.batch_size, pause_after=_pause_after)

    def process(self, element: tuple[str, WebRow], not_before: Any = beam.DoFn.StateParam(NOT_BEFORE)) -> Iterator[Any]:
        assert self._lanes is not None
        lane, row = element
        recorded = not_before.read()
        if recorded:
            self._lanes.pause(lane, recorded)
        counters = Counters(STAGE)
        for out in self._lanes.add(lane, row):
            yield from self._emit(out, counters)
        until = self._lanes.not_before(lane)
        if until is not None and until != recorded:
            not_before.write(until)

    def finish_bundle(self) -> Iterator[Any]:
        assert self._lanes is not None
        counters = Counters(STAGE)
        for out in self._lanes.drain():
            for produced in self._emit(out, counters):
                if isinstance(produced, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(produced.tag, GlobalWindows.windowed_value(produced.value))
                else:
                    yield GlobalWindows.windowed_value(produced)

    def _emit(self, out: _Outcome, counters: Counters) -> Iterator[Any]:
        if self._progress is not None:
            self._progress.tick()
        if out.attempts > 1:
            counters.count("retries", out.attempts - 1)
        if out.reject is not None:
            counters.rejected(out.reject.reason)
            yield beam.pvalue.TaggedOutput(REJECTS, out.reject)
            return
        counters.kept()
        counters.count("bytes", out.nbytes)
        if out.redirects:
            counters.count("redirected")
        yield out.item


def _pause_after(out: _Outcome) -> float | None:
    """How long a lane waits after this request: the server's Retry-After, else robots.txt's Crawl-delay."""
    return out.retry_after or out.crawl_delay


def key_by_lane(rows: beam.PCollection, per_domain: int) -> beam.PCollection:
    """WebRow → (lane, WebRow): the keys PoliteDownload runs under."""
    return rows | "ByLane" >> beam.Map(lambda r: (lane_of(r.url, per_domain), r))
