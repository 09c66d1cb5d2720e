"""Every record-level reject reason, produced by a real item going through the `validate` stage on Beam."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that

from facecorpus.demo import photo_paths
from facecorpus.generation.templates import GenerateFromTemplates
from facecorpus.image_check import CheckImage
from facecorpus.image_config import ImageConfig
from facecorpus.output.summaries import validation_counts
from facecorpus.records import DEFAULT_CATEGORIES, AttributeValue, QAPair, SourceInfo
from facecorpus.stage import REJECTS, WorkItem
from facecorpus.validation.assemble import ValidateSample, build_sample
from facecorpus.validation.config import ValidationConfig
from facecorpus.validation.record_checks import RecordRules, check_record, verdict

CATS = tuple(DEFAULT_CATEGORIES)


def _labelled_item() -> WorkItem:
    """A real photo through the real image stage and templates generator, with FairFace-style labels."""
    data = photo_paths()["hanks"].read_bytes()
    item = WorkItem(key="fairface_val_1_x", source=SourceInfo(dataset="fairface", id="val/1.jpg", split="val"), data=data,
                    labels={"gender": AttributeValue(value="male", source="label", confidence=1.0, raw="Male"),
                            "age": AttributeValue(value="50-59", source="label", confidence=1.0, raw="50-59"),
                            "race": AttributeValue(value="white", source="label", confidence=1.0, raw="White")})
    (item,) = list(CheckImage(ImageConfig()).run(item))
    (item,) = list(GenerateFromTemplates(list(CATS), 0).run(item))
    return item


@pytest.fixture(scope="module")
def base_item() -> WorkItem:
    return _labelled_item()


def _qa(item: WorkItem, category: str, answer: str) -> None:
    item.qa = [q if q.category != category else QAPair(category=category, question=q.question, answer=answer) for q in item.qa]


#: answers an LLM might write for the categories the templates skip without face facts (good ones: they
#: pass the junk checks, so a test's only finding is the one it provokes)
LLM_ANSWERS = {
    "facial_structure": "An oval face with high cheekbones, a straight nose and a defined jawline.",
    "expression": "He smiles broadly, with relaxed eyes and raised cheeks.",
    "pose": "The head faces the camera almost straight on, tilted slightly to the left.",
}


def _llm_like(item: WorkItem) -> None:
    """All eight categories present, as the LLM generator writes them."""
    have = {q.category for q in item.qa}
    item.qa += [QAPair(category=c, question=f"Describe the {c.replace('_', ' ')} of the image.", answer=LLM_ANSWERS[c])
                for c in CATS if c not in have]
    item.flags = [f for f in item.flags if not f.startswith("skipped:")]
    item.provenance.generator = "openai"


CASES = {
    "refusal": lambda it: _qa(it, "demographics", "I'm sorry, but I can't help with identifying people's ethnicity."),
    "empty_answer": lambda it: _qa(it, "detail", "   "),
    "answer_too_short": lambda it: _qa(it, "detail", "A"),
    "answer_too_long": lambda it: _qa(it, "detail", "word " * 1000),
    "unknown_category": lambda it: it.qa.append(QAPair(category="hairstyle", question="Describe the hair.",
                                                           answer="Short grey hair, neatly combed back.")),
    "missing_category": lambda it: (_llm_like(it), setattr(it, "qa", [q for q in it.qa if q.category != "pose"])),
    "duplicate_question": lambda it: it.qa.append(QAPair(category="detail", question=it.qa[0].question.upper() + "!",
                                                          answer="A close-up portrait of a smiling man.")),
    "bad_charset": lambda it: _qa(it, "detail", "The face is \x07 lit evenly."),
    "wrong_language": lambda it: _qa(it, "detail", "Лицо освещено ровно, выражение спокойное."),
    "degenerate_text": lambda it: _qa(it, "detail", "the face is calm " * 12),
    "label_conflict": lambda it: _qa(it, "demographics", "A young woman in her twenties."),
    "no_qa": lambda it: setattr(it, "qa", []),
    "schema_invalid": lambda it: setattr(it, "image", None),
}


def _rules(**cfg) -> RecordRules:
    return RecordRules(ValidationConfig(**cfg), CATS)


def test_the_templates_output_passes_as_is(base_item: WorkItem):
    sample = build_sample(base_item, "t", "0" * 64, "0", datetime(2026, 1, 1, tzinfo=UTC))
    assert check_record(sample, _rules()) == []
    assert any(f.startswith("skipped:") for f in sample.flags)  # templates skip what they have no facts for


def test_each_reason_is_rejected_by_the_validate_stage_on_beam(base_item: WorkItem):
    items = []
    for reason, mutate in CASES.items():
        it = copy.deepcopy(base_item)
        it.key = f"case_{reason}"
        it.source = SourceInfo(dataset="cases", id=reason)
        mutate(it)
        items.append(it)
    good = copy.deepcopy(base_item)
    good.key = "case_good"

    def check_rejects(rejects):
        got = {r.source_id: r for r in rejects}
        assert set(got) == set(CASES), sorted(got)
        for reason in CASES:
            r = got[reason]
            assert r.reason == reason and r.stage == "validate" and r.detail and not r.retryable, r
        assert got["refusal"].categories == ["demographics"] and "can't help" in got["refusal"].detail
        assert got["label_conflict"].categories == ["demographics"] and "woman" in got["label_conflict"].detail
        assert got["missing_category"].categories == ["pose"]

    def check_main(samples):
        assert [s.key for s in samples] == ["case_good"]

    with beam.Pipeline(runner="FnApiRunner") as p:
        out = (
            p
            | beam.Create([*items, good])
            | beam.ParDo(ValidateSample("t", "0" * 64, "0", datetime(2026, 1, 1, tzinfo=UTC), _rules()))
            .with_outputs(REJECTS, main="main")
        )
        assert_that(out[REJECTS], check_rejects, label="Rejects")
        assert_that(out["main"], check_main, label="Main")


def test_label_conflicts_can_be_flagged_instead(base_item: WorkItem):
    it = copy.deepcopy(base_item)
    CASES["label_conflict"](it)
    sample = build_sample(it, "t", "0" * 64, "0", datetime(2026, 1, 1, tzinfo=UTC))
    rules = _rules(label_conflict="flag")
    bad, flags = verdict(check_record(sample, rules), rules)
    assert bad is None and flags == ["label_conflict:gender", "label_conflict:age"]
    off = _rules(label_conflict="off")
    assert check_record(sample, off) == []


def test_skips_are_allowed_only_to_generators_that_may_skip(base_item: WorkItem):
    sample = build_sample(base_item, "t", "0" * 64, "0", datetime(2026, 1, 1, tzinfo=UTC))
    strict = RecordRules(ValidationConfig(), CATS, skippable=frozenset())
    assert [f.reason for f in check_record(sample, strict)] == ["missing_category"]
    llm = copy.deepcopy(base_item)
    _llm_like(llm)
    llm.qa = [q for q in llm.qa if q.category != "forensic"]
    llm.flags.append("skipped:forensic")  # the LLM generator flags it too, but by default may not skip
    s2 = build_sample(llm, "t", "0" * 64, "0", datetime(2026, 1, 1, tzinfo=UTC))
    assert [f.reason for f in check_record(s2, _rules())] == ["missing_category"]
    assert check_record(s2, RecordRules(ValidationConfig(), CATS, frozenset({"templates", "openai"}))) == []


def test_refusals_are_counted_per_category():
    from facecorpus.records import Reject

    rejects = [
        Reject(source_id="a", stage="validate", reason="refusal", detail="x", categories=["demographics", "detail"]),
        Reject(source_id="b", stage="validate", reason="refusal", detail="x", categories=["demographics"]),
        Reject(source_id="c", stage="validate", reason="refusal", detail="x"),
        Reject(source_id="d", stage="dedup", reason="duplicate", detail="x"),
    ]
    counts = validation_counts(rejects, [["label_conflict:age"], [], ["skipped:pose", "label_conflict:age"]])
    assert counts["refusals_by_category"] == {"caption": 1, "demographics": 2, "detail": 1}
    assert counts["label_conflicts_flagged_by_attribute"] == {"age": 2}
    assert counts["duplicates"] == 1 and counts["holdout"] == 0
