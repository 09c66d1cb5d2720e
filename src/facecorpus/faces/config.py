"""The recipe's `faces` section: detection, landmarks, attributes, quality, selection and crops
(docs/faces.md). Model placement and batching are execution-only: they change how fast, not what."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..config import EXECUTION_ONLY, Config, PositiveInt


class FaceCropConfig(Config):
    """What `KEY.jpg` holds when the sample is a face crop (docs/faces.md)."""

    enabled: bool = Field(default=False, description="Store a crop around the primary face instead of the image.")
    margin: float = Field(
        default=0.25, ge=0, le=3, description="FairFace-style: the square grows by margin x face size on each side."
    )
    size: PositiveInt | None = Field(default=224, description="Side of the stored square crop; null: native size.")
    align: bool = Field(default=False, description="Rotate and scale by the 5 landmarks so the eyes are level.")


class FacesConfig(Config):
    """Face detection, landmarks, attributes, quality, selection and crops (docs/faces.md)."""

    backend: Literal["none", "portable", "insightface"] = Field(
        default="none", description="'none': no face analysis; 'portable': CPU pack; 'insightface': buffalo_l etc."
    )
    pack: str | None = Field(default=None, description="Model pack; null: 'portable' or 'buffalo_l' by backend.")
    models_dir: Annotated[str | None, EXECUTION_ONLY] = Field(
        default=None, description="Model store; null: $FACECORPUS_MODELS or ~/.cache/facecorpus/models."
    )
    providers: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="onnxruntime providers; 'cuda' needs onnxruntime-gpu instead of onnxruntime."
    )
    device_id: Annotated[int, EXECUTION_ONLY] = Field(default=0, ge=0, description="CUDA device.")
    detector: Literal["blazeface", "mtcnn"] = Field(
        default="blazeface",
        description="Portable: 'blazeface' (BlazeFace proposals judged by O-Net; fast) or 'mtcnn' (the full cascade).",
    )
    size_prior: Literal["auto", "any", "crop"] = Field(
        default="auto",
        description="Face sizes to search: 'auto' follows the source (FairFace: face crops), 'any' all sizes, "
        "'crop' one large face per image.",
    )
    det_size: PositiveInt = Field(
        default=640, description="insightface: detector input side; portable: longer side MTCNN runs at."
    )
    det_threshold: float = Field(default=0.5, ge=0, le=1, description="Detector confidence to report a face at all.")
    detect_min_face: PositiveInt | None = Field(
        default=None,
        description="Portable: smallest face (px) looked for; null: min_face_size (blazeface), half of it (mtcnn).",
    )
    min_score: float = Field(default=0.9, ge=0, le=1, description="Faces below are dropped; none left: `low_score`.")
    min_face_size: PositiveInt = Field(
        default=40, description="Shorter box side (px); smaller faces are dropped; none left: `face_too_small`."
    )
    max_faces: PositiveInt = Field(default=10, description="More faces than this left: `too_many_faces`.")
    primary: Literal["largest", "central"] = Field(default="largest", description="Which face the sample is about.")
    unit: Literal["image", "face"] = Field(default="image", description="'face': one sample per face (<key>_f<i>).")
    crop: FaceCropConfig = Field(default_factory=FaceCropConfig, description="What `KEY.jpg` holds for a face crop.")
    mesh: bool = Field(default=True, description="Portable: FaceMesh → pose, eye and mouth openness.")
    expression: bool = Field(default=True, description="Portable: expression (7 classes).")
    attributes: bool = Field(default=True, description="insightface: gender and age; 3D landmarks → pose.")
    embedding: bool = Field(default=False, description="insightface: store the ArcFace embedding (biometric data).")
    batch_size: Annotated[PositiveInt, EXECUTION_ONLY] = Field(default=8, description="Largest RunInference batch (images).")
    model_copies: Annotated[PositiveInt | None, EXECUTION_ONLY] = Field(
        default=None, description="Share the model across worker processes with this many copies (GPU); null: one per process."
    )

    def pack_name(self) -> str:
        return self.pack or ("buffalo_l" if self.backend == "insightface" else "portable")
