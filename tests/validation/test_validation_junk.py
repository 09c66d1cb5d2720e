"""The junk checks through the real record rules: every junk text the quality issue quotes is rejected
with its reason, the templates generator's output passes on a grid of facts, flags and `off` work, and
the counts reach stats.json's `validation.text_checks`."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime

import pytest

from facecorpus.demo import photo_paths
from facecorpus.generation.templates import GenerateFromTemplates
from facecorpus.image_check import CheckImage
from facecorpus.image_config import ImageConfig
from facecorpus.output.summaries import validation_counts
from facecorpus.recipe import Recipe
from facecorpus.records import (
    DEFAULT_CATEGORIES,
    AttributeValue,
    QAPair,
    Reject,
    SourceInfo,
)
from facecorpus.resources import data_dir
from facecorpus.stage import WorkItem
from facecorpus.validation.assemble import build_sample
from facecorpus.validation.config import ValidationConfig
from facecorpus.validation.record_checks import check_record, rules_for, verdict
from tests.support.generation_helpers import fact_grid, measured_face

CATS = list(DEFAULT_CATEGORIES)
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def _recipe(prompt_set: str = "rewrite", **validation) -> Recipe:
    """The demo's recipe (its three categories, the rewrite prompt set) with validation overrides."""
    import yaml

    data = yaml.safe_load((data_dir("pipelines") / "demo.yaml").read_text(encoding="utf-8"))
    data["validation"] = {**data.get("validation", {}), **validation}
    data["generation"]["prompt_set"] = prompt_set
    return Recipe.model_validate(data)


def test_the_rewrite_mode_may_leave_out_what_the_templates_skipped():
    """The demo's photos carry no labels: the templates write no demographics answer and flag it skipped;
    under the rewrite mode that stands (the texts are the templates'), under a describing set it does not."""
    flags = ["skipped:demographics"]
    assert rules_for(_recipe()).allows_skip("openai", "demographics", flags)
    assert not rules_for(_recipe("compact")).allows_skip("openai", "demographics", flags)
    assert not rules_for(_recipe()).allows_skip("openai", "pose", flags)


@pytest.fixture(scope="module")
def photo_item() -> WorkItem:
    data = photo_paths()["hanks"].read_bytes()
    item = WorkItem(key="fairface_val_1_x", source=SourceInfo(dataset="fairface", id="val/1.jpg", split="val"), data=data,
                    labels={"gender": AttributeValue(value="male", source="label", confidence=1.0),
                            "age": AttributeValue(value="50-59", source="label", confidence=1.0),
                            "race": AttributeValue(value="white", source="label", confidence=1.0)})
    (item,) = list(CheckImage(ImageConfig()).run(item))
    return item


GOOD = {
    "caption": "A smiling White man in his fifties with short hair, facing the camera.",
    "demographics": "He appears to be a White man in his fifties.",
    "expression": "He smiles broadly, with raised cheeks and crinkled eyes.",
    "pose": "The head faces the camera almost straight on, tilted slightly to the left.",
}


def _llm_item(base: WorkItem, **texts: str) -> WorkItem:
    """The demo's three categories as the LLM generator writes them, good unless `texts` says otherwise."""
    item = copy.deepcopy(base)
    t = {**GOOD, **texts}
    item.caption = t["caption"]
    item.qa = [QAPair(category=c, question=f"What can be said about the {c} of the face in this image?", answer=t[c])
               for c in ("demographics", "expression", "pose")]
    p = item.provenance
    p.generator, p.prompt_set, p.prompt_version, p.prompt_sha256 = "openai", "compact", "1", "0" * 64
    return item


def _reasons(item: WorkItem, recipe: Recipe | None = None) -> list[str]:
    sample = build_sample(item, "demo", "0" * 64, "0", WHEN)
    return [f.reason for f in check_record(sample, rules_for(recipe or _recipe()))]


def test_a_good_llm_record_passes(photo_item: WorkItem):
    assert _reasons(_llm_item(photo_item)) == []


#: every junk text quoted in the quality issue (a quiet demo run and a busy one), with the reason it gets
ISSUE_JUNK = [
    ({"caption": "[Your caption here]"}, "markup"),
    ({"caption": "<pre><code>"}, "markup"),
    ({"demographics": "Age"}, "degenerate_text"),
    ({"pose": "Unimax"}, "degenerate_text"),
    ({"expression": ".1683792e-"}, "degenerate_text"),
    ({"expression": "{2} (106 pixels) The facial expression can only describe what appears to you at first glan…"}, "markup"),
    ({"caption": "The photograph is not attached."}, "prompt_echo"),
    ({"demographics": "1.3"}, "degenerate_text"),
    ({"expression": "}}```. This is the one-sentence caption, so I will answer each question with a single sentence: "
                    "What can be said about what appears to have been an age range? A"}, "markup"),
    ({"pose": GOOD["demographics"]}, "repeated_answer"),
    ({"pose": "no notable roll,"}, "degenerate_text"),
]


@pytest.mark.parametrize(("texts", "reason"), ISSUE_JUNK, ids=[r for _, r in ISSUE_JUNK])
def test_every_junk_example_of_the_issue_is_rejected_with_its_reason(photo_item: WorkItem, texts: dict, reason: str):
    item = _llm_item(photo_item, **texts)
    sample = build_sample(item, "demo", "0" * 64, "0", WHEN)
    rules = rules_for(_recipe())
    bad, flags = verdict(check_record(sample, rules), rules)
    assert bad is not None and bad.reason == reason, [(f.reason, f.detail) for f in check_record(sample, rules)]
    assert flags == []
    (where,) = texts
    assert where in bad.categories  # counted against the text it fired on ('caption' for the caption)


def test_the_validate_stage_on_beam_refuses_every_junk_example(photo_item: WorkItem):
    """The same examples through the pipeline's `validate` stage (FnApiRunner): each one a reject line with
    its reason and the text it fired on; the good record alone is written."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that

    from facecorpus.stage import REJECTS
    from facecorpus.validation.assemble import ValidateSample

    items = []
    for n, (texts, _) in enumerate(ISSUE_JUNK):
        item = _llm_item(photo_item, **texts)
        item.key, item.source = f"junk_{n}", SourceInfo(dataset="issue", id=str(n))
        items.append(item)
    good = _llm_item(photo_item)
    good.key = "good"

    def check_rejects(rejects):
        got = {r.source_id: r for r in rejects}
        assert sorted(got) == sorted(str(n) for n in range(len(ISSUE_JUNK)))
        for n, (texts, reason) in enumerate(ISSUE_JUNK):
            r = got[str(n)]
            assert (r.stage, r.reason, r.retryable) == ("validate", reason, False), r
            (where,) = texts
            assert where in r.categories and r.detail, r

    def check_main(samples):
        assert [s.key for s in samples] == ["good"]

    with beam.Pipeline(runner="FnApiRunner") as p:
        out = (p | beam.Create([*items, good])
               | beam.ParDo(ValidateSample("demo", "0" * 64, "0", WHEN, rules_for(_recipe()))).with_outputs(REJECTS, main="main"))
        assert_that(out[REJECTS], check_rejects, label="Rejects")
        assert_that(out["main"], check_main, label="Main")


def test_the_busy_run_caption_is_also_meta_talk_and_not_about_a_face(photo_item: WorkItem):
    """'The photograph is not attached.' fails three ways; each check catches it alone too."""
    item = _llm_item(photo_item, caption="The photograph is not attached.")
    assert {"prompt_echo", "meta_talk", "caption_not_about_face"} <= set(_reasons(item))
    only_meta = _recipe(junk={"prompt_echo": "off", "caption_not_about_face": "off"})
    assert _reasons(item, only_meta)[0] == "meta_talk"


def test_the_busy_run_expression_answer_is_markup_meta_talk_and_cut_off(photo_item: WorkItem):
    text = ISSUE_JUNK[8][0]["expression"]
    assert {"markup", "meta_talk", "degenerate_text"} <= set(_reasons(_llm_item(photo_item, expression=text)))


def test_off_topic_answers_are_rejected(photo_item: WorkItem):
    item = _llm_item(photo_item, pose="He smiles broadly and looks very happy today.")
    assert _reasons(item) == ["off_topic"]
    item = _llm_item(photo_item, expression="The head is turned to the left by about twenty degrees.")
    assert _reasons(item) == ["off_topic"]


def test_topic_vocabularies_come_from_the_recipe(photo_item: WorkItem):
    item = _llm_item(photo_item, pose="Unusual stance, quite dramatic overall.")
    assert _reasons(item) == ["off_topic"]
    assert _reasons(item, _recipe(junk={"topics": {"pose": ["stance"]}})) == []
    assert _reasons(item, _recipe(junk={"topics": {"pose": []}})) == []  # an empty list: not checked


def test_a_junk_check_can_flag_instead_and_the_flags_are_counted(photo_item: WorkItem):
    recipe = _recipe(junk={"markup": "flag"})
    item = _llm_item(photo_item, caption="<b>A smiling man</b> facing the camera.", expression="{2} He smiles broadly.")
    sample = build_sample(item, "demo", "0" * 64, "0", WHEN)
    rules = rules_for(recipe)
    bad, flags = verdict(check_record(sample, rules), rules)
    assert bad is None and flags == ["markup:caption", "markup:expression"]
    counts = validation_counts([], [flags])
    assert counts["text_checks"]["flagged"] == {"markup": {"caption": 1, "expression": 1}}


def test_rejects_are_counted_per_check_and_category():
    rejects = [Reject(source_id="a", stage="validate", reason="off_topic", detail="x", categories=["pose"]),
               Reject(source_id="b", stage="validate", reason="markup", detail="x", categories=["caption", "pose"]),
               Reject(source_id="c", stage="validate", reason="off_topic", detail="x", categories=["pose"])]
    assert validation_counts(rejects, [])["text_checks"]["rejected"] == {
        "markup": {"caption": 1, "pose": 1}, "off_topic": {"pose": 2}}


def test_the_card_shows_the_text_checks_per_check_and_text():
    from facecorpus.sinks.card import _text_checks_section

    rejects = [Reject(source_id="a", stage="validate", reason="off_topic", detail="x", categories=["pose"]),
               Reject(source_id="b", stage="validate", reason="markup", detail="x", categories=["caption"])]
    stats = {"validation": validation_counts(rejects, [["meta_talk:expression"], ["meta_talk:expression"]])}
    lines = _text_checks_section(stats)
    assert lines[0] == "## Text checks"
    assert {"| off_topic | pose | 1 | 0 |", "| markup | caption | 1 | 0 |", "| meta_talk | expression | 0 | 2 |"} <= set(lines)
    assert _text_checks_section({"validation": validation_counts([], [])}) == []


def test_junk_off_turns_every_check_off(photo_item: WorkItem):
    item = _llm_item(photo_item, caption="[Your caption here]", demographics="1.3", pose="1.3")
    assert _reasons(item, _recipe(junk="off")) == []
    assert ValidationConfig.model_validate({"junk": "off"}).junk.markup == "off"


# ------------------------------------------------------------------------------------------ templates


def test_the_templates_generator_output_passes_on_a_grid_of_facts(photo_item: WorkItem):
    """The fallback of the rewrite mode and the default generator: never junk, whatever the facts."""
    rules = rules_for(_recipe())
    rules = dataclasses.replace(rules, categories=tuple(CATS))
    poses = [(0, 0, 0), (-35, 12, -14), (40, -25, 20)]
    faces = [None, *[measured_face(*p, label, blur, light) for p, label, blur, light in zip(
        poses * 3, ["happy", "neutral", "sad", "surprise", "angry", "fear", "disgust", "happy", "neutral"],
        [10, 80, 400] * 3, [40, 120, 220] * 3, strict=False)]]
    failures = []
    for i, item in fact_grid(photo_item, faces, every=7):
        item.key = f"grid_{i}"
        (item,) = list(GenerateFromTemplates(CATS, seed=i).run(item))
        found = check_record(build_sample(item, "t", "0" * 64, "0", WHEN), rules)
        failures += [(f.reason, f.detail) for f in found]
    assert failures == []


def test_the_cheap_bound_never_hides_a_repeat() -> None:
    """find_repeated_answer skips the alignment of pairs whose word-multiset bound is under the threshold:
    the bound is never below the real similarity, so every verdict is the one comparing all pairs gives."""
    from collections import Counter
    from itertools import combinations

    from facecorpus.validation.junk import _ANY_WORD, find_repeated_answer, similarity, similarity_bound

    base = "The face is lit from the upper left, leaving a soft shadow along the right cheek and jaw."
    texts = [base, base + " The eyes are open and look past the camera.", " ".join(reversed(base.split())),
             "The mouth is closed and the corners are neutral, giving a calm, attentive expression.",
             "Lit from the upper left, the face has a soft shadow on the right cheek.", "A calm face.",
             "the the the the shadow shadow cheek", base.replace("left", "right").replace("soft", "hard")]
    for a, b in combinations(texts, 2):
        wa, wb = (Counter(_ANY_WORD.findall(t.casefold())) for t in (a, b))
        for containment in (True, False):
            if min(sum(wa.values()), sum(wb.values())) >= 4:
                assert similarity_bound(wa, wb, containment) >= similarity(a, b, containment) - 1e-12
    for threshold in (0.5, 0.7, 0.85):
        answers = [(f"c{i}", t) for i, t in enumerate(texts)]
        brute = next(((x, y) for (x, a), (y, b) in combinations(answers, 2) if similarity(a, b) >= threshold), None)
        found = find_repeated_answer(answers, threshold, summaries=frozenset())
        assert (found.first, found.second) == brute if brute else found is None
