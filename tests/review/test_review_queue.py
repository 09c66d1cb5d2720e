"""The review queue: filters, seeded and stratified sampling, flagged-first, loading samples from shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from facecorpus.errors import UserError
from facecorpus.review.queue import QueueOptions, build_queue, field_values, load_items, sample_candidates


def ids(cands) -> list[str]:  # noqa: ANN001
    return [c.id for c in cands]


def test_same_seed_same_queue_other_seed_other_order(demo_output: Path) -> None:
    out = str(demo_output)
    a = build_queue(out, QueueOptions(sample=6, seed=7))
    b = build_queue(out, QueueOptions(sample=6, seed=7))
    c = build_queue(out, QueueOptions(sample=16, seed=8))
    assert ids(a) == ids(b) and len(a) == 6 and len(set(ids(a))) == 6
    assert ids(c) != sorted(ids(c))  # shuffled, not in key order
    assert set(ids(build_queue(out, QueueOptions()))) == set(ids(sample_candidates(out)))


def test_stratified_sample_covers_every_stratum(demo_output: Path) -> None:
    out = str(demo_output)
    ages = {v for c in sample_candidates(out) for v in field_values(c, "labels.age", False)}
    assert len(ages) >= 3  # the demo has four labelled age groups plus unlabelled photos
    for seed in (0, 1, 2):
        picked = build_queue(out, QueueOptions(sample=len(ages), seed=seed, stratify=("labels.age",)))
        assert {field_values(c, "labels.age", False)[0] for c in picked} == ages
    # two fields: every (gender, age) combination that exists gets drawn before any repeats
    cands = sample_candidates(out)
    combos = {(field_values(c, "labels.gender", False)[0], field_values(c, "labels.age", False)[0]) for c in cands}
    both = build_queue(out, QueueOptions(sample=len(combos), seed=3, stratify=("labels.gender", "labels.age")))
    assert len(set(ids(both))) == len(both) == len(combos)
    assert {(field_values(c, "labels.gender", False)[0], field_values(c, "labels.age", False)[0]) for c in both} == combos


def test_filters_category_where_and_rejects(demo_output: Path) -> None:
    out = str(demo_output)
    everything = sample_candidates(out)
    pose = build_queue(out, QueueOptions(categories=("pose",)))
    assert pose and all("pose" in c.fields["categories"] for c in pose)
    assert len(pose) == len(everything)  # the demo asks every sample the same three categories
    with pytest.raises(UserError, match="no samples"):
        build_queue(out, QueueOptions(categories=("skin_texture",)))  # a category the demo never asks
    val = build_queue(out, QueueOptions(where=("source.split=val",)))
    assert val and all(c.fields["split"] == "val" for c in val)
    assert len(val) < len(everything)  # the photo folder has no split
    present = sorted({c.fields["label_age"] for c in everything if c.fields["label_age"]})
    two = build_queue(out, QueueOptions(where=(f"labels.age={present[0]}|{present[-1]}",)))
    assert {c.fields["label_age"] for c in two} == {present[0], present[-1]} and len(present) >= 2
    rejects = build_queue(out, QueueOptions(rejects=True, reasons=("unsafe_path", "not_image")))
    assert sorted(c.reject.reason for c in rejects) == ["not_image", "unsafe_path"]
    stage = build_queue(out, QueueOptions(rejects=True, where=("stage=image",)))
    assert stage and all(c.reject.stage == "image" for c in stage)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (QueueOptions(stratify=("labels.shoe_size",)), "unknown field 'labels.shoe_size'"),
        (QueueOptions(where=("labels.race",)), "write FIELD=VALUE"),
        (QueueOptions(reasons=("not_image",)), "add --rejects"),
        (QueueOptions(where=("labels.race=martian",)), "no samples"),
    ],
)
def test_bad_queue_options_are_one_clear_error(demo_output: Path, opts: QueueOptions, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_queue(str(demo_output), opts)


def test_flagged_first_puts_reviewer_flags_up_front(demo_output: Path) -> None:
    out = str(demo_output)
    plain = build_queue(out, QueueOptions(seed=4))
    flagged = {plain[-1].id, plain[-2].id}
    first = build_queue(out, QueueOptions(seed=4, flagged_first=True), reviewer_flagged=flagged)
    assert set(ids(first[:2])) == flagged
    assert ids(first[2:]) == [i for i in ids(plain) if i not in flagged]  # the rest keeps its order


def test_load_items_reads_record_and_image_and_narrows_qa(demo_output: Path) -> None:
    out = str(demo_output)
    chosen = build_queue(out, QueueOptions(sample=3, seed=5, categories=("demographics", "detail")))
    items = load_items(out, chosen, ("demographics", "detail"))
    assert [i.id for i in items] == ids(chosen)
    for it in items:
        assert it.jpeg and it.jpeg[:2] == b"\xff\xd8"
        assert it.sample is not None and it.sample.key == it.id
        assert {it.sample.qa[i].category for i in it.qa_indexes} <= {"demographics", "detail"}
        assert it.qa_indexes
