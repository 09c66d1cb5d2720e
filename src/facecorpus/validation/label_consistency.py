"""Does the generated text contradict the labels the sample carries?

For each attribute whose value came from the dataset (`source == 'label'`), the text (caption and
answers) is read for statements about it:

- gender: nouns and pronouns (man, woman, boy, girl, lady, gentleman, he/him/his, she/her/hers, male,
  female, …);
- age: numbers ("35 years old", "35-year-old", "aged 35", "10 to 19 years old", "over 70"), decades
  ("in her thirties", "late 20s", "early teens"), and words (baby, infant, toddler, child, teenager,
  adolescent, young adult, middle-aged, elderly, senior, "an old man");
- ethnicity: FairFace group names and common synonyms (East Asian, Chinese, Korean, Southeast Asian,
  Filipino, Indian, South Asian, Black, African American, White, Caucasian, Middle Eastern, Arab,
  Latino, Hispanic, bare "Asian"). "Black"/"White" count only next to a person word or an ethnicity
  word ("a Black woman", "ethnicity is White"), so "black hair" or "a white background" never does.

A statement is skipped when a negation precedes it ("not a teenager", "does not look elderly"), and
gender words inside a both-ways phrase ("he or she", "male or female") are ignored. An age statement
conflicts when its range misses the label's bin widened by the tolerance. What is NOT caught:
paraphrases without these words ("has seen many decades"), implied gender ("beard", "lipstick"),
"masculine"/"feminine" features (said of either gender), nationalities beyond the list, text that
talks about someone else in the picture, and sarcasm or quotes. docs/trust.md has the full list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..labels import AGE_RANGES
from ..records import AttributeValue

#: a negation at most two words before a statement ("not a teenager", "isn't really elderly", "no longer young")
_NEGATION = re.compile(r"(?:\bnot|n't|\bno|\bnever|\bnor|\bneither|\brather than|\binstead of|\bunlike)\s+(?:[\w-]+\s+){0,2}$", re.I)


@dataclass(frozen=True)
class Conflict:
    """One statement in the text that contradicts a label."""

    attribute: str  # 'gender' | 'age' | 'race'
    phrase: str  # as written in the text
    label: str  # the label's normalised value
    where: str  # 'caption' or the QA category


def _negated(text: str, start: int) -> bool:
    return bool(_NEGATION.search(text[max(0, start - 40) : start]))


# ------------------------------------------------------------------------------------------------ gender

_MALE = r"man|men|male|males|boy|boys|gentleman|gentlemen|guy|guys|he|him|his|himself|mr|sir|father|husband|son|brother|grandfather"
_FEMALE = (
    r"woman|women|female|females|girl|girls|lady|ladies|she|her|hers|herself|mrs|ms|madam|mother|wife|daughter|"
    r"sister|grandmother"
)
_GENDER_WORD = re.compile(rf"\b(?:(?P<m>{_MALE})|(?P<f>{_FEMALE}))\b", re.I)
_BOTH_WAYS = re.compile(
    rf"\b(?:{_MALE})\s*(?:or|/|and/or)\s*(?:{_FEMALE})\b|\b(?:{_FEMALE})\s*(?:or|/|and/or)\s*(?:{_MALE})\b", re.I
)


def gender_statements(text: str) -> list[tuple[str, str, int]]:
    """(gender code, word, position) for every gender word not negated and not in a both-ways phrase."""
    masked = _BOTH_WAYS.sub(lambda m: " " * len(m.group(0)), text)
    out = []
    for m in _GENDER_WORD.finditer(masked):
        if _negated(masked, m.start()):
            continue
        out.append(("male" if m.group("m") else "female", m.group(0), m.start()))
    return out


# --------------------------------------------------------------------------------------------------- age

_DECADES = {
    "twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60, "seventies": 70, "eighties": 80,
    "nineties": 90,
}
#: a bare bound ("over 70") counts as an age only where the sentence or clause ends right after it
_BARE_BOUND_END = re.compile(r"^\s*(?:[.,;:)!?]|$)")

_AGE_RANGE = re.compile(
    r"\b(?:between\s+)?(?P<a>\d{1,3})\s*(?:-|–|—|to|and)\s*(?P<b>\d{1,3})\s*(?:years?|yrs?)(?:[\s-]*old|\s+of\s+age)?\b", re.I
)
_AGE_ONE = re.compile(
    r"\b(?P<n>\d{1,3})[\s-]*(?:years?|yrs?)[\s-]*(?:old|of\s+age)\b"
    r"|\baged?\s+(?:of\s+|about\s+|around\s+|approximately\s+|roughly\s+|maybe\s+|perhaps\s+)?(?P<n2>\d{1,3})\b",
    re.I,
)
_AGE_BOUND = re.compile(
    r"\b(?P<op>over|above|older than|more than|beyond|past|under|below|younger than|less than)\s+(?:the\s+age\s+of\s+|age\s+)?"
    r"(?P<n>\d{1,3})(?P<years>\s*(?:years?|yrs?)(?:[\s-]*old)?)?(?=(?P<after>[^\n]{0,3}))",
    re.I,
)
_AGE_DECADE = re.compile(
    r"\b(?:(?P<part>early|mid|late)[\s-]*)?(?:(?P<word>twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties)"
    r"|(?<![\d'’])(?P<digit>[1-9])0['’]?s)\b",
    re.I,
)
_AGE_TEENS = re.compile(r"\b(?:(?P<part>early|mid|late)[\s-]*)?teens\b", re.I)
_AGE_WORDS: tuple[tuple[re.Pattern[str], tuple[int, int | None]], ...] = tuple(
    (re.compile(p, re.I), r)
    for p, r in (
        (r"\b(?:new-?born|infant|baby|babies)\b", (0, 2)),
        (r"\btoddlers?\b", (1, 3)),
        (r"\b(?:pre-?teen|tween)s?\b", (9, 12)),
        (r"\b(?:child|children|kid|kids|little (?:boy|girl))\b", (2, 12)),
        (r"\b(?:teen|teenager|teenagers|teenage|adolescent|adolescents)\b", (13, 19)),
        (r"\byoung adults?\b", (18, 30)),
        (r"\bmiddle[\s-]aged\b", (40, 64)),
        (r"\b(?:elderly|senior citizens?|seniors|old-aged|aged (?:man|woman|person)|"
         r"(?:an?|the) old (?:man|woman|person|lady|gentleman))\b", (60, None)),
    )
)


def _decade_range(part: str | None, decade: int) -> tuple[int, int]:
    if not part:
        return decade, decade + 9
    return {"early": (decade, decade + 3), "mid": (decade + 3, decade + 6), "late": (decade + 6, decade + 9)}[part.lower()]


def age_statements(text: str) -> list[tuple[int, int | None, str, int]]:
    """(low, high or None, phrase, position) for every age statement in the text that is not negated."""
    found: list[tuple[int, int | None, str, int]] = []
    taken: list[tuple[int, int]] = []

    def add(lo: int, hi: int | None, m: re.Match[str]) -> None:
        if any(s <= m.start() < e for s, e in taken) or _negated(text, m.start()):
            return
        taken.append((m.start(), m.end()))
        found.append((lo, hi, m.group(0).strip(), m.start()))

    for m in _AGE_RANGE.finditer(text):
        a, b = int(m.group("a")), int(m.group("b"))
        if a <= b <= 120:
            add(a, b, m)
    for m in _AGE_ONE.finditer(text):
        n = int(m.group("n") or m.group("n2"))
        if n <= 120:
            add(n, n, m)
    for m in _AGE_BOUND.finditer(text):
        n = int(m.group("n"))
        if n > 120 or (not m.group("years") and not _BARE_BOUND_END.match(m.group("after") or "")):
            continue
        if m.group("op").lower() in ("under", "below", "younger than", "less than"):
            add(0, max(0, n - 1), m)
        else:
            add(n, None, m)
    for m in _AGE_DECADE.finditer(text):
        decade = _DECADES[m.group("word").lower()] if m.group("word") else int(m.group("digit")) * 10
        add(*_decade_range(m.group("part"), decade), m)
    for m in _AGE_TEENS.finditer(text):
        part = (m.group("part") or "").lower()
        add(*{"early": (13, 15), "mid": (14, 17), "late": (17, 19)}.get(part, (13, 19)), m)
    for rx, (lo, hi) in _AGE_WORDS:
        for m in rx.finditer(text):
            add(lo, hi, m)
    return sorted(found, key=lambda f: f[3])


def age_conflicts_with(lo: int, hi: int | None, label: str, tolerance: int) -> bool:
    """True when the stated range [lo, hi] misses the label bin widened by `tolerance` years each side."""
    bin_range = AGE_RANGES.get(label)
    if bin_range is None:
        return False
    blo, bhi = bin_range
    if hi is not None and hi < blo - tolerance:
        return True
    return bhi is not None and lo > bhi + tolerance


# --------------------------------------------------------------------------------------------- ethnicity

_PERSON = (
    r"(?:man|men|woman|women|person|people|male|female|boy|girl|child|kid|baby|adult|teen|teenager|individual|"
    r"subject|gentleman|lady|guy)"
)
_AGE_ADJ = r"(?:(?:young|old|older|elderly|middle-aged|teenage|adult|little|baby)\s+)?"
_ETHNIC_NOUN = r"(?:ethnicity|race|ethnic\s+(?:background|origin|group|appearance)|descent|heritage|ancestry)"

#: (pattern, FairFace race codes the statement is compatible with)
_ETHNIC_TERMS: tuple[tuple[str, frozenset[str]], ...] = (
    (r"south[\s-]?east asians?", frozenset({"southeast_asian"})),
    (r"east asians?", frozenset({"east_asian"})),
    (r"south asians?", frozenset({"indian"})),
    (r"(?:chinese|japanese|korean|mongolian|taiwanese)", frozenset({"east_asian"})),
    (r"(?:filipinos?|filipinas?|vietnamese|thai|indonesians?|malaysians?|cambodians?|burmese)", frozenset({"southeast_asian"})),
    (r"(?<!american )(?<!native )indians?|pakistanis?|bangladeshis?|sri lankans?|nepal(?:i|ese)s?", frozenset({"indian"})),
    (r"african[\s-]americans?", frozenset({"black"})),
    (r"north africans?", frozenset({"middle_eastern"})),
    (r"(?<!north )africans?", frozenset({"black"})),
    (r"caucasians?", frozenset({"white", "middle_eastern"})),
    (r"middle[\s-]eastern(?:ers?)?|arabs?|arabic|arabian|persians?|iranians?", frozenset({"middle_eastern"})),
    (r"latinos?|latinas?|latinx|latin american|hispanics?", frozenset({"latino_hispanic"})),
    (r"(?<!east )(?<!south )(?<!southeast )(?<!south-east )asians?", frozenset({"east_asian", "southeast_asian", "indian"})),
)
_COLOUR = {"black": frozenset({"black"}), "white": frozenset({"white"})}
_ETHNIC_RX = tuple((re.compile(rf"\b(?:{p})\b", re.I), codes) for p, codes in _ETHNIC_TERMS)
_COLOUR_RX = re.compile(
    rf"\b(?P<c1>black|white)\s+{_AGE_ADJ}{_PERSON}\b"
    rf"|\b(?P<c2>black|white)\s+{_ETHNIC_NOUN}\b"
    rf"|\b{_ETHNIC_NOUN}\s+(?:is|was|appears(?:\s+to\s+be)?|seems(?:\s+to\s+be)?|looks|:|of|as)\s+(?:\w+\s+)?(?P<c3>black|white)\b",
    re.I,
)
_MIXED = re.compile(r"\b(?:mixed(?:[\s-]race)?|multiracial|multi-racial|biracial|bi-racial|multi-ethnic|multiethnic)\b", re.I)


def ethnicity_statements(text: str) -> list[tuple[frozenset[str], str, int]]:
    """(compatible race codes, phrase, position) for every ethnicity statement not negated.

    A text that calls the person mixed or multiracial makes no single-group statement: nothing is returned.
    """
    if _MIXED.search(text):
        return []
    out: list[tuple[frozenset[str], str, int]] = []
    taken: list[tuple[int, int]] = []
    for rx, codes in _ETHNIC_RX:
        for m in rx.finditer(text):
            if any(s <= m.start() < e for s, e in taken) or _negated(text, m.start()):
                continue
            taken.append((m.start(), m.end()))
            out.append((codes, m.group(0), m.start()))
    for m in _COLOUR_RX.finditer(text):
        colour = next(g for g in (m.group("c1"), m.group("c2"), m.group("c3")) if g)
        if not _negated(text, m.start()):
            out.append((_COLOUR[colour.lower()], m.group(0).strip(), m.start()))
    return sorted(out, key=lambda o: o[2])


# ------------------------------------------------------------------------------------------------- check


def label_of(attributes: dict[str, AttributeValue], name: str) -> str | None:
    """The attribute's value when it came from the dataset's labels, else None."""
    v = attributes.get(name)
    return str(v.value) if v is not None and v.source == "label" else None


def find_conflicts(texts: list[tuple[str, str]], attributes: dict[str, AttributeValue], age_tolerance: int) -> list[Conflict]:
    """Every statement in `texts` ((where, text) pairs) that contradicts a label in `attributes`."""
    gender, age, race = label_of(attributes, "gender"), label_of(attributes, "age"), label_of(attributes, "race")
    if not (gender or age or race):
        return []
    found: list[Conflict] = []
    for where, text in texts:
        if gender in ("male", "female"):
            for code, word, _ in gender_statements(text):
                if code != gender:
                    found.append(Conflict("gender", word, gender, where))
        if age:
            for lo, hi, phrase, _ in age_statements(text):
                if age_conflicts_with(lo, hi, age, age_tolerance):
                    found.append(Conflict("age", phrase, age, where))
        if race:
            for codes, phrase, _ in ethnicity_statements(text):
                if race not in codes:
                    found.append(Conflict("race", phrase, race, where))
    return found
