"""`facecorpus review DIR --summary`: acceptance per category and per label group, and agreement.

The unit is a QA pair (for samples) or a reject line (for rejects). A unit's verdict across reviewers
is the consensus rule the exporter also uses: rejected if any reviewer rejected it, accepted if
someone accepted it and nobody rejected it, flagged if it was only flagged. The acceptance rate is
accepted / (accepted + rejected), with a 95% Wilson interval; flagged units are counted apart.
Agreement is Cohen's kappa for every pair of reviewers over the units both judged.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .agreement import cohen_kappa, wilson_interval
from .queue import reject_candidates, sample_candidates
from .verdicts import ReviewState, reviewer_states

LABEL_ATTRIBUTES = ("age", "gender", "race")

#: (item id, qa index or None for a reject) → the fields a unit is grouped by
Unit = tuple[str, int | None]


@dataclass
class UnitInfo:
    category: str | None
    labels: dict[str, str]
    stage: str | None = None
    reason: str | None = None


def consensus(verdicts: Iterable[str]) -> str | None:
    """One verdict for a unit judged by several reviewers (see module docstring)."""
    vs = set(verdicts)
    if "reject" in vs:
        return "reject"
    if "accept" in vs:
        return "accept"
    if "flag" in vs:
        return "flag"
    return None


def _units(out: str) -> dict[Unit, UnitInfo]:
    units: dict[Unit, UnitInfo] = {}
    for c in sample_candidates(out):
        labels = {a: c.fields.get(f"label_{a}") or "unknown" for a in LABEL_ATTRIBUTES}
        for i, cat in enumerate(c.fields["categories"]):
            units[(c.id, i)] = UnitInfo(category=cat, labels=labels)
    for c in reject_candidates(out):
        units[(c.id, None)] = UnitInfo(category=None, labels={}, stage=c.fields["stage"], reason=c.fields["reason"])
    return units


def unit_verdict(state: ReviewState, unit: Unit) -> str | None:
    item, index = unit
    return state.item_verdict(item) if index is None else state.qa_verdict(item, index)


def _rate(counts: dict[str, int]) -> dict[str, Any]:
    acc, rej = counts.get("accept", 0), counts.get("reject", 0)
    lo, hi = wilson_interval(acc, acc + rej)
    return {
        "accepted": acc,
        "rejected": rej,
        "flagged": counts.get("flag", 0),
        "judged": acc + rej,
        "rate": acc / (acc + rej) if acc + rej else None,
        "ci95": [round(lo, 4), round(hi, 4)] if acc + rej else None,
    }


def review_summary(out: str | Path) -> dict[str, Any]:
    """Acceptance (overall, per category, per label group, per reject stage/reason) and agreement."""
    states, unreadable = reviewer_states(out)
    units = _units(str(out))
    per_unit: dict[Unit, list[str]] = defaultdict(list)
    known_items = {item for item, _ in units}
    unknown_items = {item for s in states.values() for item, _ in s.verdicts if item not in known_items}
    for state in states.values():
        for unit in units:
            v = unit_verdict(state, unit)
            if v is not None:
                per_unit[unit].append(v)
    groups: dict[str, dict[str, dict[str, int]]] = {
        "overall": defaultdict(lambda: defaultdict(int)),
        "category": defaultdict(lambda: defaultdict(int)),
        "rejects_by_reason": defaultdict(lambda: defaultdict(int)),
        **{f"label_{a}": defaultdict(lambda: defaultdict(int)) for a in LABEL_ATTRIBUTES},
    }
    for unit, verdicts in per_unit.items():
        v = consensus(verdicts)
        info = units[unit]
        if v is None:
            continue
        if unit[1] is None:
            groups["rejects_by_reason"][f"{info.stage}/{info.reason}"][v] += 1
            continue
        groups["overall"]["qa"][v] += 1
        groups["category"][info.category or "unknown"][v] += 1
        for a in LABEL_ATTRIBUTES:
            groups[f"label_{a}"][info.labels[a]][v] += 1
    summary: dict[str, Any] = {
        "reviewers": sorted(states),
        "units_reviewed": len(per_unit),
        "unreadable_lines": unreadable,
        "unknown_items": sorted(unknown_items),
    }
    for name, table in groups.items():
        summary[name] = {k: _rate(v) for k, v in sorted(table.items())}
    summary["agreement"] = _agreement(states, units)
    return summary


def _agreement(states: dict[str, ReviewState], units: dict[Unit, UnitInfo]) -> list[dict[str, Any]]:
    pairs = []
    for r1, r2 in itertools.combinations(sorted(states), 2):
        a, b = [], []
        for unit in units:
            v1, v2 = unit_verdict(states[r1], unit), unit_verdict(states[r2], unit)
            if v1 is not None and v2 is not None:
                a.append(v1)
                b.append(v2)
        if a:
            k = cohen_kappa(a, b)
            pairs.append({
                "reviewers": [r1, r2],
                "units": len(a),
                "observed_agreement": round(sum(x == y for x, y in zip(a, b, strict=True)) / len(a), 4),
                "kappa": None if k is None else round(k, 4),
            })
    return pairs


def _fmt_rate(r: dict[str, Any]) -> str:
    if r["rate"] is None:
        return f"{'-':>7}  {'':17}  n={r['judged']:<4} flagged {r['flagged']}"
    lo, hi = r["ci95"]
    return (
        f"{100 * r['rate']:6.1f}%  [{100 * lo:5.1f}, {100 * hi:5.1f}]%  n={r['judged']:<4} "
        f"(accepted {r['accepted']}, rejected {r['rejected']}, flagged {r['flagged']})"
    )


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned text for the terminal."""
    if not summary["reviewers"]:
        return "no reviews yet: run facecorpus review DIR to start one"
    lines = [f"reviewers: {', '.join(summary['reviewers'])} · units judged: {summary['units_reviewed']}"]
    sections = [("overall (QA pairs)", "overall"), ("per category", "category")]
    sections += [(f"per label group: {a}", f"label_{a}") for a in LABEL_ATTRIBUTES]
    sections += [("rejects (rate = rejection confirmed)", "rejects_by_reason")]
    for title, key in sections:
        table = summary[key]
        if not table:
            continue
        lines += ["", f"{title} — acceptance, 95% Wilson interval"]
        width = max(len(k) for k in table)
        lines += [f"  {k:<{width}}  {_fmt_rate(r)}" for k, r in table.items()]
    lines += ["", "agreement (Cohen's kappa)"]
    if not summary["agreement"]:
        lines.append("  needs two or more reviewers who judged the same items")
    for p in summary["agreement"]:
        k = "undefined (one label used throughout)" if p["kappa"] is None else f"{p['kappa']:.3f}"
        lines.append(
            f"  {p['reviewers'][0]} × {p['reviewers'][1]}: kappa {k} over {p['units']} units "
            f"(observed agreement {100 * p['observed_agreement']:.1f}%)"
        )
    if summary["unknown_items"]:
        lines += ["", f"warning: {len(summary['unknown_items'])} reviewed item(s) are not in this output "
                  f"(e.g. {summary['unknown_items'][0]}); they are left out"]
    for u in summary["unreadable_lines"]:
        lines.append(f"warning: unreadable review line skipped: {u}")
    return "\n".join(lines)
