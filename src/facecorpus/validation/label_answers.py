"""Do label-derived answers say what the labels say? Every pair of the `labels` generator's categories
is re-read from its text and held to the sample's dataset labels, through the vocabulary only:

| reason | when |
|---|---|
| `wrong_answer` | the answer (its letter, yes/no, number, features, sentence) is not what the labels give |
| `bad_options` | a multiple-choice question without exactly four options `A.`-`D.`, with an option the vocabulary does not know, with no or several right options; a yes/no question whose asked value overlaps the label; a list whose items are not the vocabulary's |
| `unverifiable_answer` | a pair of these categories without the labels or structure to check it against |

A wrong letter is a defect: the record is rejected, never flagged. The checks do not call the
generator; they parse the question and answer text (options from the `A. …` lines, items from the
list) and compare with the labels.
"""

from __future__ import annotations

import re

from ..generation.config import LABEL_CATEGORIES
from ..labels import Category, Flag, Vocabulary, Years
from ..records import QAPair, Sample
from ..rejection import Rejection

#: the categories whose answers derive from labels (generation/label_qa.py writes them)
CHECKED_CATEGORIES = frozenset(LABEL_CATEGORIES)
_OPTION = re.compile(r"^([A-D])\. (.+)$")
_ANSWER_LETTER = re.compile(r"^([A-D])\. (.+)$", re.S)
_LIST = re.compile(r":\s*(.+)\?\s*$", re.S)


def _labels(sample: Sample, from_models: bool, min_confidence: float) -> dict[str, str | bool | int | float]:
    """The values answers may derive from: dataset labels; with `from_models` (generation.labels), also
    model values (LLM annotations, face models) at least `min_confidence` sure."""
    return {k: v.value for k, v in sample.attributes.items()
            if v.source == "label" or (from_models and v.source.startswith("model:") and (v.confidence or 0.0) >= min_confidence)}


def _flag_items(vocab: Vocabulary) -> dict[str, str]:
    """List name → flag name, e.g. 'a smile' → 'smiling'."""
    out = {}
    for name in vocab.names():
        decl = vocab[name]
        if isinstance(decl, Flag) and decl.item is not None:
            out[decl.item.casefold()] = name
    return out


def parse_mcq(question: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(stem, [(letter, option text)]) of a FaceXBench-style question, or None when it has no option lines."""
    lines = [ln.strip() for ln in question.strip().splitlines() if ln.strip()]
    options = [(m.group(1), m.group(2).strip()) for ln in lines if (m := _OPTION.match(ln))]
    if not options or not lines:
        return None
    return lines[0], options


def split_list(text: str) -> list[str]:
    """'a, b, c or d' → ['a', 'b', 'c', 'd']."""
    head, _, last = text.rpartition(" or ")
    parts = [p.strip() for p in head.split(",")] if head else []
    return [p for p in [*parts, last.strip()] if p]


class LabelAnswerCheck:
    """Checks label-derived QA pairs of a sample against its labels (see the module docstring)."""

    def __init__(self, vocab: Vocabulary, from_models: bool = False, min_confidence: float = 0.5) -> None:
        self.vocab = vocab
        self.items = _flag_items(vocab)
        self.from_models = from_models
        self.min_confidence = min_confidence

    def check(self, sample: Sample) -> list[Rejection]:
        """Every label-derived pair whose answer the labels do not give, as a rejection naming its category."""
        labels = _labels(sample, self.from_models, self.min_confidence)
        problems = []
        for q in sample.qa:
            if q.category not in CHECKED_CATEGORIES:
                continue
            found = self._check_pair(q, labels, sample)
            if found is not None:
                problems.append(Rejection(found[0], f"the {q.category} pair {q.question.splitlines()[0]!r}: {found[1]}",
                                          categories=(q.category,)))
        return problems

    def _check_pair(self, q: QAPair, labels: dict, sample: Sample) -> tuple[str, str] | None:
        if q.category == "face_count":
            n = len(sample.faces)
            if q.answer_key != str(n) or not re.search(rf"\b{n}\b", q.answer):
                return "wrong_answer", f"the sample has {n} faces, the answer says {q.answer!r}"
            return None
        if not q.attributes:
            return "unverifiable_answer", "it names no attribute"
        missing = [a for a in q.attributes if a not in labels or a not in self.vocab]
        if missing:
            return "unverifiable_answer", f"no dataset label or declaration for {', '.join(missing)}"
        if q.category == "attribute_mcq":
            return self._mcq(q, labels)
        if q.category == "attribute_list":
            return self._list(q, labels)
        if q.category == "attribute_yes_no":
            return self._yes_no(q, labels)
        return self._open(q, labels)

    # ---------------------------------------------------------------------------------------- by kind

    def _open(self, q: QAPair, labels: dict) -> tuple[str, str] | None:
        if len(q.attributes) == 1:
            name = q.attributes[0]
            decl, value = self.vocab[name], labels[name]
            if isinstance(decl, Category) and q.answer != decl.sentence(str(value)):
                return "wrong_answer", f"the {name} label is {value}; the answer should be {decl.sentence(str(value))!r}"
            if isinstance(decl, Years) and q.answer != decl.sentence(int(value)):
                return "wrong_answer", f"the {name} label is {value}; the answer says {q.answer!r}"
            if isinstance(decl, Category | Years):
                return None
        # the visible features: every present flag with a list name, and no other
        flags = {n: self.vocab[n] for n in q.attributes}
        if not all(isinstance(d, Flag) for d in flags.values()):
            return "unverifiable_answer", "a features answer about attributes that are not flags"
        present = {n for n, v in labels.items() if isinstance(self.vocab.get(n), Flag) and v is True
                   and getattr(self.vocab[n], "item", None)}
        named = set(q.attributes)
        if named != present:
            wrong = sorted(named - present)
            left = sorted(present - named)
            return "wrong_answer", f"names absent {wrong} / leaves out present {left}"
        text = q.answer.casefold()
        absent = [i for i, n in self.items.items() if n in labels and labels[n] is False and re.search(rf"\b{re.escape(i)}\b", text)]
        missing = [d.item for d in flags.values() if isinstance(d, Flag) and d.item and d.item.casefold() not in text]
        if absent or missing:
            return "wrong_answer", f"the answer text names absent {absent} or omits {missing}"
        return None

    def _yes_no(self, q: QAPair, labels: dict) -> tuple[str, str] | None:
        name = q.attributes[0]
        decl, value = self.vocab[name], labels[name]
        said = q.answer.split(".", 1)[0].strip().casefold()
        if said not in ("yes", "no"):
            return "wrong_answer", f"the answer does not start with Yes or No: {q.answer!r}"
        if isinstance(decl, Flag):
            if q.question != decl.question():
                return "bad_options", f"the question is not the {name} question {decl.question()!r}"
            truth = value is True
        elif isinstance(decl, Category):
            asked = next((c for c in decl.words if q.question == decl.yes_no(c)), None)
            if asked is None:
                return "bad_options", f"the question asks about no value of {name}"
            if asked != value and decl.compatible(str(value), asked):
                return "bad_options", f"the label {value} neither confirms nor rules out {asked}"
            truth = asked == value
            if q.answer.split(".", 1)[1].strip() != decl.sentence(str(value)):
                return "wrong_answer", f"the explanation should be {decl.sentence(str(value))!r}"
        else:
            return "unverifiable_answer", f"{name} is not asked as yes/no"
        expected = "yes" if truth else "no"
        if said != expected or (q.answer_key is not None and q.answer_key != expected):
            return "wrong_answer", f"the {name} label is {value}: the answer is {expected}, not {q.answer!r}"
        return None

    def _mcq(self, q: QAPair, labels: dict) -> tuple[str, str] | None:
        parsed = parse_mcq(q.question)
        if parsed is None:
            return "bad_options", "no option lines"
        _, options = parsed
        if [letter for letter, _ in options] != list("ABCD"):
            return "bad_options", f"options are {''.join(letter for letter, _ in options)}, not A-D"
        texts = [t for _, t in options]
        if len(set(texts)) != 4:
            return "bad_options", "two options are the same"
        right = []
        if len(q.attributes) == 1 and isinstance(self.vocab[q.attributes[0]], Category):
            name = q.attributes[0]
            decl = self.vocab[name]
            assert isinstance(decl, Category)
            by_text = {o: c for c, o in decl.options.items()}
            unknown = [t for t in texts if t not in by_text]
            if unknown:
                return "bad_options", f"option(s) {unknown} are not values of {name}"
            right = [letter for letter, t in options if decl.compatible(str(labels[name]), by_text[t])]
        else:
            for letter, text in options:
                names = [self.items.get(part.strip().casefold()) for part in text.split(",")]
                if any(n is None for n in names):
                    return "bad_options", f"option {letter} names a feature the vocabulary does not know: {text!r}"
                if any(n not in labels for n in names):
                    return "unverifiable_answer", f"option {letter} names a feature without a label"
                if all(labels[n] is True for n in names):
                    right.append(letter)
        if len(right) != 1:
            return "bad_options", f"{len(right)} options agree with the labels; one must"
        m = _ANSWER_LETTER.match(q.answer.strip())
        if m is None or m.group(1) != right[0] or (q.answer_key is not None and q.answer_key != right[0]):
            return "wrong_answer", f"the right option is {right[0]}, the answer is {q.answer!r}"
        if m.group(2).strip() != dict(options)[right[0]]:
            return "wrong_answer", f"the answer's text is not option {right[0]}'s"
        return None

    def _list(self, q: QAPair, labels: dict) -> tuple[str, str] | None:
        m = _LIST.search(q.question)
        if m is None:
            return "bad_options", "the question lists no features"
        items = split_list(m.group(1))
        names = [self.items.get(i.casefold()) for i in items]
        if any(n is None for n in names) or len(set(names)) != len(names):
            return "bad_options", f"the listed features {items} are not distinct features of the vocabulary"
        if any(n not in labels for n in names):
            return "unverifiable_answer", "a listed feature has no label"
        present = [i for i, n in zip(items, names, strict=True) if labels[n] is True]
        text = q.answer.casefold()
        if not present:
            ok = text.startswith("none of them")
        else:
            ok = all(re.search(rf"\b{re.escape(i.casefold())}\b", text) for i in present) and not any(
                re.search(rf"\b{re.escape(i.casefold())}\b", text) for i, n in zip(items, names, strict=True)
                if labels[n] is not True)
        if not ok or (q.answer_key is not None and q.answer_key != "; ".join(present)):
            return "wrong_answer", f"present: {present or 'none'}; the answer says {q.answer!r}"
        return None
