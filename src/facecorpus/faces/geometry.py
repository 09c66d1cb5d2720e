"""Plane geometry for faces: square regions of interest, 5-point similarity alignment, moving boxes and points."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..records import FaceBox

#: ArcFace's 5-point template for a 112×112 aligned face (eyes, nose tip, mouth corners; image-left first)
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def roi_affine(box: np.ndarray, eyes: np.ndarray | None, scale: float, size: int) -> np.ndarray:
    """2×3 affine taking image pixels to a size×size model input: centred on the box, eyes level.

    The square's side is `scale` × the box's longer side; `eyes` (two (x, y), image-left eye first) set
    the rotation, or None for none.
    """
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    side = max(box[2] - box[0], box[3] - box[1]) * scale
    angle = 0.0
    if eyes is not None:
        (x1, y1), (x2, y2) = eyes[0], eyes[1]
        angle = math.degrees(math.atan2(y2 - y1, x2 - x1))
    # rotate about the centre by the eye-line angle, then scale the side to `size` and shift to the middle
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, size / float(side))
    m[0, 2] += size / 2.0 - cx
    m[1, 2] += size / 2.0 - cy
    return m


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2×3 rotation + uniform scale + translation mapping `src` points onto `dst` in least squares (Umeyama)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection would fit better; faces are never mirrored
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    var_s = (s0**2).sum() / len(src)
    scale = float((sig * d).sum() / var_s) if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def aligned_template(size: int, margin: float) -> np.ndarray:
    """Where the five landmarks go in a size×size aligned crop that keeps `margin` × face size on each side."""
    # the 112 template leaves its own border; shrink it about the centre to make room for the margin
    unit = ARCFACE_TEMPLATE_112 / 112.0
    shrink = 1.0 / (1.0 + 2.0 * margin)
    return ((unit - 0.5) * shrink + 0.5) * size


def transform_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine to (n, 2) points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def transform_box(m: np.ndarray, box: FaceBox) -> FaceBox:
    """The axis-aligned box around the four transformed corners of `box`."""
    corners = np.array([[box.x1, box.y1], [box.x2, box.y1], [box.x2, box.y2], [box.x1, box.y2]])
    t = transform_points(m, corners)
    return FaceBox(x1=float(t[:, 0].min()), y1=float(t[:, 1].min()), x2=float(t[:, 0].max()), y2=float(t[:, 1].max()))
