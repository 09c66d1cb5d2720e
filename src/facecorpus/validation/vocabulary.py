"""Word lists the text checks read: function words, and what each QA category must speak about.

A word matches a vocabulary entry when it equals the entry, or — for entries of four letters or more
ending in `*` — starts with it (`smil*` matches smile, smiling, smiles). Recipes extend or replace the
topic vocabularies (`validation.junk.topics`); a category without a vocabulary is not checked for
topic. The lists were written for the built-in categories and tuned on tests/data/quality_set.jsonl
(docs/trust.md §1b).
"""

from __future__ import annotations

#: words that carry no content of their own (articles, pronouns, auxiliaries, prepositions, fillers)
FUNCTION_WORDS: frozenset[str] = frozenset("""
a an the this that these those there here it its it's is are was were be been being am do does did done
has have had having of to in on at by for with from as into onto about above below over under between
through during before after up down out off than then so such and or but nor if not no yes very too also
just only can could may might must shall should will would i me my mine we us our you your yours he him
his she her hers they them their theirs who whom whose which what when where why how all any both each
few more most other some own same one ones s t
""".split())

#: a caption must name a person or a face: one of these words (or a word starting with a `*` stem)
PERSON_WORDS: tuple[str, ...] = (
    "person", "people", "man", "men", "woman", "women", "boy*", "girl*", "child*", "kid", "kids", "baby",
    "babies", "toddler*", "teen*", "adult*", "infant*", "guy", "guys", "lady", "ladies", "gentlem*",
    "individual*", "someone", "somebody", "subject", "face", "faces", "facial", "portrait*", "headshot*",
    "selfie*", "head", "he", "she", "his", "her", "him", "male", "female", "eyes", "smil*", "astronaut*",
    "worker*", "player*", "officer*", "student*", "actor*", "actress*", "human*", "elder*", "senior*",
    "mother", "father", "son", "daughter", "husband", "wife", "grandm*", "grandf*", "bride", "groom",
)

#: per built-in category: words an answer about it uses (one is enough)
TOPICS: dict[str, tuple[str, ...]] = {
    "demographics": (
        "aged", "old", "older", "young*", "year*", "decade*", "twent*", "thirt*", "fort*",
        "fift*", "sixt*", "sevent*", "eight*", "ninet*", "teen*", "adult*", "elder*", "senior*",
        "middle-aged", "middle", "child*", "kid", "baby", "babies", "infant*", "toddler*", "boy*", "girl*",
        "man", "men", "woman", "women", "male*", "female*", "masculin*", "feminin*",
        "guy", "lady", "gentlem*", "descent", "origin", "heritage",
        "white", "black", "asian", "indian", "caucasian", "african", "hispanic", "latino", "latina",
        "latinx", "middle", "eastern", "arab*", "east", "southeast", "south", "chinese", "japanese", "korean",
        "filipin*", "vietnam*", "thai", "pakistan*", "persian", "european", "he", "she",
    ),
    "expression": (
        "smil*", "grin*", "laugh*", "happ*",
        "joy*", "cheer*", "sad*", "unhapp*", "sorrow*", "cry*", "tear*", "angr*", "anger", "frown*",
        "scowl*", "furious", "annoy*", "irritat*", "surpris*", "shock*", "astonish*", "amaz*", "fear*",
        "afraid", "scared", "anxious", "anxiety", "worr*", "nervous", "disgust*", "contempt*", "neutral*",
        "calm*", "relax*", "serious*", "stern", "blank", "composed", "content*", "pleas*", "friendly",
        "warm*", "gentle", "soft", "focus*", "pensive", "confiden*", "tense", "tension",
        "mouth", "lips", "teeth", "eyebrow*", "brow*", "eyes", "gaze", "peaceful",
        "bored", "tired", "stress*", "excit*", "playful", "kind", "open", "closed", "engag*", "attent*",
        "cheerful", "joyful", "expressionless", "stoic",
    ),
    "pose": (
        "facing", "turn*", "tilt*", "rotat*", "roll*",
        "yaw*", "pitch*", "angle*", "angled", "frontal*", "front", "profile*", "three-quarter", "sideways",
        "side", "left", "right", "upward*", "downward*", "forward*", "straight", "direct*",
        "toward*", "away", "looking", "gaze*", "chin", "lean*", "inclin*",
        "degree*", "level", "upright", "centred", "centered", "aligned", "glanc*", "shoulder*", "neck",
        "slight*", "clockwise", "counter-clockwise", "counterclockwise", "occlu*", "cover*", "hidden",
    ),
    "lighting_quality": (
        "light*", "lit", "illumin*", "bright*", "dark*", "dim*", "shadow*", "shade*", "exposure", "expos*",
        "overexpos*", "underexpos*", "contrast*", "sharp*", "blur*", "soft*", "focus*", "crisp*", "clear*",
        "resolution", "pixel*", "noise", "noisy", "grain*", "compress*", "artifact*",
        "artefact*", "jpeg", "colour*", "color*", "tone*", "balance*", "saturat*", "sun*",
        "daylight", "flash", "lamp*", "studio", "natural", "ambient", "glare", "highlight*", "backlit",
        "harsh", "diffuse*", "warm", "cool", "gray*", "grey*", "monochrome",
        "even", "evenly", "uneven", "unevenly", "washed", "vivid", "dull", "low", "high", "well-lit", "good", "poor", "excellent",
        "decent", "bad", "usable",
    ),
    "facial_structure": (
        "shape*", "oval", "round*", "square*", "heart-shaped", "elongat*", "long", "broad",
        "narrow", "wide", "proportion*", "symmetr*", "asymmetr*", "geometr*",
        "jaw*", "chin", "cheek*", "cheekbone*", "forehead", "brow*", "eyebrow*", "eye*", "nose", "nostril*",
        "lips", "lip", "mouth", "ears", "ear", "outline", "contour*", "bone*", "angular", "defined",
        "prominent", "set", "spacing", "spaced", "width", "height", "tall", "full", "thin", "high",
    ),
    "skin_texture": (
        "complexion*", "smooth*", "rough*", "wrinkl*", "lines", "pore*", "freckl*",
        "mole*", "scar*", "blemish*", "acne", "spot*", "mark*", "tattoo*", "tone*", "clear*",
        "even", "evenly", "uneven", "glow*", "oily", "dry", "matte", "shin*", "make-up", "makeup", "cosmetic*", "tan*", "pale", "fair",
        "stubble", "beard", "blur*", "sharp*", "soft*", "aging",
        "ageing", "youthful",
    ),
    "forensic": (
        "identif*", "recogni*", "compar*", "evidence", "examin*", "investig*", "reliab*",
        "resolution", "pixel*", "quality", "blur*", "sharp*", "occlu*", "obscur*", "cover*", "hidden",
        "mask*", "glasses", "sunglasses", "hat", "make-up", "makeup", "light*", "lit", "shadow*", "dark*",
        "expos*", "angle*", "pose", "profile", "frontal", "scar*", "tattoo*", "mark*", "mole*",
        "distinct*", "unique", "verif*", "limit*", "suitab*", "usab*", "useful",
    ),
    "detail": PERSON_WORDS + ("image", "photo*", "picture", "background", "wearing", "hair", "shirt", "clothing"),
}


#: per category, words a stem would match that only name the topic ("lighting" under light*)
TOPIC_NAMES: dict[str, tuple[str, ...]] = {
    "lighting_quality": ("lighting", "lightings"),
    "expression": ("expressions",),
}


class WordList:
    """A set of words and `*` stems; `matches(word)` for one lower-cased word."""

    def __init__(self, entries: tuple[str, ...] | list[str], never: tuple[str, ...] = ()) -> None:
        self.words = frozenset(e.casefold() for e in entries if not e.endswith("*"))
        self.stems = tuple(sorted({e[:-1].casefold() for e in entries if e.endswith("*")}))
        self.never = frozenset(never)

    def matches(self, word: str) -> bool:
        if word in self.never:
            return False
        return word in self.words or (bool(self.stems) and word.startswith(self.stems))

    def first_match(self, words: list[str]) -> str | None:
        return next((w for w in words if self.matches(w)), None)
