"""What `facecorpus demo` prints at the end, and its yield gate.

The demo's inputs hold broken files, bad label rows and pictures without a face on purpose; what it
is judged by is the share of **faces** it turns into samples: every sample the faces stage produced
(written, or rejected by a later stage: render, generate, validate). `demo_report(out)` reads the
output's stats.json, reject lines and shards and returns the lines to print — a table of what was
written and rejected, how each text was made (LLM rewrite kept, or template text), and three example
QA pairs — plus the yield. `facecorpus demo` exits 1 when the yield is below `MIN_FACE_YIELD`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: the demo fails when fewer of the faces it found become samples (issue: at least 90%)
MIN_FACE_YIELD = 0.9
#: stages before and at face analysis; a reject there never had a face to write about
_BEFORE_FACES = frozenset({"source", "image", "dedup", "faces"})


@dataclass
class DemoReport:
    """The demo's figures and the lines that show them."""

    faces: int
    written: int
    lines: list[str] = field(default_factory=list)

    @property
    def face_yield(self) -> float:
        return self.written / self.faces if self.faces else 0.0

    @property
    def ok(self) -> bool:
        return self.faces > 0 and self.face_yield >= MIN_FACE_YIELD


def _made_by(record: dict[str, Any], category: str) -> str:
    """How one text of a record was made, in words: the LLM's rewrite, the template text it fell back
    to, or the generator's own text."""
    flags = record.get("flags", [])
    if f"rewritten:{category}" in flags:
        return "LLM rewrite"
    if f"template_fallback:{category}" in flags:
        return "template text, the rewrite was not kept"
    return f"{record['provenance']['generator']} generator"


def _examples(out: str, n: int = 3) -> list[dict[str, Any]]:
    """Up to `n` example QA pairs, one category each, each from a different record; for each category a
    text the LLM rewrote is shown when there is one (labelled as such), else the text that stands."""
    from .output.readers import iter_output_samples

    records = sorted((json.loads(m["json"]) for _, m in iter_output_samples(out) if "json" in m), key=lambda r: r["key"])
    pairs = [(r, q) for r in records for q in r["qa"]]
    pairs.sort(key=lambda rq: f"rewritten:{rq[1]['category']}" not in rq[0].get("flags", []))  # stable: keys kept in order
    picked: list[dict[str, Any]] = []
    used_categories: set[str] = set()
    used_keys: set[str] = set()
    for r, q in pairs:
        if q["category"] in used_categories or r["key"] in used_keys or len(picked) >= n:
            continue
        used_categories.add(q["category"])
        used_keys.add(r["key"])
        picked.append({"key": r["key"], "caption": r["caption"], **q, "source": _made_by(r, q["category"])})
    return picked


def demo_report(out: str) -> DemoReport:
    """The demo's table, text origins and examples, from its output folder."""
    from .output.readers import load_rejects, read_manifest

    stats = json.loads(open(f"{out}/stats.json", encoding="utf-8").read())
    rejects = load_rejects(out)
    late = Counter(r.reason for r in rejects if r.stage not in _BEFORE_FACES)
    early = Counter(r.stage for r in rejects if r.stage in _BEFORE_FACES)
    written = int(stats["written"])
    faces = written + sum(late.values())
    rep = DemoReport(faces=faces, written=written)
    share = f"{100 * rep.face_yield:.0f}%" if faces else "-"
    rep.lines += [
        "",
        "| demo | count |",
        "|---|---:|",
        f"| inputs | {stats['inputs']} |",
        f"| rejected before a face was found (broken files, bad label rows, no face: on purpose) | "
        f"{sum(early.values())} |",
        f"| faces found | {faces} |",
        f"| **written** | **{written}** ({share} of the faces; at least {MIN_FACE_YIELD:.0%} required) |",
        *[f"| rejected after the faces stage: `{reason}` | {n} |" for reason, n in sorted(late.items())],
        f"| QA pairs written | {stats['qa_pairs']} |",
    ]
    flags = [f for row in read_manifest(out).column("flags").to_pylist() for f in row or []]
    kept = Counter(f.split(":", 1)[1] for f in flags if f.startswith("rewritten:"))
    fallback = Counter(f.split(":", 1)[1] for f in flags if f.startswith("template_fallback:"))
    if kept or fallback:
        rep.lines += ["", "| text | LLM rewrite kept | template text kept (rewrite unfaithful, junk or failed) |",
                      "|---|---:|---:|"]
        for cat in sorted(set(kept) | set(fallback), key=lambda c: (c != "caption", c)):
            rep.lines.append(f"| {cat} | {kept.get(cat, 0)} | {fallback.get(cat, 0)} |")
    examples = _examples(out)
    if examples:
        rep.lines += ["", "Example QA pairs:"]
        for ex in examples:
            rep.lines += [f"- [{ex['key']}, {ex['category']}, {ex['source']}]", f"  Q: {ex['question']}",
                          f"  A: {ex['answer']}"]
    return rep
