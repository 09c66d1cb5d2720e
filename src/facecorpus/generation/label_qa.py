"""The `labels` generator: dataset labels re-formulated as questions and answers, no LLM (Face-MLLM's
treatment of CelebA, RAF-DB and the like).

Five categories, each answer derived from the labels (`source: label`) through the vocabulary
(labels.py) and nothing else:

- `attribute_open`: "What facial expression does the person show?" → "The person looks happy.";
  the exact age when the dataset gives one; the visible features of a flag dataset, all of them;
- `attribute_yes_no`: about a category value or a flag; per sample as many yes as no answers when the
  labels allow (a category can be asked either way, a flag only as its label says);
- `attribute_mcq`: FaceXBench's layout — the question, four options `A.`-`D.`, one line asking for the
  letter; the right letter drawn uniformly, distractors from the attribute's vocabulary, never
  overlapping the label or each other. For flags: four sets of features, only one all present;
- `attribute_list`: "Which of these can be seen: bangs, a hat, eyeglasses or black hair?" → the ones
  present, in the order asked, or "None of them";
- `face_count`: how many faces the detector kept, for whole images with two or more.

Every choice (which attributes, polarity, distractors, letters, order) comes from a seeded hash of
(seed, key, category): a re-run writes the same text. Pairs carry `attributes`, `options` and
`answer_key`, so `validation/label_answers.py` can check every answer against the labels.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass

from ..labels import VOCABULARY, Category, Flag, Vocabulary, Years
from ..prompting.phrases import person_noun
from ..records import AttributeValue, QAPair
from ..stage import Stage, WorkItem
from .config import LABEL_CATEGORIES, LabelQAConfig

PROMPT_SET = "label_qa"
PROMPT_VERSION = "1"
LETTERS = "ABCD"
MCQ_INSTRUCTION = "Answer with the letter of the correct option."
FEATURES_QUESTION = "Which facial features and accessories can be seen in the image?"
SET_QUESTION = "Which set of features can all be seen in the image?"
LIST_QUESTION = "Which of these can be seen in the image: {items}?"
COUNT_QUESTION = "How many faces are clearly visible in the image?"


@dataclass(frozen=True)
class LabelQASettings:
    """How many pairs of each kind: `yes_no` questions per sample, `list_size` features per list
    question, `set_size` features per option of a feature-set question; `subjective` flags (CelebA's
    Attractive) are asked about only when true; `only` limits the attributes asked about."""

    yes_no: int = 4
    list_size: int = 4
    set_size: int = 2
    subjective: bool = False
    only: tuple[str, ...] = ()
    from_models: bool = False
    min_confidence: float = 0.5

    def usable(self, av: AttributeValue) -> bool:
        """A dataset label, or with `from_models` a model's value at least `min_confidence` sure."""
        if av.source == "label":
            return True
        return self.from_models and av.source.startswith("model:") and (av.confidence or 0.0) >= self.min_confidence


def settings_of(cfg: LabelQAConfig) -> LabelQASettings:
    return LabelQASettings(yes_no=cfg.yes_no, list_size=cfg.list_size, set_size=cfg.set_size,
                           subjective=cfg.subjective, only=tuple(cfg.only), from_models=cfg.from_models,
                           min_confidence=cfg.min_confidence)


def rng_for(seed: int, key: str, slot: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}|{key}|{slot}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def join_words(items: list[str], last: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass
class Known:
    """An item's dataset labels, sorted by kind through the vocabulary."""

    categories: dict[str, tuple[Category, str]]
    flags: dict[str, tuple[Flag, bool]]
    years: dict[str, tuple[Years, int]]

    @classmethod
    def of(cls, labels: dict[str, AttributeValue], vocab: Vocabulary, s: LabelQASettings) -> Known:
        known = cls({}, {}, {})
        for name, av in labels.items():
            if not s.usable(av) or (s.only and name not in s.only):
                continue
            decl = vocab.get(name)
            value = av.value
            if isinstance(decl, Category) and isinstance(value, str) and value in decl.words:
                known.categories[name] = (decl, value)
            elif isinstance(decl, Flag) and isinstance(value, bool) and (s.subjective or not decl.subjective):
                known.flags[name] = (decl, value)
            elif isinstance(decl, Years) and isinstance(value, int | float) and not isinstance(value, bool):
                known.years[name] = (decl, int(value))
        return known

    def askable(self) -> dict[str, tuple[Category, str]]:
        return {n: (d, v) for n, (d, v) in self.categories.items() if v not in d.unaskable}

    def listed(self, present: bool) -> list[str]:
        """Flags with a list name whose label is `present`, in vocabulary order."""
        return [n for n, (d, v) in self.flags.items() if d.item is not None and v == present]


def distractors(decl: Category, value: str, rng: random.Random, n: int) -> list[str]:
    """Up to n codes that the label rules out and that do not overlap each other."""
    pool = [c for c in decl.askable() if not decl.compatible(value, c)]
    rng.shuffle(pool)
    chosen: list[str] = []
    for c in pool:
        if not any(decl.compatible(c, d) for d in chosen):
            chosen.append(c)
        if len(chosen) == n:
            break
    return chosen


# ------------------------------------------------------------------------------------------- categories


def open_pairs(k: Known, s: LabelQASettings) -> list[QAPair]:
    out = []
    for name, (decl, value) in k.askable().items():
        if name == "age" and "age_years" in k.years:
            continue  # the exact age is asked instead of its bin
        out.append(QAPair(category="attribute_open", question=decl.question, answer=decl.sentence(value),
                          attributes=[name], answer_key=value))
    for name, (years, value) in k.years.items():
        out.append(QAPair(category="attribute_open", question=years.question, answer=years.sentence(value),
                          attributes=[name], answer_key=str(value)))
    present = k.listed(True)
    if present and not s.only:  # "which features can be seen" is answered with all of them, or not asked
        items = [k.flags[n][0].item or n for n in present]
        out.append(QAPair(category="attribute_open", question=FEATURES_QUESTION,
                          answer=f"The image shows {join_words(items)}.", attributes=present, options=items,
                          answer_key="; ".join(items)))
    return out


def yes_no_pairs(k: Known, s: LabelQASettings, rng: random.Random) -> list[QAPair]:
    units: list[tuple[str, str]] = [("category", n) for n, (d, v) in k.askable().items() if distractors(d, v, rng, 1)]
    units += [("flag", n) for n in k.flags]
    rng.shuffle(units)
    n = min(s.yes_no, len(units))
    want = {True: n // 2 + (n % 2 if rng.random() < 0.5 else 0)}
    want[False] = n - want[True]
    out = []
    for kind, name in units:
        if want[True] == 0 and want[False] == 0:
            break
        if kind == "flag":
            flag, present = k.flags[name]
            if want[present] == 0:
                continue
            want[present] -= 1
            out.append(QAPair(category="attribute_yes_no", question=flag.question(),
                              answer=f"{'Yes' if present else 'No'}. {flag.sentence(present)}",
                              attributes=[name], answer_key="yes" if present else "no"))
            continue
        decl, value = k.categories[name]
        yes = want[True] > want[False] or (want[True] == want[False] and rng.random() < 0.5)
        want[yes] -= 1
        asked = value if yes else distractors(decl, value, rng, 1)[0]
        out.append(QAPair(category="attribute_yes_no", question=decl.yes_no(asked),
                          answer=f"{'Yes' if yes else 'No'}. {decl.sentence(value)}",
                          attributes=[name], options=[asked], answer_key="yes" if yes else "no"))
    return out


def mcq_text(stem: str, options: list[str]) -> str:
    lines = [stem, *(f"{LETTERS[i]}. {o}" for i, o in enumerate(options)), MCQ_INSTRUCTION]
    return "\n".join(lines)


def mcq_pairs(k: Known, s: LabelQASettings, rng: random.Random) -> list[QAPair]:
    out = []
    for name, (decl, value) in k.askable().items():
        wrong = distractors(decl, value, rng, 3)
        if len(wrong) < 3:
            continue  # fewer than four options (gender): asked as yes/no instead
        codes = list(wrong)
        at = rng.randrange(4)
        codes.insert(at, value)
        options = [decl.options[c] for c in codes]
        out.append(QAPair(category="attribute_mcq", question=mcq_text(decl.mcq, options),
                          answer=f"{LETTERS[at]}. {options[at]}", attributes=[name], options=options,
                          answer_key=LETTERS[at]))
    present, absent = k.listed(True), k.listed(False)
    size = s.set_size
    if len(present) >= size and absent:
        order = list(k.flags)
        right = sorted(rng.sample(present, size), key=order.index)
        sets = [tuple(right)]
        pool = present + absent
        for _ in range(200):
            if len(sets) == 4:
                break
            candidate = tuple(sorted(rng.sample(pool, size), key=order.index))
            if candidate not in sets and any(c in absent for c in candidate):
                sets.append(candidate)
        if len(sets) == 4:
            wrong_sets = sets[1:]
            rng.shuffle(wrong_sets)
            at = rng.randrange(4)
            wrong_sets.insert(at, sets[0])
            options = [capitalised(", ".join(k.flags[n][0].item or n for n in group)) for group in wrong_sets]
            out.append(QAPair(category="attribute_mcq", question=mcq_text(SET_QUESTION, options),
                              answer=f"{LETTERS[at]}. {options[at]}",
                              attributes=list(dict.fromkeys(n for group in wrong_sets for n in group)),
                              options=options, answer_key=LETTERS[at]))
    return out


def list_pairs(k: Known, s: LabelQASettings, rng: random.Random) -> list[QAPair]:
    present, absent = k.listed(True), k.listed(False)
    size = min(s.list_size, len(present) + len(absent))
    if size < 2:
        return []
    lo, hi = max(0, size - len(absent)), min(size, len(present))
    n_present = rng.randint(lo, hi)
    names = rng.sample(present, n_present) + rng.sample(absent, size - n_present)
    rng.shuffle(names)
    items = [k.flags[n][0].item or n for n in names]
    seen = [i for n, i in zip(names, items, strict=True) if k.flags[n][1]]
    answer = f"{capitalised(join_words(seen))} can be seen." if seen else "None of them can be seen."
    return [QAPair(category="attribute_list", question=LIST_QUESTION.format(items=join_words(items, "or")),
                   answer=answer, attributes=names, options=items, answer_key="; ".join(seen))]


def count_pairs(item: WorkItem) -> list[QAPair]:
    n = len(item.faces)
    if item.crop is not None or n < 2:
        return []
    return [QAPair(category="face_count", question=COUNT_QUESTION,
                   answer=f"There are {n} clearly visible faces in the image.", answer_key=str(n))]


def caption_from_labels(k: Known) -> str:
    """'A photo of a woman of East Asian ethnicity, 30 to 39 years old, with bangs and black hair, looking happy.'"""
    gender = k.categories.get("gender", (None, None))[1]
    age = k.categories.get("age", (None, None))[1]
    noun = person_noun(gender if gender in ("male", "female") else None, age)
    parts = [f"A photo of {'an' if noun[:1] in 'aeiou' else 'a'} {noun}"]
    race = k.categories.get("race")
    if race is not None and race[1] not in race[0].unaskable:
        parts[0] += f" {race[0].words[race[1]]}"
    if "age_years" in k.years:
        parts.append(f"about {k.years['age_years'][1]} years old")
    elif age is not None and age not in ("0-2", "3-9", "10-19"):
        parts.append(k.categories["age"][0].words[age])
    text = ", ".join(parts)
    features = [k.flags[n][0].item or n for n in k.listed(True)][:3]
    if features:
        text += f" with {join_words(features)}"
    expression = k.categories.get("expression")
    if expression is not None:
        text += f", looking {expression[0].words[expression[1]]}"
    return text + "."


def label_qa(item: WorkItem, categories: Iterable[str], seed: int, settings: LabelQASettings,
             vocab: Vocabulary = VOCABULARY) -> tuple[str, list[QAPair], list[str]]:
    """(caption, QA pairs, categories with nothing to ask) for one item."""
    k = Known.of(item.attributes or item.labels, vocab, settings)
    qa: list[QAPair] = []
    skipped = []
    for cat in categories:
        rng = rng_for(seed, item.key, cat)
        if cat == "attribute_open":
            pairs = open_pairs(k, s=settings)
        elif cat == "attribute_yes_no":
            pairs = yes_no_pairs(k, settings, rng)
        elif cat == "attribute_mcq":
            pairs = mcq_pairs(k, settings, rng)
        elif cat == "attribute_list":
            pairs = list_pairs(k, settings, rng)
        elif cat == "face_count":
            pairs = count_pairs(item)
        else:
            raise ValueError(f"the labels generator writes {', '.join(LABEL_CATEGORIES)}, not {cat!r}")
        if not pairs:
            skipped.append(cat)
        qa.extend(pairs)
    return caption_from_labels(k), qa, skipped


def label_qa_sha256() -> str:
    """Hash of what shapes this generator's text: this module and the vocabulary."""
    import inspect
    import sys

    from .. import labels

    return hashlib.sha256((inspect.getsource(sys.modules[__name__]) + inspect.getsource(labels)).encode()).hexdigest()


class GenerateFromLabels(Stage):
    """Stage 'generate' for the `labels` generator."""

    name = "generate"

    def __init__(self, categories: list[str], seed: int, settings: LabelQASettings, vocab: Vocabulary = VOCABULARY) -> None:
        super().__init__()
        self.categories = categories
        self.seed = seed
        self.settings = settings
        self.vocab = vocab
        self._sha: str | None = None

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        if self._sha is None:
            self._sha = label_qa_sha256()
        caption, qa, skipped = label_qa(item, self.categories, self.seed, self.settings, self.vocab)
        item.caption = caption
        item.qa = qa
        item.flags.extend(f"skipped:{c}" for c in skipped)
        item.provenance.generator = "labels"
        item.provenance.prompt_set = PROMPT_SET
        item.provenance.prompt_version = PROMPT_VERSION
        item.provenance.prompt_sha256 = self._sha
        yield item
