"""Face boxes a source dataset already found: FaRL's RetinaFace detections, FaceCaption-15M's boxes.

Sources put them on `WorkItem.given_faces` as a `SourceFaces` (docs/laion.md): `faces` (a list of
{box: [x1, y1, x2, y2], score: float | None, landmarks5: [[x, y] × 5] | None}), `size` ([width, height]
of the image the coordinates are in) and `source` (`farl`, `facecaption15m`). Here they are scaled to the
decoded pixels (the image stage may have shrunk the image), clipped to them, and handed to the analyzer
in place of its detector. An empty list is not read as "no face": the detector runs as usual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..records import Face, FaceBox, SourceFaces
from ..rejection import Rejected
from .quality import face_quality

#: `Face.detector` of a given face starts with this, then names the source: 'given:farl'
GIVEN_PREFIX = "given:"
#: a given face without a score: the source vouches for it (FaceCaption-15M kept RetinaFace scores > 0.98)
UNSCORED = 1.0
#: a box that keeps less than this many pixels on either side once clipped lies outside the image
MIN_INSIDE_PX = 1.0


@dataclass(frozen=True)
class GivenFace:
    """One given face in the decoded image's pixels; `clipped` when its box reached past the image."""

    box: tuple[float, float, float, float]
    score: float | None
    landmarks5: tuple[tuple[float, float], ...] | None
    source: str
    clipped: bool = False

    @property
    def detector(self) -> str:
        """`Face.detector` of such a face: who found the box."""
        return GIVEN_PREFIX + self.source

    def array(self) -> np.ndarray:
        return np.asarray(self.box, dtype=np.float64)


@dataclass(frozen=True)
class GivenFaces:
    """An item's usable given faces, and how many boxes were clipped or dropped as lying outside."""

    faces: list[GivenFace]
    clipped: int
    outside: int


def _numbers(value: Any, n: int, what: str) -> list[float]:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        raise Rejected("bad_box", f"a given {what} is not {n} numbers: {value!r}"[:300]) from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise Rejected("bad_box", f"a given {what} is not {n} finite numbers: {value!r}"[:300])
    return out


def scale_given_faces(raw: Any, frame: Any, width: int, height: int, source: str) -> GivenFaces:
    """Given faces in a `frame` = [w, h] image → faces in a width × height image, boxes clipped to it.

    Raises Rejected: `bad_box` when an entry or the frame is malformed (or a box is empty or
    inverted), `given_box_outside` when every box lies outside the image.
    """
    if not isinstance(raw, list):
        raise Rejected("bad_box", f"given faces from {source} are not a list ({type(raw).__name__})")
    fw, fh = _numbers(frame, 2, "image size (given_faces_size)")
    if fw <= 0 or fh <= 0:
        raise Rejected("bad_box", f"the given faces' image size {frame!r} is not positive")
    sx, sy = width / fw, height / fh
    faces: list[GivenFace] = []
    clipped = outside = 0
    for entry in raw:
        if not isinstance(entry, dict):
            raise Rejected("bad_box", f"a given face from {source} is not an object: {entry!r}"[:300])
        x1, y1, x2, y2 = _numbers(entry.get("box"), 4, "box")
        if x2 <= x1 or y2 <= y1:
            raise Rejected("bad_box", f"a given box from {source} is empty or inverted: {[x1, y1, x2, y2]}")
        box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        inside = (min(max(box[0], 0.0), width), min(max(box[1], 0.0), height),
                  min(max(box[2], 0.0), width), min(max(box[3], 0.0), height))
        if inside[2] - inside[0] < MIN_INSIDE_PX or inside[3] - inside[1] < MIN_INSIDE_PX:
            outside += 1
            continue
        was_clipped = inside != box
        clipped += was_clipped
        marks = entry.get("landmarks5")
        points = None
        if marks is not None:
            if not isinstance(marks, (list, tuple)) or len(marks) != 5:
                raise Rejected("bad_box", f"given landmarks from {source} are not 5 points: {marks!r}"[:300])
            points = tuple((x * sx, y * sy) for x, y in (_numbers(p, 2, "landmark") for p in marks))
        score = entry.get("score")
        if score is not None:
            score = min(max(_numbers([score], 1, "score")[0], 0.0), 1.0)
        faces.append(GivenFace(box=inside, score=score, landmarks5=points, source=source, clipped=was_clipped))
    if not faces and outside:
        raise Rejected(
            "given_box_outside",
            f"all {outside} face box(es) given by {source} lie outside the {width}x{height} image "
            f"(coordinates for a {fw:.0f}x{fh:.0f} image)",
        )
    return GivenFaces(faces=faces, clipped=clipped, outside=outside)


def given_faces_of(given: SourceFaces | None, width: int, height: int) -> GivenFaces | None:
    """The item's given faces scaled to its width × height pixels; None when its source gave none (or
    an empty list). Raises Rejected as `scale_given_faces`."""
    if given is None or given.faces is None or (isinstance(given.faces, list) and not given.faces):
        return None
    source = str(given.source or "source")
    if given.size is None:
        raise Rejected("bad_box", f"given faces from {source} come without the size of the image they refer to")
    return scale_given_faces(given.faces, given.size, width, height, source)


def given_face_record(rgb: np.ndarray, given: GivenFace) -> Face:
    """The Face of a given box before any model looks at it: box, score, landmarks, pixel quality."""
    box = FaceBox(x1=given.box[0], y1=given.box[1], x2=given.box[2], y2=given.box[3])
    return Face(
        box=box,
        score=UNSCORED if given.score is None else given.score,
        landmarks5=[(float(x), float(y)) for x, y in given.landmarks5] if given.landmarks5 is not None else None,
        quality=face_quality(rgb, box),
        detector=given.detector,
    )
