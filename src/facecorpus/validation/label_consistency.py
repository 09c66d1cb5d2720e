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

from ..labels import AGE_RANGES, compatible
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

_AGE_WORDS: tuple[tuple[str, tuple[int, int | None]], ...] = (
    (r"(?:new-?born|infant|baby|babies)", (0, 2)),
    (r"toddlers?", (1, 3)),
    (r"(?:pre-?teen|tween)s?", (9, 12)),
    (r"(?:child|children|kid|kids|little (?:boy|girl))", (2, 12)),
    (r"(?:teen|teenager|teenagers|teenage|adolescent|adolescents)", (13, 19)),
    (r"young adults?", (18, 30)),
    (r"middle[\s-]aged", (40, 64)),
    (r"(?:elderly|senior citizens?|seniors|old-aged|aged (?:man|woman|person)|(?:an?|the) old (?:man|woman|person|lady|gentleman))",
     (60, None)),
)
#: every kind of age statement in one scan; at a position the first alternative wins (ranges before single numbers)
_AGE = re.compile(
    r"(?P<range>\b(?:between\s+)?(?P<ra>\d{1,3})\s*(?:-|–|—|to|and)\s*(?P<rb>\d{1,3})\s*(?:years?|yrs?)(?:[\s-]*old|\s+of\s+age)?\b)"
    r"|(?P<one>\b(?P<n1>\d{1,3})[\s-]*(?:years?|yrs?)[\s-]*(?:old|of\s+age)\b"
    r"|\baged?\s+(?:of\s+|about\s+|around\s+|approximately\s+|roughly\s+|maybe\s+|perhaps\s+)?(?P<n2>\d{1,3})\b)"
    r"|(?P<bound>\b(?P<op>over|above|older than|more than|beyond|past|under|below|younger than|less than)\s+"
    r"(?:the\s+age\s+of\s+|age\s+)?(?P<bn>\d{1,3})(?P<years>\s*(?:years?|yrs?)(?:[\s-]*old)?)?(?=(?P<after>[^\n]{0,3})))"
    r"|(?P<decade>\b(?:(?P<dpart>early|mid|late)[\s-]*)?(?:(?P<dword>twenties|thirties|forties|fifties|sixties|seventies|"
    r"eighties|nineties)|(?<![\d'’])(?P<ddigit>[1-9])0['’]?s)\b)"
    r"|(?P<teens>\b(?:(?P<tpart>early|mid|late)[\s-]*)?teens\b)"
    + "".join(f"|(?P<w{i}>\\b{p}\\b)" for i, (p, _) in enumerate(_AGE_WORDS)),
    re.I,
)


def _decade_range(part: str | None, decade: int) -> tuple[int, int]:
    if not part:
        return decade, decade + 9
    return {"early": (decade, decade + 3), "mid": (decade + 3, decade + 6), "late": (decade + 6, decade + 9)}[part.lower()]


def _age_range(m: re.Match[str]) -> tuple[int, int | None] | None:
    kind = m.lastgroup if m.lastgroup and m.lastgroup.startswith("w") else next(
        k for k in ("range", "one", "bound", "decade", "teens") if m.group(k))
    if kind == "range":
        a, b = int(m.group("ra")), int(m.group("rb"))
        return (a, b) if a <= b <= 120 else None
    if kind == "one":
        n = int(m.group("n1") or m.group("n2"))
        return (n, n) if n <= 120 else None
    if kind == "bound":
        n = int(m.group("bn"))
        if n > 120 or (not m.group("years") and not _BARE_BOUND_END.match(m.group("after") or "")):
            return None
        return (0, max(0, n - 1)) if m.group("op").lower() in ("under", "below", "younger than", "less than") else (n, None)
    if kind == "decade":
        decade = _DECADES[m.group("dword").lower()] if m.group("dword") else int(m.group("ddigit")) * 10
        return _decade_range(m.group("dpart"), decade)
    if kind == "teens":
        return {"early": (13, 15), "mid": (14, 17), "late": (17, 19)}.get((m.group("tpart") or "").lower(), (13, 19))
    return _AGE_WORDS[int(kind[1:])][1]


def age_statements(text: str) -> list[tuple[int, int | None, str, int]]:
    """(low, high or None, phrase, position) for every age statement in the text that is not negated."""
    found: list[tuple[int, int | None, str, int]] = []
    for m in _AGE.finditer(text):
        r = _age_range(m)
        if r is not None and not _negated(text, m.start()):
            found.append((r[0], r[1], m.group(0).strip(), m.start()))
    return found


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
_COLOUR_PATTERN = (
    rf"\b(?P<c1>black|white)\s+{_AGE_ADJ}{_PERSON}\b"
    rf"|\b(?P<c2>black|white)\s+{_ETHNIC_NOUN}\b"
    rf"|\b{_ETHNIC_NOUN}\s+(?:is|was|appears(?:\s+to\s+be)?|seems(?:\s+to\s+be)?|looks|:|of|as)\s+(?:\w+\s+)?(?P<c3>black|white)\b"
)
#: group names e<i> are the terms above; colour words ("a Black woman") are a second scan, run only when present
_ETHNIC = re.compile("|".join(f"(?P<e{i}>\\b(?:{p})\\b)" for i, (p, _) in enumerate(_ETHNIC_TERMS)), re.I)
_COLOUR_RX = re.compile(_COLOUR_PATTERN, re.I)
#: substrings one of which every term above contains (a cheap test before the scan)
_TERM_KEYS = ("asia", "chin", "japan", "korea", "mongol", "taiwan", "filipin", "vietnam", "thai", "indones", "malay",
              "cambod", "burm", "india", "pakistan", "bangladesh", "sri lank", "nepal", "africa", "caucas", "middle",
              "arab", "persia", "iran", "latin", "hispanic")
_MIXED = re.compile(r"\b(?:mixed(?:[\s-]race)?|multiracial|multi-racial|biracial|bi-racial|multi-ethnic|multiethnic)\b", re.I)


def ethnicity_statements(text: str) -> list[tuple[frozenset[str], str, int]]:
    """(compatible race codes, phrase, position) for every ethnicity statement not negated.

    A text that calls the person mixed or multiracial makes no single-group statement: nothing is returned.
    """
    if _MIXED.search(text):
        return []
    out: list[tuple[frozenset[str], str, int]] = []
    lower = text.lower()
    if any(k in lower for k in _TERM_KEYS):
        for m in _ETHNIC.finditer(text):
            if not _negated(text, m.start()):
                out.append((_ETHNIC_TERMS[int((m.lastgroup or "e0")[1:])][1], m.group(0).strip(), m.start()))
    if "black" in lower or "white" in lower:
        for m in _COLOUR_RX.finditer(text):
            if not _negated(text, m.start()):
                colour = m.group("c1") or m.group("c2") or m.group("c3")
                out.append((_COLOUR[colour.lower()], m.group(0).strip(), m.start()))
    return sorted(out, key=lambda o: o[2])


# ------------------------------------------------------------------------------------------------- check


_TOKEN = re.compile(r"[a-z0-9]+")
_GENDER_WORDS = frozenset(_MALE.split("|") + _FEMALE.split("|"))
#: words without which no age statement can match (numbers are checked apart)
_AGE_TRIGGERS = frozenset(
    "newborn born infant baby babies toddler toddlers preteen preteens pre teen tween tweens child children kid kids "
    "teen teens teenager teenagers teenage adolescent adolescents young adult adults middle aged elderly senior "
    "seniors old twenties thirties forties fifties sixties seventies eighties nineties".split()
)
#: words without which no ethnicity statement can match
_ETHNIC_TRIGGERS = frozenset(
    "asian asians chinese japanese korean mongolian taiwanese filipino filipinos filipina filipinas vietnamese thai "
    "indonesian indonesians malaysian malaysians cambodian cambodians burmese indian indians pakistani pakistanis "
    "bangladeshi bangladeshis sri nepali nepalis nepalese african africans caucasian caucasians middle arab arabs "
    "arabic arabian persian persians iranian iranians latino latinos latina latinas latinx latin hispanic hispanics "
    "black white".split()
)


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
        # a word-set look first: most answers say nothing about age or ethnicity, and a scan costs more
        lower = text.lower()
        words = set(_TOKEN.findall(lower))
        if gender in ("male", "female") and words & _GENDER_WORDS:
            for code, word, _ in gender_statements(text):
                if code != gender:
                    found.append(Conflict("gender", word, gender, where))
        if age and (words & _AGE_TRIGGERS or "little boy" in lower or "little girl" in lower
                    or any(w[:1].isdigit() for w in words)):
            for lo, hi, phrase, _ in age_statements(text):
                if age_conflicts_with(lo, hi, age, age_tolerance):
                    found.append(Conflict("age", phrase, age, where))
        if race and words & _ETHNIC_TRIGGERS:
            for codes, phrase, _ in ethnicity_statements(text):
                # a coarser label (UTKFace's 'asian', 'other') agrees with the groups it holds
                if not any(compatible("race", race, c) for c in codes):
                    found.append(Conflict("race", phrase, race, where))
    return found
