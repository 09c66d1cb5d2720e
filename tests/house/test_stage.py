"""The Stage base: how plain domain errors (`Rejected`) and surprises become reject lines."""

from __future__ import annotations

import apache_beam as beam

from facecorpus.image_check import decode_image
from facecorpus.image_config import ImageConfig
from facecorpus.records import SourceInfo
from facecorpus.rejection import Rejected, Rejection
from facecorpus.stage import REJECTS, Stage, WorkItem


def _item() -> WorkItem:
    return WorkItem(key="k1", source=SourceInfo(dataset="d", id="file.jpg", url="http://x/y.jpg"))


class _Judge(Stage):
    name = "judge"

    def __init__(self, outcome: object) -> None:
        super().__init__()
        self.outcome = outcome

    def run(self, item: WorkItem):  # noqa: ANN201
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        yield from self.outcome  # type: ignore[misc]


def _only_reject(stage: Stage):  # noqa: ANN202
    out = list(stage.process(_item()))
    assert len(out) == 1 and isinstance(out[0], beam.pvalue.TaggedOutput) and out[0].tag == REJECTS
    return out[0].value


def test_a_rejection_becomes_a_reject_line_with_the_stage_name_and_its_categories():
    line = _only_reject(_Judge(Rejected("refusal", "the pose answer refuses", categories=["pose", "detail"])))
    assert (line.stage, line.reason, line.detail, line.retryable) == ("judge", "refusal", "the pose answer refuses", False)
    assert line.categories == ["pose", "detail"]
    assert (line.key, line.source_id, line.dataset, line.url) == ("k1", "file.jpg", "d", "http://x/y.jpg")


def test_a_pure_function_raises_the_plain_domain_error_and_the_stage_carries_it_as_it_is():
    try:
        decode_image(b"definitely not an image", ImageConfig())
    except Rejected as e:
        raised = e
    assert raised.rejection == Rejection("not_image", raised.detail)
    assert _only_reject(_Judge(raised)).reason == "not_image"


def test_surprises_are_retryable_internal_errors_and_silence_is_a_dropped_reject():
    line = _only_reject(_Judge(KeyError("boom")))
    assert (line.reason, line.retryable) == ("internal_error", True) and "KeyError" in line.detail
    assert _only_reject(_Judge([])).reason == "dropped"


def test_kept_items_go_on_untouched():
    item = _item()
    assert list(_Judge([item]).process(_item())) == [item]
