"""Merge dataset labels with what the face models measured on the primary face.

Labels win for every attribute they cover; model values fill the rest, each with `source
'model:<name>'` and its confidence. Where both speak and disagree, an `AttributeConflict` is kept on
the sample (and the flag `label_conflict`) so reviewers can see it. Ages compare by range: a model age
conflicts with a label bin only when it lies more than `AGE_TOLERANCE_YEARS` outside the bin.
"""

from __future__ import annotations

from ..labels import AGE_RANGES
from ..records import AttributeConflict, AttributeValue, Face

AGE_TOLERANCE_YEARS = 5
CONFLICT_FLAG = "label_conflict"


def age_bin(age: float) -> str:
    """The normalised FairFace bin (e.g. '30-39', '70+') holding an age in years."""
    years = max(0, int(age))
    for code, (low, high) in AGE_RANGES.items():
        if years >= low and (high is None or years <= high):
            return code
    return "70+"


def model_attributes(face: Face, models: dict[str, str]) -> dict[str, AttributeValue]:
    """Attributes measured on a face, keyed like the labels ('gender', 'age', 'expression')."""
    out: dict[str, AttributeValue] = {}
    if face.expression is not None and "expression" in models:
        out["expression"] = AttributeValue(
            value=face.expression.label, source=f"model:{models['expression']}", confidence=face.expression.confidence
        )
    if face.gender is not None and "gender" in models:
        out["gender"] = AttributeValue(value=face.gender, source=f"model:{models['gender']}")
    if face.age is not None and "age" in models:
        out["age"] = AttributeValue(value=age_bin(face.age), source=f"model:{models['age']}", raw=f"{face.age:g}")
    return out


def _disagree(name: str, label: AttributeValue, model: AttributeValue) -> bool:
    if name == "age" and model.raw is not None and str(label.value) in AGE_RANGES:
        low, high = AGE_RANGES[str(label.value)]
        years = float(model.raw)
        return years < low - AGE_TOLERANCE_YEARS or (high is not None and years > high + 1 + AGE_TOLERANCE_YEARS)
    return str(label.value).lower() != str(model.value).lower()


def merge_attributes(
    labels: dict[str, AttributeValue], measured: dict[str, AttributeValue]
) -> tuple[dict[str, AttributeValue], list[AttributeConflict]]:
    """(merged attributes, conflicts). Labels win; a disagreeing model value is kept only as a conflict."""
    merged = dict(measured)
    conflicts = []
    for name, label in labels.items():
        model = measured.get(name)
        if model is not None and _disagree(name, label, model):
            conflicts.append(
                AttributeConflict(
                    attribute=name,
                    label_value=label.value,
                    model_value=float(model.raw) if name == "age" and model.raw is not None else model.value,
                    model=model.source.removeprefix("model:"),
                    confidence=model.confidence,
                )
            )
        merged[name] = label
    return merged, conflicts
