"""Natural-language phrases for normalised attribute codes (see `facecorpus.labels`).

FairFaceGPT passed labels raw ("Latino_Hispanic", "more than 70", a two-year-old called "man"); these
phrases fix that: children are boys/girls, 10-19 are teenagers, bins read as decades.
"""

from __future__ import annotations

RACE_PHRASES: dict[str, str] = {
    "east_asian": "East Asian",
    "indian": "Indian",
    "black": "Black",
    "white": "White",
    "middle_eastern": "Middle Eastern",
    "latino_hispanic": "Latino or Hispanic",
    "southeast_asian": "Southeast Asian",
}

AGE_PHRASES: dict[str, str] = {
    "0-2": "a baby or toddler (0 to 2 years old)",
    "3-9": "a child between 3 and 9 years old",
    "10-19": "a teenager (10 to 19 years old)",
    "20-29": "in their twenties",
    "30-39": "in their thirties",
    "40-49": "in their forties",
    "50-59": "in their fifties",
    "60-69": "in their sixties",
    "70+": "over 70",
}


def person_noun(gender: str | None, age: str | None) -> str:
    """'man', 'woman', 'boy', 'girl', 'baby', 'teenage boy', … or 'person' when unknown."""
    child = age in ("0-2", "3-9")
    teen = age == "10-19"
    if age == "0-2":
        return {"male": "baby boy", "female": "baby girl"}.get(gender or "", "baby")
    if gender == "male":
        return "boy" if child else ("teenage boy" if teen else "man")
    if gender == "female":
        return "girl" if child else ("teenage girl" if teen else "woman")
    return "child" if child else ("teenager" if teen else "person")


#: how a template's `person` word is chosen: `natural` (person_noun) or `fairfacegpt` (fairfacegpt_person)
LABEL_STYLES = ("natural", "fairfacegpt")


def fairfacegpt_person(gender: str | None, age: str | None) -> str:
    """The word FairFaceGPT's script used for the person: 'man' for male and 'woman' for anything else,
    'boy' / 'girl' instead only in the 3-9 bin (a 0-2 year old is a 'man' or 'woman' there too)."""
    word = "man" if gender == "male" else "woman"
    if age == "3-9":
        word = "boy" if word == "man" else "girl"
    return word


def age_phrase(age: str | None) -> str | None:
    return AGE_PHRASES.get(age or "")


def race_phrase(race: str | None) -> str | None:
    return RACE_PHRASES.get(race or "")


def describe_person(gender: str | None, age: str | None, race: str | None) -> str:
    """One noun phrase, e.g. 'a Latino or Hispanic woman in her thirties', 'an East Asian baby boy', 'a person'."""
    noun = person_noun(gender, age)
    adj = race_phrase(race)
    head = f"{adj} {noun}" if adj else noun
    article = "an" if head[:1].lower() in "aeiou" else "a"
    phrase = f"{article} {head}"
    if age and age not in ("0-2", "3-9", "10-19"):
        possessive = {"male": "his", "female": "her"}.get(gender or "", "their")
        phrase += " " + AGE_PHRASES[age].replace("their", possessive)
    return phrase


#: how old someone in each bin is, as a clause after the noun ("a girl of Indian ethnicity, 3 to 9 years old")
_AGE_CLAUSES: dict[str, str] = {
    "0-2": "under 3 years old",
    "3-9": "3 to 9 years old",
    "10-19": "10 to 19 years old",
    "70+": "over 70",
}


def subject_phrase(gender: str | None, age: str | None, race: str | None) -> str | None:
    """The labelled subject for a label-aware prompt, or None when no label is known.

    FairFaceGPT's shape ("a {gender} with {ethnicity} ethnicity and {age} years old") with natural
    words: 'a woman of Latino or Hispanic ethnicity, in her thirties', 'a boy of Black ethnicity,
    3 to 9 years old', 'a teenage girl, 10 to 19 years old', 'a person of White ethnicity'.
    Unknown codes are left out rather than guessed.
    """
    race_words = race_phrase(race)
    age_known = age in AGE_PHRASES
    if gender not in ("male", "female") and not race_words and not age_known:
        return None
    noun = person_noun(gender if gender in ("male", "female") else None, age if age_known else None)
    article = "an" if noun[:1] in "aeiou" else "a"
    phrase = f"{article} {noun}"
    if race_words:
        phrase += f" of {race_words} ethnicity"
    if age_known:
        assert age is not None
        clause = _AGE_CLAUSES.get(age)
        if clause is None:  # an adult decade: 'in her thirties'
            possessive = {"male": "his", "female": "her"}.get(gender or "", "their")
            clause = AGE_PHRASES[age].replace("their", possessive)
        phrase += f", {clause}"
    return phrase


def _turn(value: float, positive: str, negative: str, axis: str) -> str:
    if abs(value) < 10:
        return f"no notable {axis}"
    return f"{positive if value > 0 else negative} by about {abs(value):.0f} degrees"


def pose_phrases(yaw: float, pitch: float, roll: float) -> tuple[str, str, str]:
    """Measured head pose in words (yaw > 0: turned toward the image's right; pitch > 0: up; roll > 0:
    clockwise), each angle under 10 degrees called 'no notable …'."""
    return (
        _turn(yaw, "turned toward the image's right", "turned toward the image's left", "turn"),
        _turn(pitch, "tilted up", "tilted down", "up-down tilt"),
        _turn(roll, "rolled clockwise", "rolled counter-clockwise", "roll"),
    )


def brightness_word(brightness: float) -> str:
    return "dark" if brightness < 70 else ("bright" if brightness > 185 else "evenly exposed")


def sharpness_word(laplacian_variance: float) -> str:
    return "blurred" if laplacian_variance < 30 else ("slightly soft" if laplacian_variance < 150 else "sharp")
