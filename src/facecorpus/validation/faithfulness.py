"""Does an LLM rewrite of a grounded template text keep every fact, and add none?

The rewrite mode (FaceCaption-15M's attributes → template → LLM rewrite) lets a small model only
rephrase what the `templates` generator wrote from labels and measurements. `unfaithful(template,
rewrite)` reads both texts with the same extractors and returns why the rewrite may not replace the
template, or None:

- **gender, age, ethnicity** (`label_consistency`'s readers): each one the template states must be stated
  by the rewrite compatibly (same gender; an age range overlapping the template's, widened by
  `age_tolerance`; an ethnicity compatible with the template's), and the rewrite may state none the
  template does not — no other gender, no age outside the range, no other group — unless the sample's
  labels say the same;
- **expression**: each expression the template names (happy, neutral, sad, angry, surprise, fear,
  disgust, with their common synonyms) survives, is not negated ("not happy"), and no other one appears;
- **head pose**: each direction the template gives (left, right, up, down, clockwise, counter-clockwise)
  survives, and the rewrite gives no other one;
- **quality words**: dark, bright, evenly exposed, blurred, soft, sharp, low/high/moderate contrast —
  each survives, and the rewrite adds none (sharp against blurred, dark against bright, or any new one);
- **mouth**: open or closed, as the template says it;
- **length**: a rephrasing does not double the text (more than twice the words and 8 more): what grows
  adds content the facts do not hold (an invented scar);
- **numbers** (outside age statements): every number of the template survives, and the rewrite brings
  no new one.

What it does not see: an invented detail outside these kinds ("wearing glasses"), a fact moved to the
wrong person, a changed meaning in words it does not read. The junk checks run on the rewrite too.
"""

from __future__ import annotations

import re

from ..labels import AGE_RANGES
from .label_consistency import age_statements, ethnicity_statements, gender_statements

#: expression label → words that name it (a word matches by prefix when its entry ends with '*')
EXPRESSIONS: dict[str, tuple[str, ...]] = {
    "happy": ("happy", "happi*", "smil*", "joy*", "cheer*", "grin*", "laugh*", "delight*"),
    "neutral": ("neutral", "calm*", "blank", "composed", "expressionless", "impassive", "relaxed"),
    "sad": ("sad", "sadly", "sadness", "unhapp*", "sorrow*", "gloom*", "melanchol*", "downcast", "upset"),
    "angry": ("angry", "angrily", "anger", "furious", "annoyed", "irritat*", "mad", "cross", "scowl*", "frown*"),
    "surprise": ("surpris*", "astonish*", "amazed", "amazement", "shock*", "startled", "stunned"),
    "fear": ("fear*", "afraid", "scared", "frighten*", "terrif*", "anxious", "worried", "nervous"),
    "disgust": ("disgust*", "revuls*", "repuls*", "grossed"),
}

#: pose directions: name → words; OPPOSITE pairs may not both appear across template and rewrite
DIRECTIONS: dict[str, tuple[str, ...]] = {
    "left": ("left", "leftward*"),
    "right": ("right", "rightward*"),
    "up": ("up", "upward*", "upwards", "raised", "lifted"),
    "down": ("down", "downward*", "downwards", "lowered"),
    "clockwise": ("clockwise",),
    "counter-clockwise": ("counter-clockwise", "counterclockwise", "anticlockwise", "anti-clockwise"),
    "frontal": ("frontal", "frontally", "front", "straight", "head-on"),
}
OPPOSITE_DIRECTIONS = {("left", "right"), ("up", "down"), ("clockwise", "counter-clockwise")}

#: quality words the templates write (prompting.phrases), with what a rewrite may say instead
QUALITY: dict[str, tuple[str, ...]] = {
    "dark": ("dark", "darker", "dim*", "underexposed", "under-exposed", "low-light", "poorly lit"),
    "bright": ("bright", "brighter", "brightly", "overexposed", "over-exposed"),
    "evenly exposed": ("even*", "well-exposed", "well exposed", "well-lit", "well lit", "balanced"),
    "blurred": ("blur*", "out of focus", "out-of-focus", "unfocused"),
    "slightly soft": ("soft*", "slightly blur*", "a little blur*"),
    "sharp": ("sharp*", "crisp*", "in focus", "in-focus", "clear", "clearly detailed"),
    "low contrast": ("low contrast", "low-contrast", "flat", "little contrast"),
    "high contrast": ("high contrast", "high-contrast", "strong contrast", "contrasty"),
    "moderate contrast": ("moderate contrast", "moderate-contrast", "medium contrast", "average contrast"),
}
OPPOSITE_QUALITY = {("dark", "bright"), ("blurred", "sharp"), ("slightly soft", "sharp"),
                    ("low contrast", "high contrast")}

#: the mouth, as the templates write it ("The mouth is open.")
MOUTH: dict[str, tuple[str, ...]] = {
    "open": ("open", "opened", "parted", "agape"),
    "closed": ("closed", "shut"),
}

_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])|\d+x\d+")
_WORDS = re.compile(r"[a-z]+(?:-[a-z]+)*")


def _compile(names: dict[str, tuple[str, ...]]) -> dict[str, re.Pattern[str]]:
    out = {}
    for name, entries in names.items():
        alts = [re.escape(e[:-1]) + r"[a-z-]*" if e.endswith("*") else re.escape(e) for e in entries]
        out[name] = re.compile(r"(?<![a-z-])(?:" + "|".join(alts) + r")(?![a-z-])", re.IGNORECASE)
    return out


_EXPRESSION_RX = _compile(EXPRESSIONS)
#: "not happy", "isn't smiling", "no smile": an expression named only to deny it
_NEGATED_EXPRESSION = {
    name: re.compile(r"\b(?:not|n't|no|never|without|hardly|barely)\s+(?:\w+\s+)?" + rx.pattern, re.IGNORECASE)
    for name, rx in _compile(EXPRESSIONS).items()
}
_DIRECTION_RX = _compile(DIRECTIONS)
_QUALITY_RX = _compile(QUALITY)
_MOUTH_RX = _compile(MOUTH)
#: "no notable turn" states that a direction is absent; such phrases name no direction
_NO_DIRECTION = re.compile(r"\bno (?:notable|noticeable|visible|significant|clear)\s+[\w-]+(?:\s+[\w-]+)?", re.IGNORECASE)


def named(text: str, patterns: dict[str, re.Pattern[str]]) -> set[str]:
    """The names whose words occur in `text`."""
    return {name for name, rx in patterns.items() if rx.search(text)}


def _quality_named(text: str) -> set[str]:
    found = named(text, _QUALITY_RX)
    if "slightly soft" in found and "blurred" in found and not re.search(r"\bblur", text, re.I):
        found.discard("blurred")
    if "slightly soft" in found and "sharp" in found and re.search(r"not (?:\w+ )?sharp", text, re.I):
        found.discard("sharp")
    return found


def _clash(a: set[str], b: set[str], opposites: set[tuple[str, str]]) -> tuple[str, str] | None:
    for x, y in opposites:
        if (x in a and y in b) or (y in a and x in b):
            return (x, y) if x in a else (y, x)
    return None


def _age_ranges(text: str) -> list[tuple[int, int | None, str]]:
    return [(lo, hi, phrase) for lo, hi, phrase, _ in age_statements(text)]


def _overlap(a: tuple[int, int | None], b: tuple[int, int | None], tolerance: int) -> bool:
    alo, ahi = a[0] - tolerance, None if a[1] is None else a[1] + tolerance
    blo, bhi = b
    return (ahi is None or blo <= ahi) and (bhi is None or alo <= bhi)


def _demographics(template: str, rewrite: str, tolerance: int, known: dict[str, str]) -> str | None:
    """Gender, age and ethnicity: kept, and none added unless the labels (`known`) say the same."""
    tg = {c for c, _, _ in gender_statements(template)}
    rg = [(c, w) for c, w, _ in gender_statements(rewrite)]  # in text order: the detail names the first
    if tg and not any(c in tg for c, _ in rg):
        return f"the gender ({'/'.join(sorted(tg))}) is lost"
    allowed_g = tg or ({known["gender"]} if known.get("gender") else set())
    if other := next((w for c, w in rg if c not in allowed_g), None):
        said_by = (f"the template says {'/'.join(sorted(tg))}" if tg else
                   f"the labels say {known['gender']}" if known.get("gender") else "the template says no gender")
        return f"says \"{other}\" but {said_by}"
    t_ages = [(lo, hi) for lo, hi, _ in _age_ranges(template)]
    r_ages = _age_ranges(rewrite)
    if t_ages and not any(_overlap(t, (rlo, rhi), tolerance) for t in t_ages for rlo, rhi, _ in r_ages):
        return "the age is lost"
    allowed_a = t_ages or ([AGE_RANGES[known["age"]]] if known.get("age") in AGE_RANGES else [])
    for rlo, rhi, phrase in r_ages:
        if not any(_overlap(t, (rlo, rhi), tolerance) for t in allowed_a):
            return f"says \"{phrase}\", an age " + ("the template does not say" if t_ages else "neither the template nor the labels say")
    t_eth = [codes for codes, _, _ in ethnicity_statements(template)]
    r_eth = [(codes, p) for codes, p, _ in ethnicity_statements(rewrite)]
    if t_eth and not any(codes & tc for codes, _ in r_eth for tc in t_eth):
        return "the ethnicity is lost"
    allowed_e = t_eth or ([frozenset({known["race"]})] if known.get("race") else [])
    for codes, phrase in r_eth:
        if not any(codes & tc for tc in allowed_e):
            return f"says \"{phrase}\", an ethnicity " + ("the template does not say" if t_eth else "neither the template nor the labels say")
    return None


def _numbers(text: str) -> set[str]:
    """The numbers of `text` outside its age statements (those the age check reads)."""
    for _, _, phrase, _ in age_statements(text):
        text = text.replace(phrase, " ")
    return set(_NUMBER.findall(text))


def unfaithful(template: str, rewrite: str, known: dict[str, str] | None = None, age_tolerance: int = 2) -> str | None:
    """Why `rewrite` may not stand for `template` (a fact lost, changed or added), or None.

    `known`: the sample's labelled gender, age and race codes; a rewrite may state them although
    its template did not ("He looks happy" for "The person looks happy" when the label says male).
    """
    if why := _demographics(template, rewrite, age_tolerance, known or {}):
        return why
    te, re_ = named(template, _EXPRESSION_RX), named(rewrite, _EXPRESSION_RX)
    if lost := sorted(te - re_):
        return f"the expression ({', '.join(lost)}) is lost"
    if added := sorted(re_ - te):
        return f"names an expression the template does not: {', '.join(added)}"
    if negated := next((n for n in sorted(te) if _NEGATED_EXPRESSION[n].search(rewrite)
                        and not _NEGATED_EXPRESSION[n].search(template)), None):
        return f"negates the expression ({negated})"
    td = named(_NO_DIRECTION.sub(" ", template), _DIRECTION_RX)
    rd = named(_NO_DIRECTION.sub(" ", rewrite), _DIRECTION_RX)
    if lost := sorted(td - rd - {"frontal"}):
        return f"the head direction ({', '.join(lost)}) is lost"
    if clash := _clash(td, rd, OPPOSITE_DIRECTIONS):
        return f"turns the head {clash[1]} where the template says {clash[0]}"
    if added := sorted(rd - td - {"frontal"}):
        return f"gives a head direction the template does not: {', '.join(added)}"
    tq, rq = _quality_named(template), _quality_named(rewrite)
    if lost := sorted(tq - rq):
        return f"the quality words ({', '.join(lost)}) are lost"
    if clash := _clash(tq, rq, OPPOSITE_QUALITY):
        return f"calls the image {clash[1]} where the template says {clash[0]}"
    if added := sorted(rq - tq):
        return f"says the image is {', '.join(added)}, which the template does not"
    if re.search(r"\bmouth", template, re.IGNORECASE):
        tm, rm = named(template, _MOUTH_RX), named(rewrite, _MOUTH_RX)
        if lost := sorted(tm - rm):
            return f"the mouth ({', '.join(lost)}) is lost"
        if added := sorted(rm - tm):
            return f"calls the mouth {', '.join(added)} where the template says {', '.join(sorted(tm))}"
    tw, rw = len(_WORDS.findall(template.lower())), len(_WORDS.findall(rewrite.lower()))
    if rw > max(2 * tw, tw + 8):
        return f"grows from {tw} to {rw} words: a rephrasing adds no content"
    tn, rn = _numbers(template), _numbers(rewrite)
    if lost := sorted(tn - rn):
        return f"the number(s) {', '.join(lost)} are lost"
    if added := sorted(rn - tn):
        return f"brings number(s) the template does not have: {', '.join(added)}"
    return None
