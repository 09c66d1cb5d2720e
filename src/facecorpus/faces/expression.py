"""Facial expression (7 classes) with the `fer` package's quantised CNN on LiteRT.

The model (`emotion_model_quantized.tflite`, MIT) takes a 64×64 gray face scaled to [-1, 1] and returns
probabilities for FER-2013's classes. The face is cut as a square 1.1 × the detector box, rotated so the
eyes are level (it was trained on upright faces).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..records import Expression
from .geometry import roi_affine

#: FER-2013 class order, as the model emits them
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT = 64
CROP_SCALE = 1.1


class ExpressionClassifier:
    """`classify(gray, box, eyes)` → Expression with all seven probabilities."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]

    def classify(self, gray: np.ndarray, box: np.ndarray, eyes: np.ndarray | None) -> Expression:
        """Expression of the face in `box` (x1, y1, x2, y2) of a gray uint8 image."""
        m = roi_affine(box, eyes, CROP_SCALE, INPUT)
        face = cv2.warpAffine(gray, m, (INPUT, INPUT), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        x = self.interpreter.tensor(self._in)()[0, :, :, 0]  # written in place: (v / 255 - 0.5) * 2
        np.divide(face, np.float32(255.0), out=x, dtype=np.float32, casting="unsafe")
        x -= np.float32(0.5)
        x *= np.float32(2.0)
        del x  # no view of the interpreter's buffers may outlive invoke's check
        self.interpreter.invoke()
        probs = self.interpreter.get_tensor(self._out).reshape(-1).astype(np.float64)
        probs = np.clip(probs, 0.0, None)
        probs = probs / probs.sum() if probs.sum() > 0 else np.full(len(EXPRESSIONS), 1.0 / len(EXPRESSIONS))
        best = int(np.argmax(probs))
        return Expression(
            label=EXPRESSIONS[best],
            confidence=round(float(probs[best]), 4),
            probabilities={name: round(float(p), 4) for name, p in zip(EXPRESSIONS, probs, strict=True)},
        )
