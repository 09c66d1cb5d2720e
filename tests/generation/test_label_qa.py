"""The labels generator (label → QA, no LLM) and the answer check that holds it to the labels.

The MCQ and yes/no answers are checked here twice: by `validation/label_answers.py`, and by this file's
own reading of the text against the raw labels (its own tables, not the vocabulary's), so a mistake
shared by the generator and the vocabulary would still show.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, datetime

import pytest

from facecorpus.generation.label_qa import LABEL_CATEGORIES, LabelQASettings, label_qa
from facecorpus.labels import VOCABULARY
from facecorpus.records import AttributeValue, Face, FaceBox, ImageInfo, Provenance, Sample, SourceInfo
from facecorpus.sources.celeba import ATTRIBUTE_COLUMNS, column_attribute
from facecorpus.stage import WorkItem
from facecorpus.validation.label_answers import LabelAnswerCheck

#: this test's own readings of option texts (written from the datasets' documentation, not from labels.py)
EXPRESSION_OPTION = {"neutral": "Neutral", "happy": "Happy", "sad": "Sad", "surprise": "Surprised", "fear": "Fearful",
                     "disgust": "Disgusted", "angry": "Angry", "contempt": "Contemptuous"}
AGE_OPTION = {"20-29": "20-29 years", "30-39": "30-39 years", "50-59": "50-59 years", "70+": "70 years or older"}
RACE_OPTION = {"white": "White", "black": "Black", "asian": "Asian", "indian": "Indian", "east_asian": "East Asian"}
ASIAN_GROUPS = {"Asian", "East Asian", "Southeast Asian"}


def _label(v) -> AttributeValue:
    return AttributeValue(value=v, source="label", confidence=1.0)


def celeba_labels(rng: random.Random) -> dict[str, AttributeValue]:
    out = {}
    for column in ATTRIBUTE_COLUMNS:
        name, value = column_attribute(column, rng.choice(["1", "-1", "-1"]))
        out[name] = _label(value)
    return out


def demographic_labels(rng: random.Random) -> dict[str, AttributeValue]:
    age = rng.randint(20, 80)
    bin_ = "20-29" if age < 30 else "30-39" if age < 40 else "50-59" if 50 <= age < 60 else "70+" if age >= 70 else None
    out = {"gender": _label(rng.choice(["male", "female"])), "race": _label(rng.choice(list(RACE_OPTION))),
           "expression": _label(rng.choice(list(EXPRESSION_OPTION)))}
    if bin_:
        out["age"] = _label(bin_)
    return out


def sample_of(key: str, labels: dict[str, AttributeValue], seed: int = 0, faces: int = 0,
              settings: LabelQASettings | None = None) -> Sample:
    item = WorkItem(key=key, source=SourceInfo(dataset="t", id=key), labels=labels)
    item.faces = [Face(box=FaceBox(x1=i * 50, y1=0, x2=i * 50 + 40, y2=40), score=0.99, detector="portable:mtcnn")
                  for i in range(faces)]
    caption, qa, skipped = label_qa(item, LABEL_CATEGORIES, seed, settings or LabelQASettings())
    return Sample(
        key=key, source=item.source, image=ImageInfo(width=400, height=300, sha256="0" * 64, phash="0" * 16, bytes=1),
        faces=item.faces, attributes=labels, caption=caption, qa=qa, flags=[f"skipped:{c}" for c in skipped],
        provenance=Provenance(generator="labels", prompt_set="label_qa", prompt_version="1", prompt_sha256="0" * 64,
                              pipeline_version="0", recipe="t", recipe_sha256="0" * 64, created_at=datetime.now(UTC)),
    )


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    rng = random.Random(7)
    out = []
    for i in range(300):
        labels = celeba_labels(rng) if i % 2 else demographic_labels(rng)
        out.append(sample_of(f"s{i:04d}", labels, faces=i % 4))
    return out


def _letter_and_options(q) -> tuple[str, dict[str, str]]:
    options = dict(re.findall(r"^([A-D])\. (.+)$", q.question, re.M))
    return q.answer.split(".", 1)[0], options


def test_every_generated_answer_passes_the_answer_check(samples):
    check = LabelAnswerCheck(VOCABULARY)
    problems = [(s.key, p) for s in samples for p in check.check(s)]
    assert problems == []
    kinds = Counter(q.category for s in samples for q in s.qa)
    assert set(kinds) == set(LABEL_CATEGORIES)


def test_mcq_answers_match_the_raw_labels_read_independently(samples):
    checked = 0
    for s in samples:
        labels = {k: v.value for k, v in s.attributes.items()}
        for q in s.qa:
            if q.category != "attribute_mcq":
                continue
            letter, options = _letter_and_options(q)
            assert sorted(options) == ["A", "B", "C", "D"] and len(set(options.values())) == 4
            chosen = options[letter]
            if q.question.startswith("Which facial expression"):
                assert chosen == EXPRESSION_OPTION[labels["expression"]]
            elif q.question.startswith("Which age range"):
                assert chosen == AGE_OPTION[labels["age"]]
            elif q.question.startswith("Which ethnic group"):
                assert chosen == RACE_OPTION[labels["race"]]
                others = set(options.values()) - {chosen}
                if chosen == "Asian":  # never 'Asian' beside 'East Asian': one holds the other
                    assert not others & ASIAN_GROUPS
                if chosen in ASIAN_GROUPS:
                    assert "Asian" not in others
            else:  # feature sets: every feature of the chosen option is present, each other option lacks one
                assert q.question.startswith("Which set of features")
                present = {VOCABULARY[n].item for n, v in labels.items() if v is True and getattr(VOCABULARY[n], "item", None)}
                def parts(text):
                    return {p.strip().lower() for p in text.split(",")}
                assert parts(chosen) <= {p.lower() for p in present}
                assert all(not parts(o) <= {p.lower() for p in present} for o in options.values() if o != chosen)
            checked += 1
    assert checked > 200


def test_mcq_answer_letters_are_balanced(samples):
    letters = Counter(q.answer_key for s in samples for q in s.qa if q.category == "attribute_mcq")
    n = sum(letters.values())
    assert set(letters) == set("ABCD")
    # a chi-square test at 1 %: 3 degrees of freedom, critical value 11.34
    chi2 = sum((letters[c] - n / 4) ** 2 / (n / 4) for c in "ABCD")
    assert chi2 < 11.34, letters


def test_yes_no_answers_are_balanced_and_match_the_labels(samples):
    said = Counter()
    for s in samples:
        labels = {k: v.value for k, v in s.attributes.items()}
        per_sample = Counter()
        for q in s.qa:
            if q.category != "attribute_yes_no":
                continue
            answer = q.answer.split(".", 1)[0]
            said[answer] += 1
            per_sample[answer] += 1
            (name,) = q.attributes
            if isinstance(labels[name], bool):
                assert answer == ("Yes" if labels[name] else "No")
            else:  # the question names a value; yes only for the label's own
                asked = q.options[0]
                assert answer == ("Yes" if asked == labels[name] else "No")
        if s.attributes.get("smiling") is not None:  # CelebA-like: 40 flags, always enough of each polarity
            assert per_sample["Yes"] == per_sample["No"] == 2
    share = said["Yes"] / (said["Yes"] + said["No"])
    assert 0.45 < share < 0.55, said


def test_lists_and_counts_match_the_labels(samples):
    for s in samples:
        labels = {k: v.value for k, v in s.attributes.items()}
        for q in s.qa:
            if q.category == "face_count":
                assert len(s.faces) >= 2 and q.answer == f"There are {len(s.faces)} clearly visible faces in the image."
            if q.category == "attribute_list":
                present = [o for o, n in zip(q.options, q.attributes, strict=True) if labels[n] is True]
                if present:
                    assert all(p in q.answer.lower() for p in present)
                else:
                    assert q.answer == "None of them can be seen."
    counts = [s for s in samples if any(q.category == "face_count" for q in s.qa)]
    assert counts and all(len(s.faces) >= 2 for s in counts)


def test_output_is_deterministic_by_seed():
    labels = celeba_labels(random.Random(3))
    a, b = sample_of("k", labels, seed=1), sample_of("k", labels, seed=1)
    c = sample_of("k", labels, seed=2)
    assert a.qa == b.qa and a.caption == b.caption
    assert a.qa != c.qa


def test_captions_hold_to_the_labels(samples):
    from facecorpus.validation.label_consistency import find_conflicts

    for s in samples:
        assert not find_conflicts([("caption", s.caption)] + [(q.category, q.answer) for q in s.qa], s.attributes, 2)


def test_subjective_flags_are_not_asked_unless_the_recipe_says_so():
    labels = {"attractive": _label(True), "smiling": _label(True), "bangs": _label(False)}
    plain = sample_of("k", labels)
    assert not any("attractive" in q.attributes for q in plain.qa)
    asked = sample_of("k", labels, settings=LabelQASettings(subjective=True))
    assert any("attractive" in q.attributes for q in asked.qa)


# ------------------------------------------------------------------------------- the check catches defects


def _first(s: Sample, category: str, starts: str = ""):
    return next(q for q in s.qa if q.category == category and q.question.startswith(starts))


def _reasons(s: Sample) -> list[str]:
    return [p.reason for p in LabelAnswerCheck(VOCABULARY).check(s)]


def test_a_wrong_letter_is_a_defect():
    s = sample_of("k", {"expression": _label("happy")})
    q = _first(s, "attribute_mcq")
    wrong = next(L for L in "ABCD" if L != q.answer_key)
    _, options = _letter_and_options(q)
    q.answer, q.answer_key = f"{wrong}. {options[wrong]}", wrong
    assert _reasons(s) == ["wrong_answer"]


def test_an_option_that_is_also_right_is_a_defect():
    s = sample_of("k", {"race": _label("east_asian")})
    q = _first(s, "attribute_mcq")
    letter, options = _letter_and_options(q)
    other = next(L for L in "ABCD" if L != letter)
    q.question = q.question.replace(f"{other}. {options[other]}", f"{other}. Asian")
    assert _reasons(s) == ["bad_options"]
    s2 = sample_of("k", {"expression": _label("sad")})
    q2 = _first(s2, "attribute_mcq")
    q2.question = q2.question.replace("\nD. ", "\nE. ")
    assert _reasons(s2) == ["bad_options"]


def test_flipped_yes_no_wrong_list_and_wrong_count_are_defects():
    labels = celeba_labels(random.Random(11))
    s = sample_of("k", labels, faces=3)
    yn = _first(s, "attribute_yes_no")
    yn.answer = ("No" if yn.answer.startswith("Yes") else "Yes") + yn.answer[yn.answer.index("."):]
    yn.answer_key = None
    lst = _first(s, "attribute_list")
    lst.answer = "None of them can be seen." if lst.answer_key else f"{lst.options[0].capitalize()} can be seen."
    lst.answer_key = None
    count = _first(s, "face_count")
    count.answer, count.answer_key = "There are 2 clearly visible faces in the image.", "2"
    assert sorted(_reasons(s)) == ["wrong_answer"] * 3


def test_a_pair_without_labels_to_check_is_unverifiable():
    s = sample_of("k", {"expression": _label("happy")})
    q = _first(s, "attribute_open")
    s.attributes = {}
    assert "unverifiable_answer" in _reasons(s)
    q.attributes = []
    assert "unverifiable_answer" in _reasons(s)
