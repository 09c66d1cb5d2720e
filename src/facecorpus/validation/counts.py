"""The `validation` section of stats.json, counted from the output files (reject lines and manifest flags)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..records import Reject
from .config import JUNK_CHECKS


def _sorted(c: Counter) -> dict[str, int]:
    return dict(sorted(c.items()))


def validation_counts(rejects: list[Reject], flags: list[list[str]]) -> dict[str, Any]:
    """Refusals and label conflicts per QA category ('caption' when the caption was the culprit), flagged
    label conflicts per attribute, the junk checks' rejects and flags per check and category
    (`text_checks`), duplicates and hold-out matches.

    `flags`: each written sample's flags (manifest column `flags`).
    """
    by_cat: dict[str, Counter] = {"refusal": Counter(), "label_conflict": Counter()}
    for r in rejects:
        if r.reason in by_cat:
            by_cat[r.reason].update(r.categories or ["caption"])
    flagged = Counter(f.split(":", 1)[1] for row in flags for f in row or [] if f.startswith("label_conflict:"))
    reasons = Counter(r.reason for r in rejects)
    junk_rejected: dict[str, Counter] = {}
    for r in rejects:
        if r.stage == "validate" and r.reason in JUNK_CHECKS:
            junk_rejected.setdefault(r.reason, Counter()).update(r.categories or ["caption"])
    junk_flagged: dict[str, Counter] = {}
    for row in flags:
        for f in row or []:
            check, _, category = f.partition(":")
            if check in JUNK_CHECKS and category:
                junk_flagged.setdefault(check, Counter())[category] += 1
    return {
        "refusals_by_category": _sorted(by_cat["refusal"]),
        "label_conflicts_rejected_by_category": _sorted(by_cat["label_conflict"]),
        "label_conflicts_flagged_by_attribute": _sorted(flagged),
        "text_checks": {
            "rejected": {k: _sorted(junk_rejected[k]) for k in JUNK_CHECKS if k in junk_rejected},
            "flagged": {k: _sorted(junk_flagged[k]) for k in JUNK_CHECKS if k in junk_flagged},
        },
        "duplicates": reasons.get("duplicate", 0),
        "holdout": reasons.get("holdout", 0),
    }
