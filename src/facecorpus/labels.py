"""The attribute vocabulary: one declaration per attribute, whichever datasets label it.

A source maps its own columns and codes onto these attributes (CelebA's `Smiling` ±1 → `smiling`,
RAF-DB's `4` → `expression: happy`, UTKFace's race `2` → `race: asian`); the QA generator, the label
checks and the card read only these declarations. Three kinds:

- `Category`: one value from a closed set of codes (`gender`, `age`, `race`, `expression`);
- `Flag`: present or absent (CelebA's attributes); the value is a bool;
- `Years`: a number of years (`age_years`, UTKFace's exact age; the `age` bin is derived from it).

Codes are the normalised values the pipeline reasons with; a record keeps the dataset's spelling in
`AttributeValue.raw`. FairFace's spellings are the canonical raw forms of `gender`, `age` and `race`
(`normalise`). A code can `overlap` others when one dataset's group contains another's (UTKFace's
`asian` holds FairFace's `east_asian` and `southeast_asian`): overlapping codes never contradict each
other and are never offered side by side as the right and a wrong option. Codes in `unaskable`
(UTKFace's `other`) are kept as labels but no question is asked about them.

Recipes may declare further attributes (the generic labelled source); `Vocabulary` holds the built-in
ones plus those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

AGE_BINS: dict[str, str] = {
    "0-2": "0-2",
    "3-9": "3-9",
    "10-19": "10-19",
    "20-29": "20-29",
    "30-39": "30-39",
    "40-49": "40-49",
    "50-59": "50-59",
    "60-69": "60-69",
    "more than 70": "70+",
}
GENDERS: dict[str, str] = {"Male": "male", "Female": "female"}
RACES: dict[str, str] = {
    "East Asian": "east_asian",
    "Indian": "indian",
    "Black": "black",
    "White": "white",
    "Middle Eastern": "middle_eastern",
    "Latino_Hispanic": "latino_hispanic",
    "Southeast Asian": "southeast_asian",
}

#: (low, high) age in years covered by each normalised bin; 70+ has no upper bound
AGE_RANGES: dict[str, tuple[int, int | None]] = {
    "0-2": (0, 2),
    "3-9": (3, 9),
    "10-19": (10, 19),
    "20-29": (20, 29),
    "30-39": (30, 39),
    "40-49": (40, 49),
    "50-59": (50, 59),
    "60-69": (60, 69),
    "70+": (70, None),
}


def age_bin_of(years: float) -> str:
    """The normalised age bin (e.g. '30-39', '70+') holding an age in years."""
    whole = max(0, int(years))
    for code, (low, high) in AGE_RANGES.items():
        if whole >= low and (high is None or whole <= high):
            return code
    return "70+"


# ------------------------------------------------------------------------------------------ declarations


@dataclass(frozen=True)
class Category:
    """An attribute with one value from a closed set of codes.

    `words[code]` is the value inside a sentence ("happy", "30 to 39 years old", "of East Asian
    ethnicity"), read after `verb` ("The person looks happy."); `options[code]` is its text as a
    multiple-choice option ("Happy", "30-39").
    """

    name: str
    noun: str
    verb: str
    question: str
    mcq: str
    words: Mapping[str, str]
    options: Mapping[str, str]
    raw: Mapping[str, str] = field(default_factory=dict)
    overlaps: Mapping[str, frozenset[str]] = field(default_factory=dict)
    unaskable: frozenset[str] = frozenset()
    kind: Literal["category"] = "category"

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.words)

    def askable(self) -> tuple[str, ...]:
        return tuple(v for v in self.words if v not in self.unaskable)

    def sentence(self, code: str) -> str:
        return f"The person {self.verb} {self.words[code]}."

    def yes_no(self, code: str) -> str:
        """'Does the person look happy?' — the verb turned into a question."""
        head, _, rest = self.verb.partition(" ")
        if head == "is":
            return f"Is the person {rest} {self.words[code]}?"
        base = {"has": "have", "looks": "look", "appears": "appear", "seems": "seem"}.get(head, head)
        return " ".join(p for p in ("Does the person", base, rest, self.words[code]) if p) + "?"

    def compatible(self, a: str, b: str) -> bool:
        """True when a label `a` does not rule out `b` (equal, or one group holds the other)."""
        return a == b or b in self.overlaps.get(a, frozenset()) or a in self.overlaps.get(b, frozenset())


FlagForm = Literal["have", "wear", "be", "look"]


@dataclass(frozen=True)
class Flag:
    """A present/absent attribute. `phrase` is what `form` takes: have 'arched eyebrows', wear 'a hat',
    be 'smiling', look 'young'; `subject` is whose it is ('the person', 'the image'). `item` names it in
    a list of features ('a smile'); flags without one stay out of lists and set questions. `subjective`
    flags (CelebA's Attractive) are kept as labels but asked about only when a recipe says so."""

    name: str
    form: FlagForm
    phrase: str
    item: str | None = None
    subject: str = "the person"
    subjective: bool = False
    kind: Literal["flag"] = "flag"

    def _verbs(self) -> tuple[str, str, str]:
        """(question head, positive verb, negative verb)."""
        return {
            "have": ("Does {s} have", "has", "does not have"),
            "wear": ("Is {s} wearing", "is wearing", "is not wearing"),
            "be": ("Is {s}", "is", "is not"),
            "look": ("Does {s} look", "looks", "does not look"),
        }[self.form]

    def question(self) -> str:
        return f"{self._verbs()[0].format(s=self.subject)} {self.phrase}?"

    def sentence(self, present: bool) -> str:
        _, pos, neg = self._verbs()
        return f"{self.subject[:1].upper()}{self.subject[1:]} {pos if present else neg} {self.phrase}."


@dataclass(frozen=True)
class Years:
    """A number of years (an exact age)."""

    name: str
    noun: str
    question: str
    low: int = 0
    high: int = 120
    kind: Literal["years"] = "years"

    def sentence(self, years: int) -> str:
        unit = "year" if years == 1 else "years"
        return f"The person appears to be about {years} {unit} old."


Attribute = Category | Flag | Years


def _category(name: str, noun: str, verb: str, question: str, mcq: str, table: Iterable[tuple[str, str, str]],
              **kw: object) -> Category:
    rows = list(table)
    return Category(name=name, noun=noun, verb=verb, question=question, mcq=mcq,
                    words=MappingProxyType({c: w for c, w, _ in rows}),
                    options=MappingProxyType({c: o for c, _, o in rows}), **kw)  # type: ignore[arg-type]


GENDER = _category(
    "gender", "gender", "appears to be", "What is the apparent gender of the person in the image?",
    "Which gender does the person in the image appear to be?",
    [("male", "male", "Male"), ("female", "female", "Female")],
    raw=MappingProxyType(GENDERS),
)
AGE = _category(
    "age", "age group", "appears to be", "How old does the person in the image appear to be?",
    "Which age range fits the person in the image best?",
    [("0-2", "0 to 2 years old", "0-2 years"), ("3-9", "3 to 9 years old", "3-9 years"),
     ("10-19", "10 to 19 years old", "10-19 years"), ("20-29", "20 to 29 years old", "20-29 years"),
     ("30-39", "30 to 39 years old", "30-39 years"), ("40-49", "40 to 49 years old", "40-49 years"),
     ("50-59", "50 to 59 years old", "50-59 years"), ("60-69", "60 to 69 years old", "60-69 years"),
     ("70+", "over 70 years old", "70 years or older")],
    raw=MappingProxyType(AGE_BINS),
)
RACE = _category(
    "race", "ethnicity", "appears to be", "What is the apparent ethnicity of the person in the image?",
    "Which ethnic group does the person in the image most likely belong to?",
    [("east_asian", "of East Asian ethnicity", "East Asian"), ("southeast_asian", "of Southeast Asian ethnicity", "Southeast Asian"),
     ("indian", "of Indian ethnicity", "Indian"), ("black", "of Black ethnicity", "Black"),
     ("white", "of White ethnicity", "White"), ("middle_eastern", "of Middle Eastern ethnicity", "Middle Eastern"),
     ("latino_hispanic", "of Latino or Hispanic ethnicity", "Latino or Hispanic"),
     # UTKFace's coarser groups: 'Asian' holds East and Southeast Asian; 'Others' holds Hispanic,
     # Latino and Middle Eastern (its authors' description) and is never asked about
     ("asian", "of Asian ethnicity", "Asian"), ("other", "of another ethnicity", "Other")],
    raw=MappingProxyType(RACES),
    overlaps=MappingProxyType({"asian": frozenset({"east_asian", "southeast_asian"}),
                               "other": frozenset({"middle_eastern", "latino_hispanic"})}),
    unaskable=frozenset({"other"}),
)
EXPRESSION = _category(
    "expression", "facial expression", "looks", "What facial expression does the person in the image show?",
    "Which facial expression does the person in the image show?",
    # the codes are the portable expression model's (FER-2013 classes) plus AffectNet's contempt
    [("neutral", "neutral", "Neutral"), ("happy", "happy", "Happy"), ("sad", "sad", "Sad"),
     ("surprise", "surprised", "Surprised"), ("fear", "afraid", "Fearful"), ("disgust", "disgusted", "Disgusted"),
     ("angry", "angry", "Angry"), ("contempt", "contemptuous", "Contemptuous")],
)
AGE_YEARS = Years("age_years", "age", "How old is the person in the image, in years?")
GLASSES = _category(
    "glasses", "kind of glasses", "is wearing", "What kind of glasses, if any, is the person wearing?",
    "Which kind of glasses is the person in the image wearing?",
    [("none", "no glasses", "No glasses"), ("eyeglasses", "eyeglasses", "Eyeglasses"),
     ("sunglasses", "sunglasses", "Sunglasses")],
)
OCCLUSION = _category(
    "occlusion", "occlusion of the face", "has", "How much of the person's face is hidden?",
    "How much of the face in the image is hidden (by hands, a mask, hair or objects)?",
    [("none", "a fully visible face", "None of it"), ("partial", "a partly hidden face", "Part of it"),
     ("heavy", "a mostly hidden face", "Most of it")],
)
HEAD_POSE = _category(
    "head_pose", "head pose", "is seen", "From which angle is the person's face seen?",
    "From which angle is the face in the image seen?",
    [("frontal", "from the front", "From the front"), ("three_quarter", "at a three-quarter angle", "At a three-quarter angle"),
     ("profile", "in profile", "In profile")],
)


def _flags(rows: Iterable[tuple[str, FlagForm, str, str | None]], **kw: object) -> list[Flag]:
    return [Flag(name=n, form=f, phrase=p, item=i, **kw) for n, f, p, i in rows]  # type: ignore[arg-type]


#: CelebA's attributes (Male is `gender`; No_Beard is `beard`, inverted, in the CelebA reader)
FLAGS: list[Flag] = [
    *_flags([
        ("five_o_clock_shadow", "have", "a five o'clock shadow", "a five o'clock shadow"),
        ("arched_eyebrows", "have", "arched eyebrows", "arched eyebrows"),
        ("bags_under_eyes", "have", "bags under the eyes", "bags under the eyes"),
        ("bald", "be", "bald", "a bald head"),
        ("bangs", "have", "bangs", "bangs"),
        ("big_lips", "have", "big lips", "big lips"),
        ("big_nose", "have", "a big nose", "a big nose"),
        ("black_hair", "have", "black hair", "black hair"),
        ("blond_hair", "have", "blond hair", "blond hair"),
        ("brown_hair", "have", "brown hair", "brown hair"),
        ("bushy_eyebrows", "have", "bushy eyebrows", "bushy eyebrows"),
        ("chubby", "look", "chubby", None),
        ("double_chin", "have", "a double chin", "a double chin"),
        ("eyeglasses", "wear", "eyeglasses", "eyeglasses"),
        ("goatee", "have", "a goatee", "a goatee"),
        ("gray_hair", "have", "gray hair", "gray hair"),
        ("heavy_makeup", "wear", "heavy makeup", "heavy makeup"),
        ("high_cheekbones", "have", "high cheekbones", "high cheekbones"),
        ("mustache", "have", "a mustache", "a mustache"),
        ("narrow_eyes", "have", "narrow eyes", "narrow eyes"),
        ("beard", "have", "a beard", "a beard"),
        ("oval_face", "have", "an oval face", "an oval face"),
        ("pale_skin", "have", "pale skin", "pale skin"),
        ("pointy_nose", "have", "a pointy nose", "a pointy nose"),
        ("receding_hairline", "have", "a receding hairline", "a receding hairline"),
        ("rosy_cheeks", "have", "rosy cheeks", "rosy cheeks"),
        ("sideburns", "have", "sideburns", "sideburns"),
        ("smiling", "be", "smiling", "a smile"),
        ("straight_hair", "have", "straight hair", "straight hair"),
        ("wavy_hair", "have", "wavy hair", "wavy hair"),
        ("wearing_earrings", "wear", "earrings", "earrings"),
        ("wearing_hat", "wear", "a hat", "a hat"),
        ("wearing_lipstick", "wear", "lipstick", "lipstick"),
        ("wearing_necklace", "wear", "a necklace", "a necklace"),
        ("wearing_necktie", "wear", "a necktie", "a necktie"),
        ("young", "look", "young", None),
    ]),
    Flag("mouth_slightly_open", "be", "slightly open", "a slightly open mouth", subject="the person's mouth"),
    Flag("blurry", "be", "blurry", None, subject="the image"),
    Flag("attractive", "look", "attractive", None, subjective=True),
]

BUILTIN: tuple[Attribute, ...] = (GENDER, AGE, RACE, EXPRESSION, AGE_YEARS, GLASSES, OCCLUSION, HEAD_POSE, *FLAGS)

#: what the LLM re-annotates (Face-MLLM on LAION-Face): CelebA's 40 attributes (Male as `gender`),
#: expression, apparent age range, glasses, occlusion and head pose
ANNOTATED: tuple[str, ...] = ("gender", "age", "expression", "glasses", "occlusion", "head_pose",
                              *(f.name for f in FLAGS))


def head_pose_of(yaw: float) -> str:
    """The `head_pose` code a measured yaw (degrees) falls in: under 20 frontal, 20-60 three-quarter, over
    60 profile (the bounds by which annotators usually tell them apart)."""
    turn = abs(yaw)
    return "frontal" if turn < 20 else ("three_quarter" if turn <= 60 else "profile")


class Vocabulary:
    """The attributes a run knows: the built-in declarations plus any a recipe declares."""

    def __init__(self, extra: Iterable[Attribute] = ()) -> None:
        self._by_name: dict[str, Attribute] = {a.name: a for a in BUILTIN}
        for a in extra:
            known = self._by_name.get(a.name)
            if known is not None and known != a:
                raise ValueError(f"attribute {a.name!r} is already declared; a recipe may use it but not redeclare it")
            self._by_name[a.name] = a

    def get(self, name: str) -> Attribute | None:
        return self._by_name.get(name)

    def __getitem__(self, name: str) -> Attribute:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return list(self._by_name)


VOCABULARY = Vocabulary()


def normalise(attribute: str, raw: str) -> str | None:
    """Normalised code of a raw FairFace label (`gender`, `age`, `race`), or None if not in the vocabulary."""
    declared = VOCABULARY[attribute]
    assert isinstance(declared, Category)
    return declared.raw.get(raw.strip())


def compatible(attribute: str, label: str, other: str) -> bool:
    """True when a label value does not rule out `other` (same code, or overlapping groups)."""
    declared = VOCABULARY.get(attribute)
    if isinstance(declared, Category):
        return declared.compatible(label, other)
    return label == other
