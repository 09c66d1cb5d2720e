"""Checks on one generated record, beyond its pydantic schema.

`check_record(sample, rules)` returns what is wrong with a `Sample`, most serious first:

| reason | what |
|---|---|
| `copied_source_text` | the caption, an answer or a question repeats `source_copy_words` consecutive words of the untrusted source text (alt-text), or writes what it orders written (`source_copy.py`) |
| `refusal` | an answer or the caption refuses, hedges about a protected attribute or claims not to see the image |
| `empty_answer` | an answer or the caption is blank |
| `answer_too_short` / `answer_too_long` | outside the recipe's bounds (caption bounds apply to the caption) |
| `unknown_category` | a QA category the recipe did not ask for |
| `missing_category` | a requested category is absent (see `RecordRules.allows_skip`) |
| `duplicate_question` | the same question twice in one sample (case, spacing and punctuation ignored) |
| `bad_charset` | control characters, U+FFFD, lone surrogates or private-use characters |
| `wrong_language` | for `language: en`, less than 90% of the letters are Latin |
| `wrong_answer` / `bad_options` / `unverifiable_answer` | a label-derived pair (`labels` generator) whose answer is not what the labels give, or whose options are malformed (`label_answers.py`) |
| `markup`, `prompt_echo`, `meta_talk`, `degenerate_text`, `off_topic`, `repeated_answer`, `caption_not_about_face` | junk (`junk.py`, `text_quality.py`): reject, flag or off per recipe (`validation.junk`) |
| `label_conflict` | a statement that contradicts a dataset label (reject or flag per recipe) |

The same function runs inside the pipeline (stage `validate`) and in `facecorpus validate`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ..labels import VOCABULARY, Vocabulary
from ..recipe import Recipe
from ..records import Sample
from ..rejection import Rejection
from .config import ValidationConfig
from .junk import find_loop
from .label_answers import CHECKED_CATEGORIES, LabelAnswerCheck
from .label_consistency import find_conflicts
from .refusals import find_refusal
from .source_copy import SourceCopyCheck
from .text_quality import JunkRules


@dataclass(frozen=True)
class RecordRules:
    """What the recipe asks of every record."""

    config: ValidationConfig
    categories: tuple[str, ...]
    skippable: frozenset[str] = frozenset({"templates"})
    vocabulary: Vocabulary = VOCABULARY
    #: generation.labels.from_models / min_confidence: which values label-derived answers may come from
    answers_from_models: bool = False
    answer_min_confidence: float = 0.5
    #: the junk checks; built from `config.junk` (shipped prompts as echo sources) when not given
    junk: JunkRules | None = None

    def __post_init__(self) -> None:
        if self.junk is None:
            object.__setattr__(self, "junk", JunkRules.for_config(self.config.junk))

    def allows_skip(self, generator: str, category: str, flags: list[str]) -> bool:
        """A requested category may be absent only when its generator may skip and said so with a
        `skipped:<category>` flag (see `rules_for`)."""
        return generator in self.skippable and f"skipped:{category}" in flags


def rules_for(recipe: Recipe) -> RecordRules:
    """The record rules of a recipe.

    Generators that may leave out a requested category: those in `validation.skippable_generators`
    (default: `templates`, which writes only from facts it has and skips the rest, and `labels`, which
    asks only what the labels can answer), plus `openai` when
    its recipe says `generation.openai.on_category_failure: skip` or its prompt set is of mode `rewrite`
    (the texts are the templates generator's, rephrased; what it had no facts for it skipped). Any
    other absence is `missing_category`.
    """
    skippable = set(recipe.validation.skippable_generators)
    openai_cfg = getattr(recipe.generation, "openai", None)
    if getattr(openai_cfg, "on_category_failure", None) == "skip" or _rewrite_mode(recipe):
        skippable.add("openai")
    declared = [a for src in recipe.sources for a in getattr(src, "declared_attributes", list)()]
    lab = recipe.generation.labels
    junk = JunkRules.for_config(recipe.validation.junk, recipe.generation.prompts_dir)
    return RecordRules(recipe.validation, tuple(recipe.generation.categories), frozenset(skippable),
                       Vocabulary(declared) if declared else VOCABULARY, lab.from_models, lab.min_confidence, junk=junk)


def _rewrite_mode(recipe: Recipe) -> bool:
    g = recipe.generation
    if g.generator != "openai":
        return False
    from ..prompting.promptset import load_prompt_set

    return load_prompt_set(g.prompt_set, g.prompts_dir).mode == "rewrite"


@dataclass(frozen=True)
class Finding(Rejection):
    """One problem with a record: a rejection (reason, detail, the QA categories it concerns) that
    `verdict` may turn into a flag instead; `attribute` names a `label_conflict`'s flag."""

    attribute: str | None = None
    #: when set, the record is kept with these flags instead of being rejected (recipe: `flag`)
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))  # checks pass lists
        object.__setattr__(self, "flags", tuple(self.flags))


def _texts(sample: Sample) -> list[tuple[str, str]]:
    return [("caption", sample.caption)] + [(q.category, q.answer) for q in sample.qa]


def _question_key(q: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", q.casefold()).split())


#: control characters (but tab, newline, CR), C1 controls, lone surrogates, private use, U+FFFD
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\ufffd\U000f0000-\U0010ffff]")


def charset_problem(text: str) -> str | None:
    """Why `text` is not clean Unicode text, or None."""
    m = _BAD_CHAR.search(text)
    if m is None:
        return None
    ch = m.group(0)
    if ch == "\ufffd":
        return "the replacement character U+FFFD (text was decoded wrongly somewhere)"
    kind = {"Cc": "control character", "Cs": "lone surrogate", "Co": "private-use character"}.get(
        unicodedata.category(ch), "character")
    return f"{kind} U+{ord(ch):04X}"


def latin_share(text: str) -> float:
    """Share of the letters in `text` that are Latin script (1.0 when there are no letters)."""
    if text.isascii():
        return 1.0
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 1.0
    latin = sum(1 for ch in letters if ch.isascii() or "LATIN" in unicodedata.name(ch, ""))
    return latin / len(letters)


def degenerate(text: str) -> str | None:
    """Why `text` looks like a generation loop, or None (kept for callers of the older name)."""
    return find_loop(text)


def _source_copy(sample: Sample, min_words: int) -> Finding | None:
    """The first generated text (caption, answers, questions) that copies or obeys `source.text`."""
    assert sample.source.text is not None
    check = SourceCopyCheck(sample.source.text, min_words)
    # (what the detail calls the text, the categories it belongs to, the text)
    generated = [("the caption", [], sample.caption)]
    generated += [(f"the {q.category} answer", [q.category], q.answer) for q in sample.qa]
    generated += [(f"the {q.category} question", [q.category], q.question) for q in sample.qa]
    for what, categories, text in generated:
        copy = check.find(text)
        if copy is None:
            continue
        how = ("writes what the untrusted source text orders written" if copy.kind == "ordered"
               else "copies a run of words from the untrusted source text")
        return Finding("copied_source_text", f"{what} {how}: \"{copy.span[:120]}\"", categories=categories)
    return None


def check_record(sample: Sample, rules: RecordRules) -> list[Finding]:
    """Every problem with `sample`, most serious first (the first one is the reject reason)."""
    cfg = rules.config
    found: list[Finding] = []
    texts = _texts(sample)

    if cfg.source_copy == "reject" and sample.source.text:
        copy = _source_copy(sample, cfg.source_copy_words)
        if copy is not None:
            found.append(copy)

    if cfg.refusals == "reject":
        refused = [(where, r) for where, text in texts if (r := find_refusal(text)) is not None]
        if refused:
            where, first = refused[0]
            cats = [w for w, _ in refused if w != "caption"]
            found.append(Finding("refusal", f"the {where} {'answer ' if where != 'caption' else ''}refuses or hedges "
                                            f"({first.kind}): \"{first.phrase}\"", categories=cats))

    for where, text in texts:
        lo, hi = (cfg.min_caption_chars, cfg.max_caption_chars) if where == "caption" else (cfg.min_answer_chars, cfg.max_answer_chars)
        what = "caption" if where == "caption" else f"{where} answer"
        n = len(text.strip())
        if n == 0:
            found.append(Finding("empty_answer", f"the {what} is blank", categories=[] if where == "caption" else [where]))
        elif n < lo:
            found.append(Finding("answer_too_short", f"the {what} has {n} characters, fewer than {lo}: {text.strip()!r}",
                                 categories=[] if where == "caption" else [where]))
        elif n > hi:
            found.append(Finding("answer_too_long", f"the {what} has {n} characters, more than {hi}",
                                 categories=[] if where == "caption" else [where]))

    present = [q.category for q in sample.qa]
    unknown = sorted({c for c in present if c not in rules.categories})
    if unknown:
        found.append(Finding("unknown_category", f"QA categories the recipe did not ask for: {', '.join(unknown)}",
                             categories=unknown))
    generator = sample.provenance.generator
    missing = [c for c in rules.categories if c not in present and not rules.allows_skip(generator, c, sample.flags)]
    if missing:
        found.append(Finding("missing_category", f"requested categories absent from the {generator} output: "
                                                 f"{', '.join(missing)}", categories=missing))

    seen: dict[str, str] = {}
    for q in sample.qa:
        k = _question_key(q.question)
        if k in seen:
            found.append(Finding("duplicate_question", f"the question {q.question!r} appears twice "
                                                       f"({seen[k]} and {q.category})", categories=[q.category]))
            break
        seen[k] = q.category

    if any(q.category in CHECKED_CATEGORIES for q in sample.qa):
        check = LabelAnswerCheck(rules.vocabulary, rules.answers_from_models, rules.answer_min_confidence)
        for p in check.check(sample):
            found.append(Finding(p.reason, p.detail, categories=p.categories))

    for where, text in [*texts, *((f"{q.category} question", q.question) for q in sample.qa)]:
        problem = charset_problem(text)
        if problem:
            found.append(Finding("bad_charset", f"the {where} holds a {problem}"))
            break
    if cfg.language == "en":
        for where, text in texts:
            share = latin_share(text)
            if share < 0.9:
                found.append(Finding("wrong_language", f"only {share:.0%} of the letters in the {where} are Latin; "
                                                       f"the recipe expects English", categories=[] if where == "caption" else [where]))
                break
    assert rules.junk is not None
    # label-derived pairs ("B. In their thirties", "Yes.") are held to the labels by label_answers instead
    written = [(q.category, q.answer) for q in sample.qa if q.category not in CHECKED_CATEGORIES]
    for j in rules.junk.check_texts(sample.caption, written):
        flags = [f"{j.reason}:{c}" for c in j.categories] if cfg.junk.mode(j.reason) == "flag" else []
        found.append(Finding(j.reason, j.detail, categories=j.categories, flags=flags))

    if cfg.label_conflict != "off":
        for c in find_conflicts(texts, sample.attributes, cfg.age_tolerance_years):
            flags = [f"label_conflict:{c.attribute}"] if cfg.label_conflict == "flag" else []
            found.append(Finding("label_conflict", f"the {c.where} says \"{c.phrase}\" but the {c.attribute} label is "
                                                   f"{c.label}", categories=[] if c.where == "caption" else [c.where],
                                 attribute=c.attribute, flags=flags))
    return found


def verdict(findings: list[Finding], rules: RecordRules) -> tuple[Finding | None, list[str]]:
    """(the finding that rejects the record or None, flags to add when it is kept).

    Findings the recipe asks to flag (label conflicts with `label_conflict: flag`, junk checks set to
    `flag`) become flags (`label_conflict:<attribute>`, `<check>:<category>`); the first other finding
    rejects.
    """
    flags: list[str] = []
    for f in findings:
        if f.flags:
            flags.extend(x for x in f.flags if x not in flags)
            continue
        return f, []
    return None, flags
