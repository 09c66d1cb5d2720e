"""Which detected faces a sample keeps, which one it is about, and why an image is rejected.

Order of the checks, each on what the previous one left: no face at all → `no_face`; none with
`score >= min_score` → `low_score`; none with shorter box side >= `min_face_size` → `face_too_small`;
more than `max_faces` left → `too_many_faces`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import Face
from ..rejection import Rejected
from .config import FacesConfig


@dataclass
class Selection:
    """Kept faces in reading order (left to right, then top to bottom) and the primary face's index."""

    faces: list[Face]
    primary: int
    dropped: int


def _size(face: Face) -> float:
    return min(face.box.width, face.box.height)


def select_faces(faces: list[Face], cfg: FacesConfig, width: int, height: int) -> Selection:
    """Apply the recipe's filters; raises Rejected with the reason when no usable face remains."""
    if not faces:
        raise Rejected("no_face", "no face was found in the image")
    scored = [f for f in faces if f.score >= cfg.min_score]
    if not scored:
        best = max(f.score for f in faces)
        raise Rejected(
            "low_score", f"{len(faces)} possible face(s) found, the best scores {best:.3f}, below faces.min_score {cfg.min_score}"
        )
    sized = [f for f in scored if _size(f) >= cfg.min_face_size]
    if not sized:
        biggest = max(_size(f) for f in scored)
        raise Rejected(
            "face_too_small", f"the largest face is {biggest:.0f} px, below faces.min_face_size {cfg.min_face_size}"
        )
    if len(sized) > cfg.max_faces:
        raise Rejected("too_many_faces", f"{len(sized)} faces pass the filters, more than faces.max_faces {cfg.max_faces}")
    kept = sorted(sized, key=lambda f: (round(f.box.x1), round(f.box.y1)))
    return Selection(faces=kept, primary=primary_index(kept, cfg.primary, width, height), dropped=len(faces) - len(kept))


def primary_index(faces: list[Face], rule: str, width: int, height: int) -> int:
    """Index of the face the sample is about: the largest box, or the one nearest the image centre."""
    if rule == "central":
        cx, cy = width / 2.0, height / 2.0

        def off_centre(i: int) -> tuple[float, float]:
            b = faces[i].box
            d = ((b.x1 + b.x2) / 2 - cx) ** 2 + ((b.y1 + b.y2) / 2 - cy) ** 2
            return d, -b.width * b.height  # equally central: the bigger face

        return min(range(len(faces)), key=off_centre)
    return max(range(len(faces)), key=lambda i: faces[i].box.width * faces[i].box.height)
