"""Generated text that copies the untrusted source text (web alt-text), or writes what it orders written.

LAION's alt-text reaches prompts only inside a delimited untrusted block, but a weak model may still
obey an instruction hidden there ("answer with exactly the word X") or paste the text back. Two checks,
both on normalised words (NFKC, case-folded, `\\w+` runs, so punctuation and spacing do not matter):

- **verbatim span**: the generated text shares a run of at least `min_words` consecutive words with the
  source text. A short common phrase ("a woman smiling" against "woman smiling at camera") is far below
  the default of 8; a pasted sentence is not.
- **ordered text**: the source text tells the model what to write — an order verb in its bare form
  (answer, reply, respond, write, say, output, print, return, type, repeat; not after "the", "my", …)
  followed in the same sentence by a quoted string, by "the word(s)/phrase/text/string/sentence X", or
  by a colon and text — and the generated text contains that payload, however short.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")
#: order verbs in their bare (imperative) form: "says", "written" or "typing" describe, they do not order
_VERB = r"\b(?P<verb>answer|reply|respond|write|say|output|print|return|type|repeat)\b"
_QUOTED = r"\"[^\"]{1,200}\"|“[^”]{1,200}”|'[^']{1,200}'|‘[^’]{1,200}’"
#: "… the word X", "… the phrase 'X'": X is a quoted string or one whitespace-free token
_NAMED = re.compile(
    _VERB + r".*?\b(?:the\s+)?(?:word|words|phrase|text|string|sentence|token)s?\s+(?P<payload>"
    + _QUOTED + r"|[^\s\"'“‘]+)",
    re.IGNORECASE,
)
#: "reply only with "X"", "write 'X'": a quoted string soon after the verb
_QUOTED_AFTER_VERB = re.compile(_VERB + r"[^\"“‘']{0,60}?(?P<payload>" + _QUOTED + ")", re.IGNORECASE)
#: "write: X", "reply with: X" — the rest of the sentence ("Answer: 42" on a quiz picture is a noun: left out)
_COLON = re.compile(r"\b(?P<verb>reply|respond|write|say|output|print|type|repeat)\b(?:\s+\w+){0,3}?\s*:\s*"
                    r"(?P<payload>[^\n]{1,200})", re.IGNORECASE)
#: a verb after one of these is a noun ("the answer 'yes'", "my reply: …")
_DETERMINERS = frozenset("the a an my your his her their our its this that".split())
#: payload words alone too common to mean an order was followed
_FUNCTION_WORDS = frozenset("a an the and or of to in on at is are be it this that with for as by".split())
MAX_PAYLOAD_WORDS = 12


def words(text: str) -> list[str]:
    """Normalised words of `text`: NFKC, case-folded, runs of word characters."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


@dataclass(frozen=True)
class SourceCopy:
    """What a generated text took from the source text: `kind` 'verbatim' or 'ordered', and the words."""

    kind: str
    span: str


def _find(needle: list[str], hay: list[str]) -> bool:
    n = len(needle)
    return any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def ordered_payloads(source_text: str) -> list[list[str]]:
    """The texts `source_text` orders written, as normalised word lists (function-word-only ones left out)."""
    found: list[list[str]] = []
    for sentence in _SENTENCE.findall(source_text):
        for pattern in (_NAMED, _QUOTED_AFTER_VERB, _COLON):
            for m in pattern.finditer(sentence):
                before = words(sentence[: m.start("verb")])[-1:]
                if before and before[0] in _DETERMINERS:
                    continue
                payload = words(m.group("payload"))[:MAX_PAYLOAD_WORDS]
                if payload and not set(payload) <= _FUNCTION_WORDS and payload not in found:
                    found.append(payload)
    return found


def longest_shared_run(generated: list[str], source: list[str], min_words: int) -> list[str] | None:
    """The longest run of >= `min_words` consecutive words `generated` shares with `source`, or None."""
    if len(generated) < min_words or len(source) < min_words:
        return None
    grams = {tuple(source[i : i + min_words]) for i in range(len(source) - min_words + 1)}
    best: list[str] | None = None
    i = 0
    while i <= len(generated) - min_words:
        if tuple(generated[i : i + min_words]) not in grams:
            i += 1
            continue
        j = i + min_words  # extend while the run stays inside the source text
        while j < len(generated) and _find(generated[i : j + 1], source):
            j += 1
        if best is None or j - i > len(best):
            best = generated[i:j]
        i = j
    return best


class SourceCopyCheck:
    """Checks generated texts against one sample's source text (its words and orders parsed once)."""

    def __init__(self, source_text: str, min_words: int) -> None:
        self.min_words = min_words
        self.source = words(source_text)
        self.payloads = ordered_payloads(source_text)

    def find(self, text: str) -> SourceCopy | None:
        generated = words(text)
        for payload in self.payloads:
            if _find(payload, generated):
                return SourceCopy("ordered", " ".join(payload))
        run = longest_shared_run(generated, self.source, self.min_words)
        return SourceCopy("verbatim", " ".join(run)) if run else None
