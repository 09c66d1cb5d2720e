"""Label vocabularies and their normalised codes (FairFace's, used as the canonical attribute values).

Raw labels stay on the record (`AttributeValue.raw`); the normalised code is what the pipeline reasons
with. `facecorpus.prompting.phrases` turns codes into natural English.
"""

from __future__ import annotations

AGE_BINS: dict[str, str] = {
    "0-2": "0-2",
    "3-9": "3-9",
    "10-19": "10-19",
    "20-29": "20-29",
    "30-39": "30-39",
    "40-49": "40-49",
    "50-59": "50-59",
    "60-69": "60-69",
    "more than 70": "70+",
}
GENDERS: dict[str, str] = {"Male": "male", "Female": "female"}
RACES: dict[str, str] = {
    "East Asian": "east_asian",
    "Indian": "indian",
    "Black": "black",
    "White": "white",
    "Middle Eastern": "middle_eastern",
    "Latino_Hispanic": "latino_hispanic",
    "Southeast Asian": "southeast_asian",
}

#: (low, high) age in years covered by each normalised bin; 70+ has no upper bound
AGE_RANGES: dict[str, tuple[int, int | None]] = {
    "0-2": (0, 2),
    "3-9": (3, 9),
    "10-19": (10, 19),
    "20-29": (20, 29),
    "30-39": (30, 39),
    "40-49": (40, 49),
    "50-59": (50, 59),
    "60-69": (60, 69),
    "70+": (70, None),
}


def normalise(attribute: str, raw: str) -> str | None:
    """Normalised code of a raw FairFace label, or None if the value is not in the vocabulary."""
    table = {"age": AGE_BINS, "gender": GENDERS, "race": RACES}[attribute]
    return table.get(raw.strip())
