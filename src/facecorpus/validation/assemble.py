"""Stage 'validate': turn a finished WorkItem into a schema-valid `Sample` ready for the sink, and hold it
to the recipe's record rules (refusals, bounds, categories, charset, label consistency; see record_checks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import apache_beam as beam
from pydantic import ValidationError

from ..records import Provenance, Sample
from ..sinks.shards import ShardSample
from ..stage import RejectItem, Stage, WorkItem
from .record_checks import RecordRules, check_record, verdict


def build_sample(item: WorkItem, recipe_name: str, recipe_sha256: str, version: str, created_at: datetime) -> Sample:
    """The record for an item; raises RejectItem('no_qa' | 'schema_invalid') when it cannot be one."""
    if not item.qa:
        raise RejectItem("no_qa", "no question-answer pair could be generated from what is known about this image")
    if item.image is None or item.jpeg is None:
        raise RejectItem("schema_invalid", "the item reached validation without a checked image")
    try:
        return Sample(
            key=item.key,
            source=item.source,
            image=item.image,
            crop=item.crop,
            faces=item.faces,
            primary_face=item.primary_face,
            attributes=item.attributes or item.labels,
            attribute_conflicts=item.attribute_conflicts,
            caption=item.caption or "",
            qa=item.qa,
            flags=item.flags,
            provenance=Provenance(
                generator=item.generator or "unknown",
                llm_model=item.llm_model,
                prompt_set=item.prompt_set or "unknown",
                prompt_version=item.prompt_version or "unknown",
                prompt_sha256=item.prompt_sha256 or "0" * 64,
                pipeline_version=version,
                recipe=recipe_name,
                recipe_sha256=recipe_sha256,
                created_at=created_at,
                usage=item.usage,
            ),
        )
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RejectItem("schema_invalid", f"the record does not fit the schema at {where}: {first['msg']}") from None


class AssembleSample(Stage):
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
        self._categories: list[str] = []  # QA categories of the current item's reject (one item at a time)

    def run(self, item: WorkItem) -> Iterable[ShardSample]:  # type: ignore[override]
        self._categories = []
        sample = build_sample(item, self.recipe_name, self.recipe_sha256, self.version, self.created_at)
        if self.rules is not None:
            bad, flags = verdict(check_record(sample, self.rules), self.rules)
            if bad is not None:
                self._categories = bad.categories
                for cat in bad.categories:
                    self.counters.count(f"{bad.reason}.{cat}")
                raise RejectItem(bad.reason, bad.detail)
            for flag in flags:
                self.counters.count(f"flag.{flag.replace(':', '.')}")
            sample.flags.extend(f for f in flags if f not in sample.flags)
        assert item.jpeg is not None
        yield ShardSample(sample=sample, jpeg=item.jpeg)

    def process(self, item: WorkItem) -> Iterator[Any]:
        for out in super().process(item):
            if isinstance(out, beam.pvalue.TaggedOutput) and self._categories:
                out.value.categories = list(self._categories)
            yield out
