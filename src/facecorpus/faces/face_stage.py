"""The face stage on Beam: RunInference with a ModelHandler (models load once per worker, images batch
with BatchElements), then selection, crops and the attribute merge per item.

    WorkItem ─▶ RunInference(FaceModelHandler) ─▶ SelectFaces ─▶ main (one item per image, or per face)
                      └─ failed batches ─▶ model_error rejects    └─▶ no_face / low_score / face_too_small /
                                                                     too_many_faces / model_error /
                                                                     bad_box / given_box_outside rejects

Items whose source gave face boxes (`WorkItem.given_faces`, see faces/given.py) skip detection:
the analyzer measures the given boxes. With `backend: none` only those items are touched
(`GivenFacesOnly`): their boxes become faces, no model runs.
Counters: `faces.found` = `faces.given` + `faces.detected`; `faces.given_clipped`, `faces.given_outside`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from PIL import Image

from ..image_check import encode_jpeg, perceptual_hash
from ..records import Face
from ..rejection import Rejected, Rejection
from ..stage import REJECTS, Counters, Stage, WorkItem, count_inputs, make_reject
from .analyzer import (
    FaceAnalyzer,
    attribute_models,
    check_pixels,
    load_analyzer,
    resolve_pack,
)
from .attributes import CONFLICT_FLAG, merge_attributes, model_attributes
from .config import FacesConfig
from .crops import crop_face, faces_in_crop
from .given import (
    GIVEN_PREFIX,
    GivenFace,
    GivenFaces,
    given_face_record,
    given_faces_of,
)
from .onnx_runtime import providers
from .priors import item_prior
from .selection import select_faces

STAGE = "faces"


class FaceModelHandler(ModelHandler[WorkItem, "list[Face] | Rejection", FaceAnalyzer]):
    """Loads the recipe's analyzer once per worker (or `model_copies` shared across processes) and runs it
    on batches of WorkItems; each prediction is the item's faces or an `Rejection`."""

    def __init__(self, cfg: FacesConfig) -> None:
        super().__init__(min_batch_size=1, max_batch_size=cfg.batch_size, model_copies=cfg.model_copies)
        self.cfg = cfg

    def load_model(self) -> FaceAnalyzer:
        return load_analyzer(self.cfg)

    def run_inference(
        self, batch: Sequence[WorkItem], model: FaceAnalyzer, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        prepared = [prepare_given(item) for item in batch]
        todo = [i for i, p in enumerate(prepared) if not isinstance(p, Rejection)]
        analysed = model.analyze_batch(
            [batch[i].pixels for i in todo],  # type: ignore[misc]
            [_faces_of(prepared[i]) for i in todo],  # type: ignore[arg-type]
            [item_prior(batch[i].face_size, self.cfg.size_prior) for i in todo],
        )
        outcomes: list[Any] = list(prepared)
        for i, outcome in zip(todo, analysed, strict=True):
            outcomes[i] = outcome
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
        item.found_faces = result.inference
        yield from super().process(item)

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        outcome, item.found_faces = item.found_faces, None
        assert outcome is not None
        if isinstance(outcome, Rejection):
            raise Rejected.of(outcome)
        yield from self._select(item, outcome)

    def _select(self, item: WorkItem, found: list[Face]) -> Iterable[WorkItem]:
        assert item.image is not None and item.pixels is not None
        self._count_found(item, found)
        selection = select_faces(found, self.cfg, item.image.width, item.image.height)
        self.counters.count("dropped", selection.dropped)
        faces = selection.faces
        if self.cfg.unit == "image":
            yield self._finish(item, faces, selection.primary)
            return
        per_face = [
            self._finish(
                item.copy_as(
                    f"{item.key}_f{i}",
                    # dataset labels describe the image's subject: only the primary face's sample inherits them
                    labels=dict(item.labels) if i == selection.primary else {},
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

    def _count_found(self, item: WorkItem, found: list[Face]) -> None:
        given = sum(1 for f in found if f.detector.startswith(GIVEN_PREFIX))
        self.counters.count("found", len(found))
        self.counters.count("given", given)
        self.counters.count("detected", len(found) - given)
        prepared, item.given_scaled = item.given_scaled, None
        if isinstance(prepared, GivenFaces):
            self.counters.count("given_clipped", prepared.clipped)
            self.counters.count("given_outside", prepared.outside)

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


class GivenFacesOnly(SelectFaces):
    """`backend: none`: no models, but boxes the source gave still become faces (box, score, landmarks,
    pixel quality), selected and cropped as usual. Items without given faces pass untouched."""

    def process(self, item: WorkItem) -> Iterator[Any]:  # type: ignore[override]
        yield from Stage.process(self, item)

    def run(self, item: WorkItem) -> Iterable[WorkItem]:
        prepared = prepare_given(item)
        if prepared is None:  # no given faces (or an empty list): nothing to select, no detector to run
            yield item
            return
        if isinstance(prepared, Rejection):
            raise Rejected.of(prepared)
        yield from self._select(item, [given_face_record(item.pixels, g) for g in prepared.faces])


def prepare_given(item: WorkItem) -> GivenFaces | Rejection | None:
    """The item's given faces in its pixels (kept on it for the counters), None when its source gave
    none, or why they cannot be used (`no_pixels`, `bad_box`, `given_box_outside`)."""
    if item.given_faces is None:
        return None
    problem = check_pixels(item.pixels)
    if problem is not None:
        return problem
    height, width = item.pixels.shape[:2]
    try:
        prepared = given_faces_of(item.given_faces, width, height)
    except Rejected as e:
        return e.rejection
    if prepared is not None:
        item.given_scaled = prepared
    return prepared


def _faces_of(prepared: GivenFaces | None) -> list[GivenFace] | None:
    return prepared.faces if prepared is not None else None


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
            yield make_reject(item, STAGE, Rejection("model_error", detail, retryable=True))


class FaceStage(beam.PTransform):
    """WorkItems (with pixels) → {'main': WorkItems with faces, 'rejects': Rejects}."""

    def __init__(self, cfg: FacesConfig, jpeg_quality: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.jpeg_quality = jpeg_quality

    def expand(self, items: beam.PCollection) -> dict[str, beam.PCollection]:
        if self.cfg.backend == "none":
            given = items | "GivenFaces" >> beam.ParDo(GivenFacesOnly(self.cfg, self.jpeg_quality)).with_outputs(
                REJECTS, main="main"
            )
            return {"main": given["main"], REJECTS: given[REJECTS]}
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
