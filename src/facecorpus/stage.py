"""The unit of work that flows through the Beam graph, and the base every stage is built on.

A `WorkItem` carries one input from its source to the sink; stages fill in its fields. A `Stage` is a
Beam DoFn with two outputs: the main output (items that go on) and `REJECTS` (one `Reject` line per
item that stops). Stage code, and the pure functions it calls, raise `rejection.Rejected`; the base
class turns it into the reject line, counts kept and rejected items per reason (and per QA category)
in Beam metrics, and turns unexpected exceptions into `internal_error` rejects, so a bad input never
kills a job.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from .records import (
    AnnotationInfo,
    AttributeConflict,
    AttributeValue,
    Crop,
    Face,
    ImageInfo,
    LLMUsage,
    QAPair,
    Reject,
    SourceInfo,
)
from .rejection import Rejected, Rejection

REJECTS = "rejects"
METRICS_NAMESPACE = "facecorpus"
log = logging.getLogger("facecorpus")


@dataclass
class WorkItem:
    """One input on its way through the stages. Only `key` and `source` are set by every source."""

    key: str
    source: SourceInfo
    #: dataset labels, already normalised ('label' source); faces/generation read these
    labels: dict[str, AttributeValue] = field(default_factory=dict)
    #: raw input bytes as read (sources set it, the image stage consumes it)
    data: bytes | None = None
    #: set by the image stage
    image: ImageInfo | None = None
    jpeg: bytes | None = None  # the image as it will be stored in the shard (RGB JPEG)
    pixels: Any = None  # decoded RGB uint8 array (H, W, 3); transient, dropped before the sink
    #: set by the faces stage
    faces: list[Face] = field(default_factory=list)
    primary_face: int | None = None
    crop: Crop | None = None
    #: merged attributes (labels ∪ models) and disagreements
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    attribute_conflicts: list[AttributeConflict] = field(default_factory=list)
    #: set by the LLM's attribute annotation (generation/annotation.py)
    annotations: dict[str, AttributeValue] = field(default_factory=dict)
    annotation: AnnotationInfo | None = None
    #: set by generation
    caption: str | None = None
    qa: list[QAPair] = field(default_factory=list)
    generator: str | None = None
    llm_model: str | None = None
    prompt_set: str | None = None
    prompt_version: str | None = None
    prompt_sha256: str | None = None
    usage: LLMUsage = field(default_factory=LLMUsage)
    flags: list[str] = field(default_factory=list)
    #: free-form facts stages hand to later stages (not stored)
    context: dict[str, Any] = field(default_factory=dict)

    def without_pixels(self) -> WorkItem:
        self.pixels = None
        self.data = None
        return self


def make_reject(
    item: WorkItem | None,
    stage: str,
    rejection: Rejection,
    source_id: str | None = None,
    dataset: str | None = None,
    url: str | None = None,
    key: str | None = None,
) -> Reject:
    """The reject line for `rejection`: the item's identity (or the one given, for inputs that are not
    items: source rows, parked images) and the stage that stopped it."""
    return Reject(
        source_id=source_id if source_id is not None else (item.source.id if item else "?"),
        dataset=dataset if dataset is not None else (item.source.dataset if item else None),
        key=key if key is not None else (item.key if item else None),
        stage=stage,
        reason=rejection.reason,
        detail=rejection.detail,
        retryable=rejection.retryable,
        url=url if url is not None else (item.source.url if item else None),
        categories=list(rejection.categories),
    )


class Counters:
    """Beam counters for one stage: `<stage>.kept`, `<stage>.rejected`, `reason.<reason>`."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._kept = Metrics.counter(METRICS_NAMESPACE, f"{stage}.kept")
        self._rejected = Metrics.counter(METRICS_NAMESPACE, f"{stage}.rejected")
        self._by_reason: dict[str, Any] = {}

    def kept(self, n: int = 1) -> None:
        self._kept.inc(n)

    def rejected(self, reason: str) -> None:
        self._rejected.inc()
        c = self._by_reason.get(reason)
        if c is None:
            c = self._by_reason[reason] = Metrics.counter(METRICS_NAMESPACE, f"reason.{reason}")
        c.inc()

    def count(self, name: str, n: int = 1) -> None:
        Metrics.counter(METRICS_NAMESPACE, f"{self.stage}.{name}").inc(n)


def count_inputs(n: int = 1) -> None:
    """Every input unit that enters a run is counted once here (stats.json `inputs`)."""
    Metrics.counter(METRICS_NAMESPACE, "inputs").inc(n)


class Stage(beam.DoFn):
    """Base of the per-item stages. Subclasses set `name` and implement `run(item)`.

    `run` yields zero or more items (zero is only allowed together with raising `Rejected`; a stage
    that splits an item, like one-sample-per-face, yields several and counts the extra inputs).
    """

    name = "stage"

    def __init__(self) -> None:
        super().__init__()
        self._counters: Counters | None = None

    @property
    def counters(self) -> Counters:
        if self._counters is None:
            self._counters = Counters(self.name)
        return self._counters

    def run(self, item: WorkItem) -> Iterable[WorkItem]:  # pragma: no cover - abstract
        raise NotImplementedError

    def reject(self, item: WorkItem, rejection: Rejection) -> beam.pvalue.TaggedOutput:
        """`rejection` as this stage's reject line on the `REJECTS` output (and in its counters)."""
        self.counters.rejected(rejection.reason)
        for category in rejection.categories:
            self.counters.count(f"{rejection.reason}.{category}")
        return beam.pvalue.TaggedOutput(REJECTS, make_reject(item, self.name, rejection))

    def process(self, item: WorkItem) -> Iterator[Any]:
        try:
            produced = list(self.run(item))
        except Rejected as r:
            yield self.reject(item, r.rejection)
            return
        except Exception as e:  # a bug or an input we did not foresee: reject, keep the job alive
            log.warning("stage %s failed on %s: %s", self.name, item.source.id, traceback.format_exc(limit=3))
            yield self.reject(item, Rejection("internal_error", f"{type(e).__name__}: {e}"[:500], retryable=True))
            return
        if not produced:
            yield self.reject(item, Rejection("dropped", f"stage {self.name} produced nothing for this input"))
            return
        self.counters.kept(len(produced))
        yield from produced


class Progress:
    """Logs a line every `every` seconds with how many items this worker has seen (long runs stay visible)."""

    def __init__(self, what: str, every: float = 10.0) -> None:
        self.what = what
        self.every = every
        self.n = 0
        self.t0 = time.monotonic()
        self.last = self.t0

    def tick(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            log.info("%s: %d so far (%.1f/s on this worker)", self.what, self.n, rate)
