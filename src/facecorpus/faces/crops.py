"""Face crops: a square around the face with a FairFace-style margin, optionally aligned by 5 landmarks.

Without alignment the square is centred on the face box, its side (1 + 2·margin) × the box's longer
side. With alignment the five landmarks are mapped onto ArcFace's template shrunk to leave the same
margin, so eyes are level and faces share one scale. Parts of the square outside the photo are black
(as in dlib's face chips, which FairFace used). Faces in the crop are moved into its coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..records import Crop, Face, FaceBox, Pose
from .config import FaceCropConfig
from .geometry import aligned_template, similarity_transform, transform_box, transform_points


@dataclass
class FaceCrop:
    """Crop pixels, its record, and the 2×3 affine from source pixels to crop pixels."""

    pixels: np.ndarray
    crop: Crop
    affine: np.ndarray


def _square_affine(face: Face, margin: float, size: int | None) -> tuple[np.ndarray, int]:
    b = face.box
    side = max(b.width, b.height) * (1.0 + 2.0 * margin)
    out = size or max(1, round(side))
    scale = out / side
    x0, y0 = (b.x1 + b.x2) / 2.0 - side / 2.0, (b.y1 + b.y2) / 2.0 - side / 2.0
    return np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]]), out


def _aligned_affine(face: Face, margin: float, size: int | None) -> tuple[np.ndarray, int]:
    assert face.landmarks5 is not None
    marks = np.asarray(face.landmarks5, dtype=np.float64)
    # native size: the side the unaligned square would have, so `size: null` keeps the source resolution
    out = size or max(1, round(max(face.box.width, face.box.height) * (1.0 + 2.0 * margin)))
    return similarity_transform(marks, aligned_template(out, margin)), out


def _warp(rgb: np.ndarray, m: np.ndarray, out: int) -> np.ndarray:
    scale = math.hypot(m[0, 0], m[0, 1])
    if scale >= 1.0:
        return cv2.warpAffine(rgb, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    # shrinking: cut at source resolution first, then average pixels down (warpAffine alone would alias)
    native = max(out, round(out / scale))
    m_native = m * (native / out)
    big = cv2.warpAffine(rgb, m_native, (native, native), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return cv2.resize(big, (out, out), interpolation=cv2.INTER_AREA)


def crop_face(rgb: np.ndarray, face: Face, face_index: int, cfg: FaceCropConfig) -> FaceCrop:
    """Cut the crop for `face` (the `face_index`-th kept face of the source image) out of an RGB image."""
    aligned = cfg.align and face.landmarks5 is not None
    m, out = (_aligned_affine if aligned else _square_affine)(face, cfg.margin, cfg.size)
    pixels = _warp(rgb, m, out)
    inv = cv2.invertAffineTransform(m)
    region = transform_box(inv, FaceBox(x1=0.0, y1=0.0, x2=float(out), y2=float(out)))
    crop = Crop(box=region, face_index=face_index, margin=cfg.margin, aligned=aligned, size=out)
    return FaceCrop(pixels=pixels, crop=crop, affine=m)


def move_face(face: Face, m: np.ndarray) -> Face:
    """The face as seen in the crop: box and landmarks transformed, roll turned with the crop."""
    moved = face.model_copy(deep=True)
    moved.box = transform_box(m, face.box)
    if face.landmarks5 is not None:
        moved.landmarks5 = [(float(x), float(y)) for x, y in transform_points(m, face.landmarks5)]
    if face.pose is not None:
        turn = math.degrees(math.atan2(m[1, 0], m[0, 0]))  # content turns clockwise by this (y points down)
        roll = (face.pose.roll + turn + 180.0) % 360.0 - 180.0
        moved.pose = Pose(yaw=face.pose.yaw, pitch=face.pose.pitch, roll=round(roll, 2))
    return moved


def faces_in_crop(faces: list[Face], primary: int, fc: FaceCrop) -> tuple[list[Face], int]:
    """Faces whose centre falls inside the crop, in crop coordinates, and the index of the cropped face."""
    size = fc.pixels.shape[0]
    kept: list[Face] = []
    new_primary = 0
    for i, face in enumerate(faces):
        cx, cy = transform_points(fc.affine, [((face.box.x1 + face.box.x2) / 2, (face.box.y1 + face.box.y2) / 2)])[0]
        if i != primary and not (0 <= cx < size and 0 <= cy < size):
            continue
        if i == primary:
            new_primary = len(kept)
        kept.append(move_face(face, fc.affine))
    return kept, new_primary
