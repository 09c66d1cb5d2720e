"""Non-maximum suppression without a Python loop over every candidate: OpenCV's C++ pass for the many
candidates of MTCNN's P-Net, an overlap matrix computed once for the few boxes of later stages.

Two flavours: `nms` keeps the best box of each overlapping group (MTCNN's union and min-overlap modes,
with its +1 pixel area convention), `weighted_nms` replaces each group by the score-weighted mean of its
members (BlazeFace's blending, which steadies boxes and keypoints across nearby anchors).
"""

from __future__ import annotations

import cv2
import numpy as np


def overlaps(boxes: np.ndarray, others: np.ndarray, mode: str = "union", offset: float = 0.0) -> np.ndarray:
    """(len(boxes), len(others)) overlap of each box with each other box (x1, y1, x2, y2 rows).

    `mode='union'`: intersection over union; `'min'`: intersection over the smaller box. `offset` is added
    to every side length (MTCNN measures boxes in whole pixels, inclusive: offset 1)."""
    b = boxes[:, None, :4]
    o = others[None, :, :4]
    w = np.clip(np.minimum(b[..., 2], o[..., 2]) - np.maximum(b[..., 0], o[..., 0]) + offset, 0.0, None)
    h = np.clip(np.minimum(b[..., 3], o[..., 3]) - np.maximum(b[..., 1], o[..., 1]) + offset, 0.0, None)
    inter = w * h
    area_b = (b[..., 2] - b[..., 0] + offset) * (b[..., 3] - b[..., 1] + offset)
    area_o = (o[..., 2] - o[..., 0] + offset) * (o[..., 3] - o[..., 1] + offset)
    denom = np.minimum(area_b, area_o) if mode == "min" else area_b + area_o - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(denom > 0, inter / denom, 0.0)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union", offset: float = 1.0) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    A box is dropped when its overlap with a better kept box is above `threshold`. `mode='union'`
    compares intersection over union (OpenCV's C++ `NMSBoxes`, which sorts stably: ties keep the earlier
    box); `'min'` intersection over the smaller box, which MTCNN's O-Net uses to drop a small box nested
    inside a bigger one (few boxes reach it: one overlap matrix, one pass; also used for scores <= 0).
    `offset` as in `overlaps`."""
    n = boxes.shape[0]
    if n == 0:
        return np.zeros((0,), dtype=np.int64)
    if mode == "union" and float(np.min(scores)) > 0.0:  # OpenCV only keeps scores above its threshold (>= 0)
        # OpenCV measures a box as [x, x + width): a width of (x2 - x1 + offset) gives our convention
        rects = np.empty((n, 4), dtype=np.float64)
        rects[:, :2] = boxes[:, :2]
        rects[:, 2:] = boxes[:, 2:4] - boxes[:, :2] + offset
        kept = cv2.dnn.NMSBoxes(rects, np.asarray(scores, dtype=np.float32), 0.0, float(threshold))
        return np.asarray(kept, dtype=np.int64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    ranked = boxes[order].astype(np.float64)
    above = overlaps(ranked, ranked, mode, offset) > threshold
    alive = np.ones(n, dtype=bool)
    keep = []
    for i in range(n):
        if alive[i]:
            keep.append(i)
            alive &= ~above[i]
    return order[np.asarray(keep, dtype=np.int64)]


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend overlapping detections: the best remaining box and every box overlapping it by more than
    `threshold` (IoU) become one detection, the score-weighted mean of their boxes and points, with the
    best one's score. Returns (boxes (k, 4), scores (k,), points (k, p, 2)), best score first.

    Only the overlaps of each group's leader are computed (one row of n per face found, not an n × n
    matrix): BlazeFace gives dozens of candidates per face (38 on a 224 px crop: 40–53 vs 72–78 us; 200
    candidates of 8 faces: 0.26–0.27 vs 1.2–1.6 ms, one core, load 6–12)."""
    n = boxes.shape[0]
    if n == 0:
        return boxes[:0], scores[:0], points[:0]
    order = np.argsort(-scores, kind="stable")
    ranked_scores = scores[order].astype(np.float64)
    ranked_boxes = boxes[order].astype(np.float64)
    ranked_points = points[order].astype(np.float64)
    x1, y1, x2, y2 = ranked_boxes.T
    area = (x2 - x1) * (y2 - y1)
    alive = np.ones(n, dtype=bool)
    out_boxes, out_scores, out_points = [], [], []
    i = 0
    while i < n:
        inter = np.clip(np.minimum(x2[i], x2) - np.maximum(x1[i], x1), 0.0, None)
        inter *= np.clip(np.minimum(y2[i], y2) - np.maximum(y1[i], y1), 0.0, None)
        union = area[i] + area - inter
        group = alive & (np.divide(inter, union, out=np.zeros(n), where=union > 0) > threshold)
        group[i] = True
        w = ranked_scores[group]
        total = w.sum()
        out_boxes.append((ranked_boxes[group] * w[:, None]).sum(0) / total)
        out_points.append((ranked_points[group] * w[:, None, None]).sum(0) / total)
        out_scores.append(ranked_scores[i])
        alive &= ~group
        rest = np.flatnonzero(alive[i + 1 :])
        i = i + 1 + int(rest[0]) if rest.size else n
    return (np.asarray(out_boxes, np.float32), np.asarray(out_scores, np.float32), np.asarray(out_points, np.float32))
