"""Refusal detection and label consistency on real phrasings: what is caught, what is deliberately not."""

from __future__ import annotations

import itertools

import pytest

from facecorpus.labels import AGE_BINS, GENDERS, RACES
from facecorpus.records import AttributeValue
from facecorpus.validation.label_consistency import age_statements, find_conflicts
from facecorpus.validation.refusals import find_refusal

REFUSALS = [
    ("I'm unable to determine the ethnicity of people in images.", "unable"),
    ("I’m sorry, but I can’t help with identifying people based on their facial features.", "apology"),
    ("I can't help with identifying the race of a person.", "cannot"),
    ("I cannot see the image you have shared.", "cannot"),
    ("As an AI language model, I do not make judgments about a person's age.", "as_an_ai"),
    ("Sorry, I can't assist with that request.", "apology"),
    ("There is no image attached to your message, so I can't describe it.", "no_image"),
    ("I don't have the ability to view images.", "no_image"),
    ("It is not possible to determine someone's ethnicity from a photograph alone.", "not_possible"),
    ("It would be inappropriate for me to guess the gender of this person.", "inappropriate"),
    ("I must respectfully decline to speculate about race.", "decline"),
    ("AS AN AI, I CANNOT DO THAT.", "as_an_ai"),
    ("The lighting is soft. I am not able to comment on the age of the person.", "unable"),
]

CLEAN = [
    "The face appears to belong to a White man in his fifties.",
    "The image is 224x224 pixels; the resolution is too low for reliable identification. Attributes stated here are apparent, not verified identity.",
    "The person cannot be seen clearly on the left side because of a shadow.",
    "Soft light from the left; she looks calm and cannot be older than thirty.",
    "The expression is probably neutral. The mouth is closed.",
    "A detailed analysis shows no visible scars; the skin is smooth.",
]


@pytest.mark.parametrize("text,kind", REFUSALS)
def test_refusals_are_caught_with_their_sentence(text: str, kind: str):
    found = find_refusal(text)
    assert found is not None and found.kind == kind
    assert found.phrase and found.phrase.lower() in " ".join(text.replace("’", "'").split()).lower()


@pytest.mark.parametrize("text", CLEAN)
def test_ordinary_answers_are_not_refusals(text: str):
    assert find_refusal(text) is None


def _labels(gender: str | None = None, age: str | None = None, race: str | None = None, source: str = "label"):
    out = {}
    for name, v in (("gender", gender), ("age", age), ("race", race)):
        if v is not None:
            out[name] = AttributeValue(value=v, source=source, confidence=1.0)
    return out


CONFLICTS = [
    # (text, labels, attribute, phrase)
    ("The woman has a calm expression.", _labels(gender="male"), "gender", "woman"),
    ("He looks relaxed.", _labels(gender="female"), "gender", "He"),
    ("A teenager with short hair.", _labels(age="50-59"), "age", "teenager"),
    ("The person appears to be 35 years old.", _labels(age="3-9"), "age", "35 years old"),
    ("An elderly person sits by the window.", _labels(age="20-29"), "age", "elderly"),
    ("A toddler smiling at the camera.", _labels(age="40-49"), "age", "toddler"),
    ("She is in her late twenties.", _labels(age="60-69"), "age", "late twenties"),
    ("A woman in her 70s.", _labels(age="30-39"), "age", "70s"),
    ("a 12-year-old girl", _labels(age="20-29"), "age", "12-year-old"),
    ("This person is over 70.", _labels(age="20-29"), "age", "over 70"),
    ("A middle-aged man.", _labels(age="10-19"), "age", "middle-aged"),
    ("The subject is of East Asian descent.", _labels(race="black"), "race", "East Asian"),
    ("A Black woman with braided hair.", _labels(race="white"), "race", "Black woman"),
    ("Their ethnicity is White.", _labels(race="indian"), "race", "ethnicity is White"),
    ("He appears Hispanic.", _labels(race="east_asian"), "race", "Hispanic"),
    ("A Caucasian man.", _labels(race="southeast_asian"), "race", "Caucasian"),
    ("An Asian woman.", _labels(race="black"), "race", "Asian"),
]


@pytest.mark.parametrize("text,labels,attribute,phrase", CONFLICTS)
def test_contradictions_are_caught_with_the_phrase(text, labels, attribute, phrase):
    found = find_conflicts([("demographics", text)], labels, age_tolerance=2)
    assert [(c.attribute, c.phrase) for c in found][:1] == [(attribute, phrase)]
    assert found[0].where == "demographics"


NOT_CONFLICTS = [
    # consistent statements
    ("He is a man in his fifties.", _labels(gender="male", age="50-59")),
    ("A teenage girl, about 17 years old.", _labels(gender="female", age="10-19")),
    ("A baby or toddler (0 to 2 years old).", _labels(age="0-2")),
    ("An Asian man.", _labels(race="southeast_asian")),
    ("A Latino or Hispanic woman.", _labels(race="latino_hispanic", gender="female")),
    ("She looks about 31.", _labels(age="20-29")),  # "about 31" is no age statement the parser knows
    ("In her late twenties.", _labels(age="30-39")),  # within the tolerance of 2 years
    # negated, both-ways, and non-person uses of colour words
    ("This is not a woman but a man.", _labels(gender="male")),
    ("He or she looks calm; his or her gaze is direct.", _labels(gender="female")),
    ("Black hair, a white background, black and white photo.", _labels(race="east_asian")),
    ("The person does not look elderly.", _labels(age="20-29")),
    ("A mixed-race woman of Black and White heritage.", _labels(race="white")),
    ("The image is 1024x1024 pixels, more than 70 percent of it in shadow.", _labels(age="20-29")),
    # labels from a model are not checked
    ("A woman smiles.", _labels(gender="male", source="model:portable")),
]


@pytest.mark.parametrize("text,labels", NOT_CONFLICTS)
def test_consistent_negated_or_unlabelled_text_is_not_a_conflict(text, labels):
    assert find_conflicts([("detail", text)], labels, age_tolerance=2) == []


def test_known_blind_spots_stay_documented():
    """What the checker does not catch (docs/trust.md lists these): keep the list honest."""
    labels = _labels(gender="male", age="20-29", race="white")
    for text in ("The face has a full beard and lipstick.",  # implied gender
                 "Soft, feminine features.",  # said of either gender
                 "Someone who has seen many decades.",  # paraphrased age
                 "A person of Maori heritage."):  # not a FairFace group
        assert find_conflicts([("detail", text)], labels, age_tolerance=2) == []


def test_templates_generator_text_never_conflicts_with_its_own_labels():
    """Every FairFace label combination, phrased by facecorpus's own phrase table, passes."""
    from facecorpus.prompting.phrases import age_phrase, describe_person, race_phrase

    for age, gender, race in itertools.product(AGE_BINS.values(), GENDERS.values(), RACES.values()):
        texts = [describe_person(gender, age, race), f"Their apparent age: {age_phrase(age)}.",
                 f"Their apparent ethnicity is {race_phrase(race)}.",
                 f"The person presents as {'male' if gender == 'male' else 'female'}."]
        labels = _labels(gender=gender, age=age, race=race)
        assert find_conflicts([("demographics", t) for t in texts], labels, age_tolerance=0) == [], (age, gender, race)
        assert all(find_refusal(t) is None for t in texts)


def test_age_ranges_parse():
    got = {(lo, hi) for lo, hi, _, _ in age_statements("between 3 and 9 years old; mid-30s; early teens; over 70.")}
    assert got == {(3, 9), (33, 36), (13, 15), (70, None)}
