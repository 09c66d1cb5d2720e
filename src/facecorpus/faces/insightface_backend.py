"""The insightface backend: the real `insightface.app.FaceAnalysis` over a buffalo_l/antelopev2 pack.

- The pack folder is handed to FaceAnalysis as a directory, so insightface never tries to download.
- `det_size` is always explicit (insightface's default runs the detector at two sizes and merges).
- Providers: 'cpu', 'cuda' (needs `onnxruntime-gpu` *instead of* `onnxruntime`) or 'auto'.
- Detection runs per image (SCRFD's graph takes one image); gender/age and 3D landmarks (→ pose) run per
  face through insightface's own models; the ArcFace embedding, only when the recipe asks, runs as one
  batch over every face of the batch.

insightface's pose array is (pitch, yaw, roll) in the same signs as `Pose` (checked against its
mean shape in tests/faces/test_faces_insightface.py).

Given boxes (FaRL, FaceCaption-15M) skip SCRFD: gender/age and the 3D landmarks read only a box, so they
run on the given one; the ArcFace embedding needs 5 points: the given ones, else the 68 landmarks' eye
centres, nose tip and mouth corners (no embedding when neither exists: `attributes: false`, no points).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..records import Face, FaceBox, Pose
from ..rejection import Rejection
from .analyzer import FaceAnalyzer, check_pixels
from .config import FacesConfig
from .given import UNSCORED, GivenFace
from .onnx_runtime import CUDA, provider_names, providers
from .quality import face_quality

log = logging.getLogger("facecorpus")

#: the 68-point layout's eyes (image-left one first), nose tip and mouth corners, for insightface's 5 points
_EYE_LEFT_68, _EYE_RIGHT_68, _NOSE_TIP_68, _MOUTH_LEFT_68, _MOUTH_RIGHT_68 = slice(36, 42), slice(42, 48), 30, 48, 54


def five_from_68(points: np.ndarray) -> np.ndarray:
    """insightface's 5 keypoints (eye centres, nose tip, mouth corners; image-left first) from 68 landmarks."""
    p = np.asarray(points, dtype=np.float32)[:, :2]
    return np.stack([p[_EYE_LEFT_68].mean(0), p[_EYE_RIGHT_68].mean(0), p[_NOSE_TIP_68], p[_MOUTH_LEFT_68],
                     p[_MOUTH_RIGHT_68]])


class InsightFaceAnalyzer(FaceAnalyzer):
    def __init__(self, pack_dir: Path, cfg: FacesConfig) -> None:
        from ..extras import require

        require("insightface", "insightface", "faces.backend insightface")
        from insightface.app import FaceAnalysis

        self.name = f"insightface:{pack_dir.name}"
        chosen = providers(cfg.providers, cfg.device_id)
        allowed = ["detection"]
        if cfg.attributes:
            allowed += ["genderage", "landmark_3d_68"]
        if cfg.embedding:
            allowed.append("recognition")
        self.app = FaceAnalysis(name=str(pack_dir), allowed_modules=allowed, providers=chosen)
        missing = sorted(set(allowed) - set(self.app.models))
        if missing:
            raise UserError(
                f"the model pack in {pack_dir} has no model for {', '.join(missing)} "
                "(set faces.attributes / faces.embedding to false, or use a complete pack)"
            )
        # recognition runs batched here rather than face by face inside FaceAnalysis.get
        self.recognizer = self.app.models.pop("recognition", None)
        ctx_id = cfg.device_id if CUDA in provider_names(chosen) else -1  # -1 pins every session to CPU
        self.app.prepare(ctx_id=ctx_id, det_thresh=cfg.det_threshold, det_size=(cfg.det_size, cfg.det_size))
        if self.recognizer is not None:
            self.recognizer.prepare(ctx_id)
        self.providers = provider_names(chosen)

    def analyze(self, rgb: np.ndarray, prior: str | None = None) -> list[Face]:
        return self._one(self.analyze_batch([rgb], priors=[prior])[0])

    def analyze_given(self, rgb: np.ndarray, given: list[GivenFace]) -> list[Face]:
        return self._one(self.analyze_batch([rgb], [given])[0])

    @staticmethod
    def _one(result: list[Face] | Rejection) -> list[Face]:
        if isinstance(result, Rejection):
            raise RuntimeError(result.detail)
        return result

    def _measure_given(self, bgr: np.ndarray, given: list[GivenFace]) -> list:
        """insightface faces for given boxes: every loaded model but the detector (gender/age and the 3D
        landmarks read only the box), 5 points as given or taken from the 68 landmarks."""
        from insightface.app.common import Face as InsightFace

        faces = []
        for g in given:
            f = InsightFace(bbox=g.array().astype(np.float32), det_score=np.float32(UNSCORED if g.score is None else g.score),
                            kps=np.asarray(g.landmarks5, dtype=np.float32) if g.landmarks5 is not None else None)
            for task, model in self.app.models.items():
                if task != "detection":
                    model.get(bgr, f)
            if f.kps is None and f.landmark_3d_68 is not None:
                f.kps = five_from_68(f.landmark_3d_68)
                f.kps_model = f"{self.name}/landmark_3d_68"
            f.given = g
            faces.append(f)
        return faces

    def analyze_batch(
        self,
        images: Sequence[np.ndarray | None],
        given: Sequence[list[GivenFace] | None] | None = None,
        priors: Sequence[str | None] | None = None,
    ) -> list[list[Face] | Rejection]:
        # `priors` are not used: SCRFD runs once at det_size whatever the faces' size
        results: list[list | Rejection] = []  # insightface's own face objects until converted
        found: list[tuple[np.ndarray, list]] = []  # (bgr, insightface faces) per successful image
        for rgb, boxes in zip(images, given if given is not None else [None] * len(images), strict=True):
            problem = check_pixels(rgb)
            if problem is not None:
                results.append(problem)
                continue
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # type: ignore[index]  # insightface works in BGR
            try:
                detected = list(self.app.get(bgr)) if boxes is None else self._measure_given(bgr, boxes)
            except Exception as e:  # noqa: BLE001 - one bad image must not stop the batch
                log.warning("insightface failed: %s", traceback.format_exc(limit=3))
                results.append(Rejection("model_error", f"insightface failed on this image ({type(e).__name__}: {e})"[:500],
                                         retryable=True))
                continue
            results.append(detected)
            found.append((bgr, detected))
        if self.recognizer is not None:
            self._embed(found)
        converted: list[list[Face] | Rejection] = []
        for rgb, outcome in zip(images, results, strict=True):
            if isinstance(outcome, Rejection):
                converted.append(outcome)
            else:
                converted.append(sorted((self._to_face(rgb, f) for f in outcome), key=lambda f: -f.score))
        return converted

    def _embed(self, found: list[tuple[np.ndarray, list]]) -> None:
        from insightface.utils import face_align

        size = self.recognizer.input_size[0]
        crops, owners = [], []
        for bgr, faces in found:
            for f in faces:
                if f.kps is not None:
                    crops.append(face_align.norm_crop(bgr, landmark=f.kps, image_size=size))
                    owners.append(f)
        if crops:
            feats = self.recognizer.get_feat(crops)
            for f, feat in zip(owners, feats, strict=True):
                f.embedding = feat.reshape(-1)

    def _to_face(self, rgb: np.ndarray, f) -> Face:  # noqa: ANN001 - insightface's Face is a dict subclass
        x1, y1, x2, y2 = (float(v) for v in f.bbox[:4])
        box = FaceBox(x1=x1, y1=y1, x2=x2, y2=y2)
        face = Face(
            box=box,
            score=float(min(max(float(f.det_score), 0.0), 1.0)),
            landmarks5=[(float(x), float(y)) for x, y in f.kps] if f.kps is not None else None,
            quality=face_quality(rgb, box),
            detector=f.given.detector if f.given is not None else f"{self.name}/detection",
            landmarks_model=f.kps_model,
        )
        if f.pose is not None:
            pitch, yaw, roll = (float(v) for v in f.pose)
            face.pose = Pose(yaw=round(yaw, 2), pitch=round(pitch, 2), roll=round(roll, 2))
        if f.gender is not None:
            face.gender = "male" if int(f.gender) == 1 else "female"
        if f.age is not None:
            face.age = float(f.age)
        if f.embedding is not None:
            emb = np.asarray(f.embedding, dtype=np.float64)
            norm = float(np.linalg.norm(emb))
            face.embedding = [round(float(v), 6) for v in (emb / norm if norm > 0 else emb)]
        return face
