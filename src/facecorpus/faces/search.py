"""The portable backend's fast face finder: BlazeFace proposes boxes, MTCNN's O-Net judges them.

    image ─▶ search plan (whole image, tiles for small faces, or the face-crop scale only)
          ─▶ BlazeFace on each view ─▶ proposals (score >= PROPOSE, deduplicated across views)
          ─▶ O-Net on every proposal of every image of the batch, in one run
          ─▶ kept when O-Net's face probability >= det_threshold: box regressed, 5 landmarks placed

Why two models: BlazeFace sees every scale of a view in one pass (milliseconds), but its scores are
not calibrated like the cascade's (real faces score 0.5–0.95 on the demo photos) and it has no mouth
corners. O-Net, the last stage of MTCNN, turns each proposal into what the MTCNN cascade reports —
a regressed box, a face probability and five landmarks — so `min_score`, crops and alignment behave as
they did with MTCNN, at a fraction of its pyramid's cost.

**Reach.** BlazeFace full range finds faces down to about REACH px (shorter box side) in its 192 px
input (measured on the demo's group photo scaled down: 46/48 of MTCNN's faces at 12 px, 32/48 at 8
px). A face of `min_face` px in a large image would be smaller than that when the whole image is
letterboxed, so the plan adds levels of overlapping tiles, each level at most FINER times the previous
scale, until `min_face` px reach REACH; the overlap of a level holds the largest face the coarser
level might miss.

**Size prior 'crop'.** A face crop (FairFace, CelebA aligned) holds one large face: only BlazeFace's
short-range model (128 px, about a third of the full-range cost) runs, on the whole image; if it
finds nothing the normal plan runs, so a crop without a face costs more but is judged the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .blazeface import FULL_RANGE, SHORT_RANGE, BlazeFace
from .mtcnn import Detections, ONet, square
from .nms import nms
from .priors import CROP

#: smallest face (shorter box side, px of BlazeFace's input) the full-range model finds reliably
REACH = 12.0
#: each tiling level looks at most this many times finer than the previous one (keeps tile overlap <= half a tile)
FINER = 6.0
#: overlap of tiles: the largest face the previous level might miss, plus this share of it
OVERLAP_MARGIN = 0.25
#: BlazeFace score above which a box is proposed to O-Net (low: O-Net decides)
PROPOSE = 0.2
#: proposals of one face from different views are merged above this IoU before O-Net sees them
MERGE_IOU = 0.5


@dataclass(frozen=True)
class View:
    """A region of the image (x0, y0, width, height) in image pixels, run through one BlazeFace model
    at `scale` (model input px per image px; 0: whatever fits the region into the input)."""

    x0: int
    y0: int
    width: int
    height: int
    model: str = FULL_RANGE
    scale: float = 0.0


def _axis(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` px covering `length` px, neighbours overlapping by >= `overlap`."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (n - 1)
    return [round(i * step) for i in range(n)]


def search_plan(height: int, width: int, min_face: float, side: int = 192) -> list[View]:
    """The views that find faces of `min_face` px and larger in a height × width image with the
    full-range model (`side` px input): the whole image, then levels of tiles as fine as needed."""
    scale = side / float(max(height, width))  # input px per image px at the whole-image level
    views = [View(0, 0, width, height, scale=scale)]
    needed = REACH / float(max(min_face, 1.0))
    while scale < needed:
        finer = min(needed, scale * FINER)
        tile = max(1, math.floor(side / finer))
        # faces the coarser level might miss are smaller than REACH / scale: a tile overlap that size
        # puts each of them wholly inside some tile
        overlap = min(tile // 2, math.ceil(REACH / scale * (1.0 + OVERLAP_MARGIN)))
        for y0 in _axis(height, tile, overlap):
            for x0 in _axis(width, tile, overlap):
                views.append(View(x0, y0, min(tile, width - x0), min(tile, height - y0), scale=side / tile))
        scale = finer
    return views


def _levels(rgb: np.ndarray, scales: set[float]) -> dict[float, np.ndarray]:
    """The image shrunk (area-averaged) to each scale below 1, the finest first and each coarser one
    from the last: the full-resolution image is averaged once."""
    h, w = rgb.shape[:2]
    out: dict[float, np.ndarray] = {}
    source = rgb
    for scale in sorted((s for s in scales if 0.0 < s < 1.0), reverse=True):
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        source = out[scale] = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
    return out


class FaceFinder:
    """BlazeFace proposals judged by O-Net, for a batch of images at a time (see the module docstring)."""

    def __init__(self, pack_dir: Path, onet: ONet, threshold: float, min_face: float, threads: int | None = None) -> None:
        self.models = {
            FULL_RANGE: BlazeFace(pack_dir, FULL_RANGE, PROPOSE, threads),
            SHORT_RANGE: BlazeFace(pack_dir, SHORT_RANGE, PROPOSE, threads),
        }
        self.onet = onet
        self.threshold = threshold
        self.min_face = min_face

    def plan(self, rgb: np.ndarray, prior: str | None) -> list[View]:
        """The views to run for one image (with `prior`, the size hint of its source)."""
        h, w = rgb.shape[:2]
        if prior == CROP:
            return [View(0, 0, w, h, SHORT_RANGE)]
        return search_plan(h, w, self.min_face, self.models[FULL_RANGE].side)

    def propose(self, rgb: np.ndarray, views: list[View]) -> np.ndarray:
        """(n, 4) square candidate boxes in image pixels from every view, one per face.

        Views of one scale share one shrunk copy of the image (`_levels`): area-averaging a 1024 px photo
        costs more than a BlazeFace pass, so it is done once per scale, not once per tile."""
        levels = _levels(rgb, {v.scale for v in views})
        boxes, scores = [], []
        for v in views:
            level = levels.get(v.scale, rgb)
            sx, sy = level.shape[1] / rgb.shape[1], level.shape[0] / rgb.shape[0]
            x0, y0 = round(v.x0 * sx), round(v.y0 * sy)
            x1, y1 = max(x0 + 1, round((v.x0 + v.width) * sx)), max(y0 + 1, round((v.y0 + v.height) * sy))
            region = level if (x0, y0, x1, y1) == (0, 0, level.shape[1], level.shape[0]) else level[y0:y1, x0:x1]
            found = self.models[v.model].detect(np.ascontiguousarray(region))
            if len(found):
                offset = np.array([x0, y0, x0, y0], dtype=np.float32)
                boxes.append((found.boxes + offset) / np.array([sx, sy, sx, sy], dtype=np.float32))
                scores.append(found.scores)
        if not boxes:
            return np.zeros((0, 4), np.float32)
        all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
        if len(views) > 1:
            keep = nms(all_boxes, all_scores, MERGE_IOU, offset=0.0)
            all_boxes = all_boxes[keep]
        return square(all_boxes.astype(np.float32))

    def detect_batch(self, images: list[np.ndarray], priors: list[str | None]) -> list[Detections]:
        """Faces per image: O-Net judges the proposals of all images in one run. An image with the
        'crop' prior whose short-range pass finds no face gets the full search."""
        plans = [self.plan(img, p) for img, p in zip(images, priors, strict=True)]
        proposals = [self.propose(img, plan) for img, plan in zip(images, plans, strict=True)]
        found = self.onet.refine(images, proposals, self.threshold)
        retry = [i for i, (p, d) in enumerate(zip(priors, found, strict=True)) if p == CROP and len(d) == 0]
        if retry:
            again = self.detect_batch([images[i] for i in retry], [None] * len(retry))
            for i, d in zip(retry, again, strict=True):
                found[i] = d
        return found
