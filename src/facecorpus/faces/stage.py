"""The face stage on Beam: RunInference with a ModelHandler (models load once per worker, images batch
with BatchElements), then selection, crops and the attribute merge per item.

    WorkItem ─▶ RunInference(FaceModelHandler) ─▶ SelectFaces ─▶ main (one item per image, or per face)
                      └─ failed batches ─▶ model_error rejects    └─▶ no_face / low_score / face_too_small /
                                                                     too_many_faces / model_error rejects
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from PIL import Image

from ..image_check import encode_jpeg, perceptual_hash
from ..recipe import FacesConfig
from ..records import Face
from ..stage import REJECTS, Counters, RejectItem, Stage, WorkItem, count_inputs, make_reject
from .analyzer import AnalysisFailure, FaceAnalyzer, attribute_models, load_analyzer, resolve_pack
from .attributes import CONFLICT_FLAG, merge_attributes, model_attributes
from .crops import crop_face, faces_in_crop
from .onnx_runtime import providers
from .selection import select_faces

STAGE = "faces"
_OUTCOME = "faces.outcome"


class FaceModelHandler(ModelHandler[WorkItem, "list[Face] | AnalysisFailure", FaceAnalyzer]):
    """Loads the recipe's analyzer once per worker (or `model_copies` shared across processes) and runs it
    on batches of WorkItems; each prediction is the item's faces or an `AnalysisFailure`."""

    def __init__(self, cfg: FacesConfig) -> None:
        super().__init__(min_batch_size=1, max_batch_size=cfg.batch_size, model_copies=cfg.model_copies)
        self.cfg = cfg

    def load_model(self) -> FaceAnalyzer:
        return load_analyzer(self.cfg)

    def run_inference(
        self, batch: Sequence[WorkItem], model: FaceAnalyzer, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        outcomes = model.analyze_batch([item.pixels for item in batch])
        return [PredictionResult(item, outcome, model_id=model.name) for item, outcome in zip(batch, outcomes, strict=True)]

    def get_num_bytes(self, batch: Sequence[WorkItem]) -> int:
        # the default pickles the whole batch just to measure it; the pixels are what weighs
        return sum(item.pixels.nbytes if isinstance(item.pixels, np.ndarray) else 0 for item in batch)

    def get_metrics_namespace(self) -> str:
        return "facecorpus_faces"


class SelectFaces(Stage):
    """Per item: reject or keep by the recipe's filters, crop, merge attributes; splits into one item per
    face when `faces.unit` is 'face' (keys `<key>_f<i>`, extra inputs counted)."""

    name = STAGE

    def __init__(self, cfg: FacesConfig, jpeg_quality: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.jpeg_quality = jpeg_quality
        self.models = attribute_models(cfg)

    def process(self, result: PredictionResult) -> Iterator[Any]:  # type: ignore[override]
        item: WorkItem = result.example
        item.context[_OUTCOME] = result.inference
        yield from super().process(item)

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        outcome = item.context.pop(_OUTCOME)
        if isinstance(outcome, AnalysisFailure):
            raise RejectItem(outcome.reason, outcome.detail, retryable=outcome.reason == "model_error")
        assert item.image is not None and item.pixels is not None
        self.counters.count("found", len(outcome))
        selection = select_faces(outcome, self.cfg, item.image.width, item.image.height)
        self.counters.count("dropped", selection.dropped)
        faces = selection.faces
        if self.cfg.unit == "image":
            yield self._finish(item, faces, selection.primary)
            return
        per_face = [
            self._finish(
                dataclasses.replace(
                    item,
                    key=f"{item.key}_f{i}",
                    # dataset labels describe the image's subject: only the primary face's sample inherits them
                    labels=dict(item.labels) if i == selection.primary else {},
                    flags=list(item.flags),
                    context=dict(item.context),
                    attributes={},
                    attribute_conflicts=[],
                    qa=[],
                ),
                faces,
                i,
            )
            for i in range(len(faces))
        ]
        # the image was counted once as an input, its other faces are new inputs (counted only once all
        # exist: a failure above rejects the image as one input)
        count_inputs(len(per_face) - 1)
        yield from per_face

    def _finish(self, item: WorkItem, faces: list[Face], primary: int) -> WorkItem:
        measured = model_attributes(faces[primary], self.models)
        if self.cfg.crop.enabled:
            fc = crop_face(item.pixels, faces[primary], primary, self.cfg.crop)
            faces, primary = faces_in_crop(faces, primary, fc)
            picture = Image.fromarray(fc.pixels)
            item.pixels = fc.pixels
            item.jpeg = encode_jpeg(picture, self.jpeg_quality)
            assert item.image is not None
            # sha256 and bytes stay those of the input; size and perceptual hash describe the stored crop
            item.image = item.image.model_copy(
                update={"width": fc.pixels.shape[1], "height": fc.pixels.shape[0], "phash": perceptual_hash(picture)}
            )
            item.crop = fc.crop
        item.faces = faces
        item.primary_face = primary
        item.attributes, item.attribute_conflicts = merge_attributes(item.labels, measured)
        if item.attribute_conflicts and CONFLICT_FLAG not in item.flags:
            item.flags.append(CONFLICT_FLAG)
        return item


class _RejectFailedBatch(beam.DoFn):
    """A batch whose inference raised (outside the per-image guard): every item becomes a model_error reject."""

    def __init__(self) -> None:
        self._counters: Counters | None = None

    def process(self, failed: tuple[Sequence[WorkItem], Exception]) -> Iterator[Any]:
        if self._counters is None:
            self._counters = Counters(STAGE)
        batch, error = failed
        detail = f"the face models failed on this batch ({type(error).__name__}: {error})"[:500]
        for item in batch:
            self._counters.rejected("model_error")
            yield make_reject(item, STAGE, "model_error", detail, retryable=True)


class FaceStage(beam.PTransform):
    """WorkItems (with pixels) → {'main': WorkItems with faces, 'rejects': Rejects}."""

    def __init__(self, cfg: FacesConfig, jpeg_quality: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.jpeg_quality = jpeg_quality

    def expand(self, items: beam.PCollection) -> dict[str, beam.PCollection]:
        predictions, failed = items | "Analyze" >> RunInference(FaceModelHandler(self.cfg)).with_exception_handling()
        selected = predictions | "Select" >> beam.ParDo(SelectFaces(self.cfg, self.jpeg_quality)).with_outputs(
            REJECTS, main="main"
        )
        model_errors = failed.failed_inferences | "FailedBatches" >> beam.ParDo(_RejectFailedBatch())
        rejects = (selected[REJECTS], model_errors) | "FaceRejects" >> beam.Flatten()
        return {"main": selected["main"], REJECTS: rejects}


def check_ready(cfg: FacesConfig) -> None:
    """Pre-flight: the model pack is in the store and the providers exist. Raises a one-line UserError."""
    if cfg.backend == "none":
        return
    resolve_pack(cfg)
    providers(cfg.providers, cfg.device_id)


def faces_stage(cfg: FacesConfig, jpeg_quality: int) -> FaceStage | None:
    """The stage a recipe asks for, or None for `backend: none`. Checks the pack first."""
    if cfg.backend == "none":
        return None
    check_ready(cfg)
    return FaceStage(cfg, jpeg_quality)
