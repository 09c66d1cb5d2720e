"""How often the LLM's attribute annotations agree with the dataset labels and with the face models.

Per sample (a manifest column, `annotation_pairs`): one `name<TAB>kind<TAB>llm<TAB>other` entry for each
annotated attribute that something else also gave — `kind` is `label` (a dataset label of that
attribute) or `face_model` (what the face models measured on the primary face: expression, gender,
age bin, and head pose from the measured yaw). Per run (stats.json `annotation_agreement`, the card):
per attribute and kind, the number of samples compared, the agreement rate and Cohen's kappa.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..labels import age_bin_of, head_pose_of
from ..records import Sample
from ..review.agreement import cohen_kappa

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
    by: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for pairs in pairs_per_sample:
        for entry in pairs or []:
            name, kind, llm, other = entry.split("\t")
            a, b = by[(name, kind)]
            a.append(llm)
            b.append(other)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (name, kind), (a, b) in sorted(by.items()):
        agree = sum(x == y for x, y in zip(a, b, strict=True))
        kappa = cohen_kappa(a, b)
        out.setdefault(name, {})[kind] = {"n": len(a), "agree": agree, "rate": round(agree / len(a), 4),
                                          "kappa": None if kappa is None else round(kappa, 4)}
    return out
