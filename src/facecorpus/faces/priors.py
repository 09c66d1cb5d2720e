"""Size priors: what a source knows about how large its faces are, so the detector searches that scale only.

A source whose images are face crops (FairFace; CelebA and UTKFace aligned crops) sets
`WorkItem.face_size = "crop"` on each item: one large face fills the image. The recipe key
`faces.size_prior` decides what the face stage does with it: `auto` follows the source's hint, `any`
ignores it (every scale is searched), `crop` treats every image as a face crop. What a prior changes
is the detector's search (faces/search.py: BlazeFace's short-range model only; MTCNN: a pyramid that
starts near the crop's scale), never the selection rules: a crop without a face is still `no_face`.
"""

from __future__ import annotations

#: the one value of `WorkItem.face_size` so far
CROP = "crop"


def item_prior(hint: str | None, setting: str) -> str | None:
    """The size prior for one item (its source's `face_size` hint) under the recipe's `faces.size_prior`
    ('auto', 'any' or 'crop')."""
    if setting == "any":
        return None
    if setting == CROP:
        return CROP
    return CROP if hint == CROP else None
