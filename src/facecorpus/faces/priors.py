"""Size priors: what a source knows about how large its faces are, so the detector searches that scale only.

A source whose images are face crops (FairFace; CelebA and UTKFace aligned crops) puts
`face_size: crop` on each item's context: one large face fills the image. The recipe key
`faces.size_prior` decides what the face stage does with it: `auto` follows the source's hint, `any`
ignores it (every scale is searched), `crop` treats every image as a face crop. What a prior changes
is the detector's search (faces/search.py: BlazeFace's short-range model only; MTCNN: a pyramid that
starts near the crop's scale), never the selection rules: a crop without a face is still `no_face`.
"""

from __future__ import annotations

from typing import Any

#: the WorkItem context key a source sets, and its one value so far
FACE_SIZE_CONTEXT = "face_size"
CROP = "crop"


def item_prior(context: dict[str, Any], setting: str) -> str | None:
    """The size prior for one item under the recipe's `faces.size_prior` ('auto', 'any' or 'crop')."""
    if setting == "any":
        return None
    if setting == CROP:
        return CROP
    return CROP if context.get(FACE_SIZE_CONTEXT) == CROP else None
