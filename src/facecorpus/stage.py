"""The unit of work that flows through the Beam graph, and the base every stage is built on.

A `WorkItem` carries one input from its source to the sink: the `Sample` it is becoming, as a draft
that stages fill, plus typed fields for what stages hand each other. A `Stage` is a
Beam DoFn with two outputs: the main output (items that go on) and `REJECTS` (one `Reject` line per
item that stops). Stage code, and the pure functions it calls, raise `rejection.Rejected`; the base
class turns it into the reject line, counts kept and rejected items per reason (and per QA category)
in Beam metrics, and turns unexpected exceptions into `internal_error` rejects, so a bad input never
kills a job.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_origin

import apache_beam as beam
from apache_beam.metrics import Metrics
from pydantic import BaseModel, ConfigDict, Field

from . import progress
from . import storage as _storage  # noqa: F401 - every worker process: Beam's s3:// shares boto3 clients
from .records import AttributeValue, Face, Provenance, Reject, Sample, SourceFaces
from .rejection import Rejected, Rejection

if TYPE_CHECKING:  # the types of the hand-over fields; never validated, so never resolved at run time
    from .faces.given import GivenFaces
    from .generation.outcome import BatchContext, GenerationOutcome
    from .prompting.render import RenderedPrompt

REJECTS = "rejects"
METRICS_NAMESPACE = "facecorpus"
log = logging.getLogger("facecorpus")


#: provenance fields without a value until generation (prompt, generator) or the run (the rest) sets them
_PROVENANCE_UNSET = [name for name, f in Provenance.model_fields.items() if f.is_required()]


def _draft(cls: type[BaseModel], values: dict[str, Any], into: BaseModel | None = None) -> Any:
    """An instance of `cls` holding `values` (defaults for the rest), without validation. Does what
    pydantic's `model_construct` does, minus its signature inspection of every default factory
    (milliseconds per item)."""
    unknown = set(values) - set(cls.model_fields)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    fields: dict[str, Any] = {}
    for name, f in cls.model_fields.items():
        if name in values:
            fields[name] = values[name]
        elif f.default_factory is not None:
            fields[name] = f.default_factory()  # type: ignore[call-arg]
        elif f.is_required():  # filled by a later stage: nothing yet
            fields[name] = [] if get_origin(f.annotation) is list else None
        else:
            fields[name] = f.default
    made = into if into is not None else cls.__new__(cls)
    object.__setattr__(made, "__dict__", fields)
    object.__setattr__(made, "__pydantic_fields_set__", set(values))
    object.__setattr__(made, "__pydantic_extra__", None)
    object.__setattr__(made, "__pydantic_private__", None)
    return made


#: what the record says when a generator did not fill a provenance field
_PROVENANCE_UNKNOWN = {"generator": "unknown", "prompt_set": "unknown", "prompt_version": "unknown", "prompt_sha256": "0" * 64}


class WorkItem(Sample):
    """One input on its way through the stages: the `Sample` it is becoming, as a draft.

    The record is declared once, as `records.Sample`; a WorkItem has all its fields (so a field added
    there exists here, is copied into the written record and is in its JSON schema) but is never
    validated while stages fill it: `image`, `caption` are None and `qa` empty until their stage sets
    them, and `provenance` holds what generation sets (generator, prompt, model, usage). `to_sample`
    validates it once, in stage `validate`. Only `key` and `source` are set by every source.

    The fields below are not part of the record (never written): what stages hand each other.
    """

    model_config = ConfigDict(defer_build=True, arbitrary_types_allowed=True)

    #: dataset labels, already normalised ('label' source); faces/generation read these
    labels: dict[str, AttributeValue] = Field(default_factory=dict, exclude=True)
    #: raw input bytes as read (sources set it, the image stage consumes it)
    data: bytes | None = Field(default=None, exclude=True, repr=False)
    #: the image as it will be stored in the shard (RGB JPEG); set by the image stage
    jpeg: bytes | None = Field(default=None, exclude=True, repr=False)
    #: decoded RGB uint8 array (H, W, 3); dropped before the sink
    pixels: Any = Field(default=None, exclude=True, repr=False)
    #: the source file's own bytes when it is a JPEG, kept only for `generation.openai.image.reencode: false`
    #: (generation sends them unchanged, as FairFaceGPT did); dropped once the prompt is rendered
    source_jpeg: bytes | None = Field(default=None, exclude=True, repr=False)
    #: face boxes the source gave (FaRL, FaceCaption-15M, CelebA landmarks): read by the faces stage
    given_faces: SourceFaces | None = Field(default=None, exclude=True)
    #: what the source knows of its faces' size: "crop" = one large face fills the image (faces/priors.py)
    face_size: str | None = Field(default=None, exclude=True)
    #: faces stage: the given faces scaled to the pixels (for its counters), and the models' outcome
    #: waiting for selection (the faces found, or why none could be)
    given_scaled: GivenFaces | None = Field(default=None, exclude=True, repr=False)
    found_faces: list[Face] | Rejection | None = Field(default=None, exclude=True, repr=False)
    #: generate stage (openai): the rendered requests, the Batch API's report, the LLM's outcome
    prompt: RenderedPrompt | None = Field(default=None, exclude=True, repr=False)
    batch: BatchContext | None = Field(default=None, exclude=True, repr=False)
    llm_outcome: GenerationOutcome | None = Field(default=None, exclude=True, repr=False)

    def __init__(self, **values: Any) -> None:
        # A draft is not validated (see the class docstring): its values are taken as they are. Unknown
        # names are still mistakes, as they would be for a dataclass.
        values.setdefault("provenance", _draft(Provenance, dict.fromkeys(_PROVENANCE_UNSET)))
        _draft(type(self), values, into=self)

    def to_sample(self, run: dict[str, Any]) -> Sample:
        """The record, validated (pydantic's ValidationError when it is not one). `run` fills the
        provenance that only the run knows: pipeline_version, recipe, recipe_sha256, created_at."""
        record = {name: getattr(self, name) for name in Sample.model_fields}
        record["attributes"] = self.attributes or self.labels
        record["caption"] = self.caption or ""
        made = {name: getattr(self.provenance, name, None) for name in Provenance.model_fields}
        for name, unknown in _PROVENANCE_UNKNOWN.items():  # a generator that did not say (as before)
            made[name] = made[name] or unknown
        record["provenance"] = {**made, **run}
        return Sample.model_validate(record)

    def without_pixels(self) -> WorkItem:
        self.pixels = None
        self.data = None
        self.source_jpeg = None
        return self

    def copy_as(self, key: str, **update: Any) -> WorkItem:
        """A copy under another key (one sample per face), with its own labels, flags and provenance."""
        fresh = {"labels": dict(self.labels), "flags": list(self.flags), "provenance": self.provenance.model_copy(deep=True)}
        return self.model_copy(update={**fresh, "key": key, **update})


@dataclass
class ShardSample:
    """What stage `validate` hands on (to the judge, if any, and the sink): the validated record and
    its JPEG; `members` are its files in the shard."""

    sample: Sample
    jpeg: bytes

    @property
    def key(self) -> str:
        return self.sample.key

    def members(self) -> list[tuple[str, bytes]]:
        record = self.sample.model_dump_json(exclude_none=False).encode("utf-8")
        return [
            (f"{self.key}.jpg", self.jpeg),
            (f"{self.key}.json", record),
            (f"{self.key}.txt", self.sample.caption.encode("utf-8")),
        ]


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
    """Beam counters for one stage: `<stage>.in` (items it finished with), `<stage>.kept` (items it
    passed on; one input may give several), `<stage>.rejected`, `reason.<reason>`; the same figures
    go to the live progress view (progress.py) as `in.<stage>`, `out.<stage>`, `rejected.<stage>`
    and `reason.<stage>.<reason>`. Each input calls `kept` or `rejected` once."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._in = Metrics.counter(METRICS_NAMESPACE, f"{stage}.in")
        self._kept = Metrics.counter(METRICS_NAMESPACE, f"{stage}.kept")
        self._rejected = Metrics.counter(METRICS_NAMESPACE, f"{stage}.rejected")
        self._by_reason: dict[str, Any] = {}

    def kept(self, n: int = 1) -> None:
        self._in.inc()
        self._kept.inc(n)
        progress.add(f"in.{self.stage}")
        progress.add(f"out.{self.stage}", n)

    def rejected(self, reason: str) -> None:
        self._in.inc()
        self._rejected.inc()
        c = self._by_reason.get(reason)
        if c is None:
            c = self._by_reason[reason] = Metrics.counter(METRICS_NAMESPACE, f"reason.{reason}")
        c.inc()
        progress.add(f"in.{self.stage}")
        progress.add(f"rejected.{self.stage}")
        progress.add(f"reason.{self.stage}.{reason}")

    def count(self, name: str, n: int = 1) -> None:
        Metrics.counter(METRICS_NAMESPACE, f"{self.stage}.{name}").inc(n)
        progress.add(f"{self.stage}.{name}", n)


def count_inputs(n: int = 1) -> None:
    """Every input unit that enters a run is counted once here (stats.json `inputs`)."""
    Metrics.counter(METRICS_NAMESPACE, "inputs").inc(n)
    progress.add("inputs", n)


class Stage(beam.DoFn):
    """Base of the per-item stages. Subclasses set `name` and implement `run(item)`.

    `run` yields zero or more items (zero is only allowed together with raising `Rejected`; a stage
    that splits an item, like one-sample-per-face, yields several and counts the extra inputs).
    """

    name = "stage"
    #: the name its counters and live-progress row go by when that is not `name` (a stage in two halves,
    #: like image's, would otherwise count each item in twice)
    counted_as: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self._counters: Counters | None = None

    @property
    def counters(self) -> Counters:
        if self._counters is None:
            self._counters = Counters(self.counted_as or self.name)
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
    """Logs a line every `every` seconds with how many items this worker has seen: worker logs for
    remote runners (Dataflow). Silent on local runs, where progress.py shows the whole run instead."""

    def __init__(self, what: str, every: float = 10.0) -> None:
        self.what = what
        self.every = every
        self.n = 0
        self.t0 = time.monotonic()
        self.last = self.t0

    def tick(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every and not os.environ.get(progress.ENV_DIR):
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            log.info("%s: %d so far (%.1f/s on this worker)", self.what, self.n, rate)
