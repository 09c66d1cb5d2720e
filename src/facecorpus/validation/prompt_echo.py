"""Generated text that echoes our own prompts: "The photograph is not attached." sent back as a caption.

The echo sources are the fixed wording of every template of the shipped prompt sets (and of the
recipe's own prompt folder): the literal text between Jinja tags, read with Jinja's lexer, so that a
variable (the labelled subject, the alt-text, the text a rewrite starts from) never counts as prompt
wording. Question templates are left out: the stored question goes with the answer, and restating it
("The head pose of the face in this image is frontal") is an answer, not an echo — an answer that asks
a question is `meta_talk`'s to catch. The corrective re-ask message and the topic phrases are sources too.

A text echoes a prompt when it shares a run of `min_words` consecutive normalised words (NFKC,
case-folded, `\\w+`) with one of those literal pieces, the run holding at least two content words
(so "of the" chains do not count); when it holds a whole sentence or topic phrase of ours of five words
or more ("The photograph is not attached", "apparent age, gender and ethnicity"); or when one of its
sentences is, word for word, one of ours of three words or more.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import yaml

from ..resources import data_dir
from .refusals import CORRECTIVE_MESSAGE
from .source_copy import words
from .vocabulary import FUNCTION_WORDS

_SENTENCE_END = re.compile(r"[.!?;:\n]+")
#: template roles whose wording is the record's own question, not an instruction
_QUESTION_ROLES = frozenset({"question"})


def literal_pieces(template_source: str) -> list[str]:
    """The fixed text of a Jinja template: its data tokens, variables and tags left out."""
    env = jinja2.Environment(autoescape=False)
    return [value for _, kind, value in env.lex(template_source) if kind == "data" and value.strip()]


def prompt_sources(custom_root: str | None = None) -> list[str]:
    """Every literal piece of every non-question template of the shipped prompt sets (and of
    `custom_root` when it exists), their topic phrases, and the corrective re-ask message."""
    roots = [data_dir("prompts")]
    if custom_root and (Path(custom_root).expanduser() / "manifest.yaml").is_file():
        roots.append(Path(custom_root).expanduser())
    pieces: list[str] = [CORRECTIVE_MESSAGE]
    for root in roots:
        manifest = yaml.safe_load((root / "manifest.yaml").read_text(encoding="utf-8")) or {}
        for entry in (manifest.get("sets") or {}).values():
            for role, spec in (entry.get("templates") or {}).items():
                path = root / spec["file"]
                if role in _QUESTION_ROLES or not path.is_file():
                    continue
                pieces += literal_pieces(path.read_text(encoding="utf-8"))
            pieces += [str(t) for t in (entry.get("topics") or {}).values()]
    return pieces


class PromptEcho:
    """Finds runs of prompt wording in generated text. Built once per run (picklable: sets of tuples)."""

    def __init__(self, sources: list[str], min_words: int = 6) -> None:
        self.min_words = min_words
        grams: set[tuple[str, ...]] = set()
        sentences: set[tuple[str, ...]] = set()
        for piece in sources:
            for part in [*_SENTENCE_END.split(piece), piece]:
                sw = tuple(words(part))
                if len(sw) >= 3 and sum(1 for x in sw if x not in FUNCTION_WORDS) >= 2:
                    sentences.add(sw)
                    if 5 <= len(sw) < min_words:  # a short sentence or phrase of ours, copied whole
                        grams.add(sw)
            w = words(piece)
            for i in range(len(w) - min_words + 1):
                gram = tuple(w[i : i + min_words])
                if sum(1 for x in gram if x not in FUNCTION_WORDS and not x.isdigit()) >= 2:
                    grams.add(gram)
        self.grams = frozenset(grams)
        self.lengths = tuple(sorted({len(g) for g in grams}))
        self.sentences = frozenset(sentences)

    def find(self, text: str) -> str | None:
        """The first run of `min_words` words `text` shares with a prompt (or a whole prompt sentence), or None."""
        for part in _SENTENCE_END.split(text):
            sw = tuple(words(part))
            if sw in self.sentences:
                return " ".join(sw)
        w = words(text)
        for n in self.lengths:
            for i in range(len(w) - n + 1):
                gram = tuple(w[i : i + n])
                if gram in self.grams:
                    j = i + n  # extend the run for the detail as long as it stays prompt wording
                    while j < len(w) and tuple(w[j - n + 1 : j + 1]) in self.grams:
                        j += 1
                    return " ".join(w[i:j])
        return None
