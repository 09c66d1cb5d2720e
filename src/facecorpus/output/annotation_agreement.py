"""How often the LLM's attribute annotations agree with the dataset labels and with the face models.

Per sample (a manifest column, `annotation_pairs`): one `name<TAB>kind<TAB>llm<TAB>other` entry for each
annotated attribute that something else also gave — `kind` is `label` (a dataset label of that
attribute) or `face_model` (what the face models measured on the primary face: expression, gender,
age bin, and head pose from the measured yaw). Per run (stats.json `annotation_agreement`, the card):
per attribute and kind, the number of samples compared, the agreement rate and Cohen's kappa.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from ..labels import age_bin_of, head_pose_of
from ..records import Sample

LABEL, FACE_MODEL = "label", "face_model"


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def annotation_pairs(sample: Sample) -> list[str]:
    """The sample's (attribute, kind, LLM value, other value) comparisons, tab-separated."""
    if not sample.annotations:
        return []
    face = sample.faces[sample.primary_face] if sample.faces and sample.primary_face is not None else None
    measured: dict[str, str] = {}
    if face is not None:
        if face.expression is not None:
            measured["expression"] = face.expression.label
        if face.gender is not None:
            measured["gender"] = face.gender
        if face.age is not None:
            measured["age"] = age_bin_of(face.age)
        if face.pose is not None:
            measured["head_pose"] = head_pose_of(face.pose.yaw)
    out = []
    for name, v in sorted(sample.annotations.items()):
        label = sample.attributes.get(name)
        if label is not None and label.source == LABEL:
            out.append(f"{name}\t{LABEL}\t{_text(v.value)}\t{_text(label.value)}")
        if name in measured:
            out.append(f"{name}\t{FACE_MODEL}\t{_text(v.value)}\t{measured[name]}")
    return out


def agreement(pairs_per_sample: list[list[str] | None]) -> dict[str, dict[str, dict[str, Any]]]:
    """{attribute: {kind: {n, agree, rate, kappa}}} over every sample's pairs."""
    return agreement_from_counts(Counter(entry for pairs in pairs_per_sample for entry in pairs or []))


def agreement_from_counts(entries: Counter) -> dict[str, dict[str, dict[str, Any]]]:
    """The same table from how often each `name<TAB>kind<TAB>llm<TAB>other` entry occurs, so a run's
    summary holds one count per distinct comparison, never one per sample."""
    by: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for entry, n in entries.items():
        name, kind, llm, other = entry.split("\t")
        by[(name, kind)][(llm, other)] += n
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (name, kind), pairs in sorted(by.items()):
        total = sum(pairs.values())
        agree = sum(n for (x, y), n in pairs.items() if x == y)
        kappa = _kappa(pairs, total)
        out.setdefault(name, {})[kind] = {"n": total, "agree": agree, "rate": round(agree / total, 4),
                                          "kappa": None if kappa is None else round(kappa, 4)}
    return out


def _kappa(pairs: Counter, total: int) -> float | None:
    """Cohen's kappa from a (rater a, rater b) → units table (review/agreement.cohen_kappa's definition)."""
    ca: Counter = Counter()
    cb: Counter = Counter()
    for (x, y), n in pairs.items():
        ca[x] += n
        cb[y] += n
    expected = sum(ca[k] * cb[k] for k in ca.keys() | cb.keys()) / (total * total)
    if math.isclose(expected, 1.0):
        return None
    observed = sum(n for (x, y), n in pairs.items() if x == y) / total
    return (observed - expected) / (1 - expected)
