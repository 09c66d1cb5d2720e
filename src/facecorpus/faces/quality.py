"""Face image quality from pixels: size, sharpness (variance of the Laplacian), brightness, contrast."""

from __future__ import annotations

import cv2
import numpy as np

from ..records import FaceBox, FaceQuality


def face_quality(rgb: np.ndarray, box: FaceBox) -> FaceQuality:
    """Quality of the face in `box`, measured on the box clipped to the image (gray levels 0-255).

    blur: variance of the 3×3 Laplacian (higher is sharper); brightness: mean gray; contrast: RMS
    contrast (standard deviation of gray); size_px: the box's shorter side.
    """
    h, w = rgb.shape[:2]
    x1, y1 = max(0, int(np.floor(box.x1))), max(0, int(np.floor(box.y1)))
    x2, y2 = min(w, int(np.ceil(box.x2))), min(h, int(np.ceil(box.y2)))
    size = max(0.0, min(box.width, box.height))
    if x2 - x1 < 3 or y2 - y1 < 3:
        return FaceQuality(size_px=size, blur=0.0, brightness=0.0, contrast=0.0)
    gray = cv2.cvtColor(rgb[y1:y2, x1:x2], cv2.COLOR_RGB2GRAY)
    # the 3×3 Laplacian of 8-bit gray is an integer in [-1020, 1020]: 16-bit holds it exactly, and
    # OpenCV's one-pass mean / standard deviation (double sums) is a quarter of numpy's mean/std/var
    lap = cv2.Laplacian(gray, cv2.CV_16S, ksize=1)
    _, lap_std = cv2.meanStdDev(lap)
    mean, std = cv2.meanStdDev(gray)
    return FaceQuality(
        size_px=round(size, 2),
        blur=round(float(lap_std[0, 0]) ** 2, 3),
        brightness=round(float(mean[0, 0]), 3),
        contrast=round(float(std[0, 0]), 3),
    )
