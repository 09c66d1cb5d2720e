"""Stage 'validate': turn a finished WorkItem into a schema-valid `Sample` ready for the sink, and hold it
to the recipe's record rules (refusals, bounds, categories, charset, label consistency; see record_checks).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import ValidationError

from ..records import Sample
from ..rejection import Rejected
from ..stage import ShardSample, Stage, WorkItem
from .record_checks import RecordRules, check_record, verdict


def build_sample(item: WorkItem, recipe_name: str, recipe_sha256: str, version: str, created_at: datetime) -> Sample:
    """The record for an item; raises Rejected('no_qa' | 'schema_invalid') when it cannot be one."""
    if not item.qa:
        raise Rejected("no_qa", "no question-answer pair could be generated from what is known about this image")
    if item.image is None or item.jpeg is None:
        raise Rejected("schema_invalid", "the item reached validation without a checked image")
    run = {"pipeline_version": version, "recipe": recipe_name, "recipe_sha256": recipe_sha256, "created_at": created_at}
    try:
        return item.to_sample(run)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Rejected("schema_invalid", f"the record does not fit the schema at {where}: {first['msg']}") from None


class ValidateSample(Stage):
    """WorkItem → ShardSample, or a reject with the first finding of `check_record` (when rules are given)."""

    name = "validate"

    def __init__(
        self, recipe_name: str, recipe_sha256: str, version: str, created_at: datetime, rules: RecordRules | None = None
    ) -> None:
        super().__init__()
        self.recipe_name = recipe_name
        self.recipe_sha256 = recipe_sha256
        self.version = version
        self.created_at = created_at
        self.rules = rules

    def run(self, item: WorkItem) -> Iterable[ShardSample]:  # type: ignore[override]
        sample = build_sample(item, self.recipe_name, self.recipe_sha256, self.version, self.created_at)
        if self.rules is not None:
            bad, flags = verdict(check_record(sample, self.rules), self.rules)
            if bad is not None:
                raise Rejected.of(bad)  # the Stage base counts it per category and writes the categories
            for flag in flags:
                self.counters.count(f"flag.{flag.replace(':', '.')}")
            sample.flags.extend(f for f in flags if f not in sample.flags)
        assert item.jpeg is not None
        yield ShardSample(sample=sample, jpeg=item.jpeg)
