"""Junk in generated text: what a plain reader would throw away although the record is well-formed.

A weak model (the embedded SmolLM2-135M) writes `[Your caption here]`, `}}```, `1.3`, `Unimax`,
"I will answer each question…", our own prompt sentences, or the demographics answer again under
`pose`. Each check reads one text (or, for the sample-level ones, one record) and says why it is junk,
or returns None:

| check | what |
|---|---|
| `markup` | code fences, HTML/XML tags, template syntax (`{{x}}`, `{2}`, `{%`), JSON fragments, placeholders in brackets, role tags (`assistant:`, `<|im_start|>`), markdown headings/bold, escaped newlines |
| `prompt_echo` | a run of words copied from our own prompts or instructions (`prompt_echo.py`) |
| `meta_talk` | talk about the task, the question, the caption, the model or the reader ("I will answer each question", "as an AI", "here is", "the answer is"), or an answer that asks a question |
| `degenerate_text` | numbers or punctuation only, fewer content words than the category's minimum, a text that starts or stops mid-sentence (on a comma, an ellipsis or an article), broken punctuation ("by about . to"), or a loop |
| `off_topic` | an answer that uses no word of its category's topic vocabulary (`vocabulary.TOPICS`) |
| `repeated_answer` | two categories of one sample answered with the same or nearly the same text |
| `caption_not_about_face` | a caption that names no person and no face |

Every check is a reject reason, or a flag (`<reason>:<category>`) when the recipe says so
(`validation.junk`). The figures of each check on the labelled set are in docs/trust.md.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher

from .vocabulary import FUNCTION_WORDS, PERSON_WORDS, WordList

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)

# ------------------------------------------------------------------------------------------- markup

#: (what, pattern); each is searched in the whole text
_MARKUP: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a code fence", re.compile(r"```|~~~")),
    ("a backtick", re.compile(r"`")),
    ("a chat role token", re.compile(r"<\|[^|<>]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?s>", re.IGNORECASE)),
    ("an HTML or XML tag", re.compile(r"</?[A-Za-z][\w:-]{0,30}(?:\s[^<>]{0,200})?/?>|</[A-Za-z]|<[A-Za-z]+\s*$|<[A-Za-z]+\s+[\w-]+\s*=")),
    ("template syntax", re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}|\$\{|\{[^{}\s\"]{1,40}\}")),
    ("a JSON fragment", re.compile(r"\"\s*:\s*[\"{\[\d]|[{\[]\s*\"|\"\s*[}\]]|[{}]|\[\s*\]|\\[nrtu\"]")),
    ("text in square brackets", re.compile(r"\[[^\]]*\]|\[")),
    ("a role tag", re.compile(r"(?:^|\n)\s*(?:system|user|assistant|human|bot|gpt|model)\s*:", re.IGNORECASE)),
    ("a markdown heading or emphasis", re.compile(r"(?:^|\n)\s*#{1,6}\s|\*\*|__[A-Za-z]")),
    ("an HTML entity", re.compile(r"&#?\w{1,8};")),
    ("code", re.compile(r"\b[A-Za-z_]\w*\s*=\s*['\"{\[(]|=>|\w\(\s*\w*\s*$|\);|;\s*\}|<[A-Za-z][\w-]*=")),
)


def find_markup(text: str) -> str | None:
    """What markup, code, template or JSON syntax `text` holds, or None."""
    for what, rx in _MARKUP:
        m = rx.search(text)
        if m:
            return f"{what}: {_excerpt(text, m.start(), m.end())!r}"
    return None


# ------------------------------------------------------------------------------------------ meta-talk

_META: tuple[tuple[str, re.Pattern[str]], ...] = tuple((what, re.compile(p, re.IGNORECASE)) for what, p in (
    ("talks about what it will do", r"\b(?:I|we)(?:'ll| will| am going to|'m going to| shall| would like to| have to| must)\s+"
                                    r"(?:now\s+)?(?:answer|describe|provide|give|write|try|respond|reply|explain|analy[sz]e|focus|start|list)\b"),
    ("talks about the task", r"\b(?:(?:the|this|each|every|your|my|that|following|next|above|previous|first|second)\s+"
                             r"(?:questions?|prompt|task|instructions?|request|schema|json|captions?|query|assignment|"
                             r"category|categories|response|reply|conversation|user|assistant|dataset)|"
                             r"one-sentence caption|(?:a|one|single) sentence only|training data(?:set)?)\b"),
    ("speaks as a model or assistant", r"\b(?:as an? (?:AI|assistant|language model|chatbot|model)|I(?:'m| am) (?:an? )?"
                                       r"(?:AI|assistant|language model|chatbot|large language model|bot|model)\b|language model)"),
    ("introduces its answer", r"(?:^|[.!?]\s+)(?:here(?:'s| is| are)|sure[,!.]|certainly[,!.]|of course[,!.]|okay[,!.]|ok[,!.]|"
                              r"absolutely[,!.]|great[,!.]|let me\b|let's\b)"),
    ("labels its answer", r"(?:^|[.!?]\s+)(?:answer|caption|question|response|output|description)\s*(?:\d+\s*)?:"),
    ("speaks to the reader", r"\b(?:I hope (?:this|that) helps|feel free|let me know|you (?:asked|provided|gave|shared|sent|uploaded)|"
                             r"(?:you|your) (?:image|photo|picture|photograph)|thank you|thanks for)\b"),
    ("speaks of the prompt's facts", r"\b(?:known facts?|the facts (?:given|provided|above)|(?:the )?(?:given|provided) "
                                     r"(?:facts|information|estimates|details|text)|the estimates?\b|the information (?:given|provided))\b"),
    ("says what it cannot know", r"\b(?:not (?:provided|given|specified|mentioned|available|known|attached|described)|unknown|"
                                 r"unspecified|no (?:information|data|description)\b|"
                                 r"no (?:image|photo|photograph|picture) (?:exists|is|was|attached|provided)|"
                                 r"cannot be (?:determined|known|said)|can(?:'t| ?not) tell|is not attached)\b"),
    ("talks about answering", r"\b(?:possible|the|an|my|this|that|correct|short|following|your) answers?\b|"
                              r"^\s*[A-D]\s*[:)]\s|\bwhat can be said\b|\b(?:a|one) single sentence\b|"
                              r"\bin (?:a|one|the|this|that|last|the last|the previous|the next) sentence\b|"
                              r"\b(?:left|nothing|anything|something|way|how) to (?:describe|say|tell)\b|"
                              r"\bto describe (?:it|this|that)\b"),
    ("talks about rewriting", r"\b(?:the|this|that|original|given) (?:word|phrase|sentence|wording)s?\b|\bin (?:simple|other|plain) words\b|"
                              r"\b(?:rephras|paraphras|rewrit|translat)\w*|\bnatural english\b"),
    ("speaks as itself or to the reader", r"\byour?\b|\bI (?:need|think|believe|guess|hope|suppose|am not sure|'m not sure|"
                                          r"do not know|don't know)\b|\bwe (?:can|could|will|would|have|need|must|should|see)\b|"
                                          r"\bour\b|\byou (?:are|were) (?:asked|shown|given|told)\b"),
))
#: a question inside an answer: a sentence that ends with a question mark
_ASKS = re.compile(r"[^.!?\n]{3,}\?")


def find_meta_talk(text: str, is_caption: bool = False) -> str | None:
    """How `text` talks about the task, the model or the reader instead of the face, or None.

    An answer that asks a question (a sentence ending with '?') counts too; a caption may not either.
    """
    for what, rx in _META:
        m = rx.search(text)
        if m:
            return f"{what}: {_excerpt(text, m.start(), m.end())!r}"
    m = _ASKS.search(text)
    if m:
        return f"{'the caption' if is_caption else 'the answer'} asks a question: {_excerpt(text, m.start(), m.end())!r}"
    return None


# --------------------------------------------------------------------------------------- degenerate

_RUN_OF_ONE_CHAR = re.compile(r"(\S)\1{19,}")
_ANY_WORD = re.compile(r"\w+", re.UNICODE)
#: the text ends on a separator or an open bracket: it was cut off
_CUT_OFF_END = re.compile(r"[,;:(\[{/&+=\-–—…]\s*$|\.\.\.\s*$|\b(?:a|an|the|and|or|of|to|with|by|for|in|on|at|as|from|is|are|"
                          r"was|were|be|been|being|has|have|had|do|does|will|would|can|could|should|must|their|its|my|our|"
                          r"your|than|but|which|whose|such|very|about|into|onto|upon|between|through|because|although|"
                          r"while|where|if|both|either|each|every|several|[b-hj-z])\s*$",
                          re.IGNORECASE)


#: punctuation no writer leaves: a space before a full stop or comma ("by about . to"), doubled separators,
#: words glued by a comma or an ampersand ("happy,smiley", "smooth&shiz")
_BROKEN_PUNCTUATION = re.compile(r"\w\s+[.,;:](?=\s|$)|[,;:]\s*[,;:.]|\.\s*[,;:]|[A-Za-z][,&][A-Za-z]")
#: tokens no description holds: identifiers (snake_case), letters and digits mixed (but 224x224, 50s, 16px),
#: very long letter runs, URLs, file names and paths, hex colours
_GARBLED = re.compile(r"[A-Za-z]_[A-Za-z]|\b(?!\d+x\d+\b)(?!\d+(?:s|px|st|nd|rd|th|mm|cm|kg|m)\b)\w*(?:[A-Za-z]\d|\d[A-Za-z])\w*|"
                      r"[A-Za-z]{25,}|://|\./|\w\.(?:com|org|net|jpg|jpeg|png|gif|html?)\b|#[0-9A-Fa-f]{3,8}\b|%[0-9A-F]{2}")


def content_words(text: str) -> list[str]:
    """The lower-cased words of `text` that carry content: letters only, not function words, two letters or more."""
    return [w for w in (m.group(0).casefold() for m in _WORD.finditer(text)) if len(w) > 1 and w not in FUNCTION_WORDS]


def words_of(text: str) -> list[str]:
    """All lower-cased words of `text` (letters, inner apostrophes and hyphens)."""
    return [m.group(0).casefold() for m in _WORD.finditer(text)]


def find_loop(text: str) -> str | None:
    """Why `text` looks like a generation loop (one character 20 times, or few distinct word triples), or None."""
    m = _RUN_OF_ONE_CHAR.search(text)
    if m:
        return f"the character {m.group(1)!r} repeats {len(m.group(0))} times"
    words = [w.casefold() for w in _ANY_WORD.findall(text)]
    if len(words) >= 12:
        triples = list(zip(words, words[1:], words[2:], strict=False))
        share = len(set(triples)) / len(triples)
        if share < 0.5:
            return f"only {share:.0%} of its word triples are distinct (the text loops)"
    return None


def find_degenerate(text: str, min_content_words: int) -> str | None:
    """Why `text` is no answer at all (numbers or punctuation only, too few content words, cut off
    mid-sentence, broken punctuation, a loop), or None."""
    stripped = text.strip()
    if not any(ch.isalpha() for ch in stripped) or not _WORD.search(stripped):
        return f"numbers or punctuation only: {stripped[:60]!r}"
    words = content_words(stripped)
    if len(words) < min_content_words:
        return f"{len(words)} content word{'s' if len(words) != 1 else ''}, fewer than {min_content_words}: {stripped[:60]!r}"
    if stripped[0] in ",;:.)]}!?":
        return f"starts mid-sentence: {stripped[:40]!r}"
    if _CUT_OFF_END.search(stripped):
        return f"stops mid-sentence: {stripped[-40:]!r}"
    if m := _BROKEN_PUNCTUATION.search(stripped):
        return f"broken punctuation: {_excerpt(stripped, m.start(), m.end())!r}"
    if m := _GARBLED.search(stripped):
        return f"a garbled or code-like token: {_excerpt(stripped, m.start(), m.end())!r}"
    return find_loop(stripped)


# --------------------------------------------------------------------------------------------- topic


def find_off_topic(text: str, vocabulary: WordList, topic: str) -> str | None:
    """None when `text` uses a word of `vocabulary`; else why it is off its topic."""
    if vocabulary.first_match(words_of(text)) is not None:
        return None
    return f"says nothing about {topic}: {text.strip()[:80]!r}"


_PERSON = WordList(PERSON_WORDS)


def find_caption_not_about_face(caption: str) -> str | None:
    """None when the caption names a person or a face; else why it says nothing about them."""
    if _PERSON.first_match(words_of(caption)) is not None:
        return None
    return f"the caption names no person and no face: {caption.strip()[:80]!r}"


# ------------------------------------------------------------------------------------------ repeated


@dataclass(frozen=True)
class Repeat:
    """Two categories of one sample answered alike: their names and how alike (0..1)."""

    first: str
    second: str
    similarity: float


def similarity(a: str, b: str, containment: bool = True) -> float:
    """How alike two texts are, 0..1: difflib's ratio over their lower-cased word sequences; over their
    characters when one has fewer than four words (one garbled token against another); and, with
    `containment`, at least the share of the shorter text found in the longer one when the shorter has
    eight words or more (an answer repeated with more after it)."""
    wa, wb = _ANY_WORD.findall(a.casefold()), _ANY_WORD.findall(b.casefold())
    if not wa or not wb:
        return 1.0 if wa == wb else 0.0
    if min(len(wa), len(wb)) < 4:
        return SequenceMatcher(None, " ".join(wa), " ".join(wb), autojunk=False).ratio()
    matcher = SequenceMatcher(None, wa, wb, autojunk=False)
    ratio = matcher.ratio()
    shorter = min(len(wa), len(wb))
    if containment and shorter >= 8:
        shared = sum(block.size for block in matcher.get_matching_blocks())
        ratio = max(ratio, shared / shorter)
    return ratio


def similarity_bound(a: Counter[str], b: Counter[str], containment: bool = True) -> float:
    """An upper bound of `similarity` for texts of these word counts (each with four words or more):
    difflib's matching blocks never match more words than the two multisets share, so ratio ≤
    2·shared/(len a + len b) and containment ≤ shared/shorter. Cheap (no alignment): a pair below the
    threshold by this bound needs no SequenceMatcher."""
    shared = sum((a & b).values())
    na, nb = sum(a.values()), sum(b.values())
    bound = 2 * shared / (na + nb)
    if containment and min(na, nb) >= 8:
        bound = max(bound, shared / min(na, nb))
    return bound


def find_repeated_answer(answers: list[tuple[str, str]], threshold: float,
                         summaries: frozenset[str] = frozenset({"detail"})) -> Repeat | None:
    """The first pair of (category, answer) whose answers are at least `threshold` alike, or None.

    A summary category (`detail`: "describe the image in detail") may restate another answer inside a
    longer text, so a pair with one is compared as whole texts only, not by containment. Pairs that
    `similarity_bound` puts below the threshold are not aligned (the same verdict, at a fraction of the cost)."""
    words = [Counter(_ANY_WORD.findall(text.casefold())) for _, text in answers]
    for i, (cat_a, a) in enumerate(answers):
        for j, (cat_b, b) in enumerate(answers[i + 1 :], start=i + 1):
            containment = cat_a not in summaries and cat_b not in summaries
            if min(sum(words[i].values()), sum(words[j].values())) >= 4 and \
                    similarity_bound(words[i], words[j], containment) < threshold:
                continue
            s = similarity(a, b, containment=containment)
            if s >= threshold:
                return Repeat(cat_a, cat_b, s)
    return None


def _excerpt(text: str, start: int, end: int, around: int = 30) -> str:
    lo, hi = max(0, start - around), min(len(text), end + around)
    return ("…" if lo else "") + " ".join(text[lo:hi].split()) + ("…" if hi < len(text) else "")
