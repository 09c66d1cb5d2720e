"""The `validation` section of stats.json, counted from the output files (reject lines and manifest flags)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..records import Reject


def _sorted(c: Counter) -> dict[str, int]:
    return dict(sorted(c.items()))


def validation_counts(rejects: list[Reject], flags: list[list[str]]) -> dict[str, Any]:
    """Refusals and label conflicts per QA category ('caption' when the caption was the culprit), flagged
    label conflicts per attribute, duplicates and hold-out matches.

    `flags`: each written sample's flags (manifest column `flags`).
    """
    by_cat: dict[str, Counter] = {"refusal": Counter(), "label_conflict": Counter()}
    for r in rejects:
        if r.reason in by_cat:
            by_cat[r.reason].update(r.categories or ["caption"])
    flagged = Counter(f.split(":", 1)[1] for row in flags for f in row or [] if f.startswith("label_conflict:"))
    reasons = Counter(r.reason for r in rejects)
    return {
        "refusals_by_category": _sorted(by_cat["refusal"]),
        "label_conflicts_rejected_by_category": _sorted(by_cat["label_conflict"]),
        "label_conflicts_flagged_by_attribute": _sorted(flagged),
        "duplicates": reasons.get("duplicate", 0),
        "holdout": reasons.get("holdout", 0),
    }
