"""Precision and recall of the junk checks on the labelled set tests/data/quality_set.jsonl.

The set (its provenance is in each line's `origin`): distinct captions and answers the embedded local
model (SmolLM2-135M-Instruct via llama.cpp) wrote for the demo inputs under the three shipped prompt
sets (tests/data/harvest_quality_set.py), good answers written by hand, and templates-generator output;
each labelled by hand — `junk: []` for a text worth training on, else the kinds of junk it shows
(the check names of `JUNK_CHECKS`, or `other` for junk no check is meant to see, such as fluent
nonsense). Lines of `kind: sample` label, per harvested record, which pairs of categories were
answered alike (`repeated`).

    .venv/bin/python -m tests.support.quality_set        # prints the table docs/trust.md shows
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from facecorpus.validation.config import JUNK_CHECKS, JunkConfig
from facecorpus.validation.junk import find_repeated_answer
from facecorpus.validation.text_quality import JunkRules

SET_PATH = Path(__file__).parents[1] / "data" / "quality_set.jsonl"
PER_TEXT = tuple(c for c in JUNK_CHECKS if c != "repeated_answer")


@dataclass
class Figures:
    """One check on the set: what it fired on, against the labels."""

    check: str
    labelled: int = 0  # texts (pairs) labelled with this kind
    fired: int = 0
    right_kind: int = 0  # fired on a text labelled with this kind
    on_junk: int = 0  # fired on a text labelled junk of any kind
    missed: list[str] = field(default_factory=list)
    wrongly: list[str] = field(default_factory=list)  # fired on a good text

    @property
    def precision(self) -> float:
        """Of the texts it fired on, the share labelled with its kind."""
        return self.right_kind / self.fired if self.fired else 1.0

    @property
    def precision_junk(self) -> float:
        """Of the texts it fired on, the share labelled junk at all (what a good text risks)."""
        return self.on_junk / self.fired if self.fired else 1.0

    @property
    def recall(self) -> float:
        return self.right_kind / self.labelled if self.labelled else 1.0


def load_set(path: Path = SET_PATH) -> tuple[list[dict], list[dict]]:
    """(text lines, sample lines) of the labelled set."""
    texts, samples = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            (samples if row.get("kind") == "sample" else texts).append(row)
    return texts, samples


def measure(rules: JunkRules | None = None, path: Path = SET_PATH, part: str | None = None) -> dict[str, Figures]:
    """Every check's figures on the set (or on one `part`: 'tuning', what the checks were tuned on, or
    'held-out', labelled after), plus 'any' (the gate as a whole: good versus junk texts)."""
    rules = rules or JunkRules.for_config(JunkConfig())
    texts, samples = load_set(path)
    if part is not None:
        texts = [t for t in texts if t["part"] == part]
        samples = [s for s in samples if s["part"] == part]
    figs = {c: Figures(c) for c in (*PER_TEXT, "repeated_answer", "any")}
    for row in texts:
        labels = set(row["junk"])
        fired = {reason for reason, _ in rules.check_text(row["category"], row["text"])}
        for check in PER_TEXT:
            f = figs[check]
            f.labelled += check in labels
            if check in fired:
                f.fired += 1
                f.right_kind += check in labels
                f.on_junk += bool(labels)
                if not labels:
                    f.wrongly.append(row["text"])
            elif check in labels:
                f.missed.append(row["text"])
        g = figs["any"]
        g.labelled += bool(labels)
        if fired:
            g.fired += 1
            g.right_kind += bool(labels)
            g.on_junk += bool(labels)
            if not labels:
                g.wrongly.append(row["text"])
        elif labels:
            g.missed.append(row["text"])
    rep = figs["repeated_answer"]
    threshold = rules.config.repeated_similarity
    summaries = frozenset(rules.config.summary_categories)
    for s in samples:
        answers = [(c, t) for c, t in s["texts"].items() if c != "caption" and t.strip()]
        truth = {frozenset(p) for p in s["repeated"]}
        rep.labelled += len(truth)
        # every pair the check would name (it reports the first; here each pair counts)
        found = {frozenset((a[0], b[0])) for i, a in enumerate(answers) for b in answers[i + 1 :]
                 if find_repeated_answer([a, b], threshold, summaries) is not None}
        rep.fired += len(found)
        rep.right_kind += len(found & truth)
        rep.on_junk += len(found & truth)
        rep.missed += [f"{s['sample']}: {'/'.join(sorted(p))}" for p in truth - found]
        rep.wrongly += [f"{s['sample']}: {'/'.join(sorted(p))}" for p in found - truth]
    return figs


def table(figs: dict[str, Figures]) -> str:
    """The markdown table of docs/trust.md."""
    lines = ["| check | labelled | fired | precision (its kind) | precision (any junk) | recall |",
             "|---|---:|---:|---:|---:|---:|"]
    for f in figs.values():
        name = "all checks together (good vs junk)" if f.check == "any" else f"`{f.check}`"
        lines.append(f"| {name} | {f.labelled} | {f.fired} | {f.precision:.2f} | {f.precision_junk:.2f} | {f.recall:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    texts, samples = load_set()
    for part in ("tuning", "held-out", None):
        sub = [t for t in texts if part is None or t["part"] == part]
        good = sum(1 for t in sub if not t["junk"])
        recs = sum(1 for x in samples if part is None or x["part"] == part)
        print(f"\n{part or 'all'}: {len(sub)} distinct texts ({good} good, {len(sub) - good} junk), {recs} harvested records\n")
        print(table(measure(part=part)))
    figs = measure()
    for f in figs.values():
        for what, items in (("missed", f.missed), ("fired on good", f.wrongly)):
            for t in items[:40]:
                print(f"  {f.check} {what}: {t[:140]!r}")
