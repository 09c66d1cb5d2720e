"""The recipe's `sources` entries: one config class per source type, each naming its reader.

A concrete source class declares `type: Literal["<name>"]` and `reader()`, which returns the Beam
PTransform that reads it (imported lazily: loading a recipe does not import Beam). Declaring the class
registers it (`SOURCE_TYPES`); the recipe's `sources` list accepts every registered type. To add a
source: a class here, its reader in sources/<name>.py (see docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import Field, field_validator

from ..config import Config, PositiveInt, resolve_path
from ..download.config import DownloadConfig

if TYPE_CHECKING:
    import apache_beam as beam

#: source `type` → its config class, filled as the classes are declared
SOURCE_TYPES: dict[str, type[SourceConfig]] = {}


class SourceConfig(Config):
    """Base of the source sections. Subclasses with a `type` literal are registered source types."""

    #: rows can carry face boxes that replace detection (FaceCaption-15M, FaRL)
    gives_faces: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("type")
        if field is not None and get_origin(field.annotation) is Literal:
            (name,) = get_args(field.annotation)
            if SOURCE_TYPES.get(name, cls) is not cls:
                raise TypeError(f"source type {name!r} is declared twice ({SOURCE_TYPES[name].__name__}, {cls.__name__})")
            SOURCE_TYPES[name] = cls

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        """The PTransform that reads this source: {'main': WorkItems, 'rejects': Rejects}.

        `finished` (when resuming: (key, status) pairs the output already holds) is for sources that
        can skip costly work for those keys before doing it (LAION: the download); others ignore it.
        """
        raise NotImplementedError(f"{type(self).__name__} names no reader")

    def resolve_paths(self, base: Path) -> None:
        """Make the section's relative paths absolute against the recipe's folder."""


class FairFaceSource(SourceConfig):
    """FairFace: the image zip (or its extracted folder) plus the label CSVs."""

    type: Literal["fairface"]
    images: str = Field(description="fairface-img-margin025-trainval.zip (or the 1.25 zip), or its extracted folder.")
    labels: list[str] = Field(min_length=1, description="fairface_label_{train,val}.csv files.")
    split: Literal["train", "val", "all"] = "val"
    margin: Literal["0.25", "1.25"] | None = Field(default=None, description="Recorded on each sample.")
    limit: PositiveInt | None = None
    dataset: str = "fairface"
    licence: str = "CC-BY-4.0"

    @field_validator("labels", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .fairface import ReadFairFace

        return ReadFairFace(self)

    def resolve_paths(self, base: Path) -> None:
        self.images = resolve_path(self.images, base)
        self.labels = [resolve_path(p, base) for p in self.labels]


class FolderSource(SourceConfig):
    """Every image file under a folder, recursively."""

    type: Literal["folder"]
    path: str
    extensions: list[str] = Field(
        default_factory=lambda: [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"]
    )
    dataset: str = "folder"
    split: str | None = None
    licence: str | None = None
    limit: PositiveInt | None = None

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .folder import ReadFolder

        return ReadFolder(self)

    def resolve_paths(self, base: Path) -> None:
        self.path = resolve_path(self.path, base)


class WebDatasetSource(SourceConfig):
    """WebDataset tar shards, e.g. img2dataset output: KEY.jpg + KEY.txt + KEY.json per sample."""

    type: Literal["webdataset"]
    path: str = Field(description="A shard, a folder of shards or a glob (local, gs://, s3://).")
    image_extensions: list[str] = Field(default_factory=lambda: ["jpg", "jpeg", "png", "webp"])
    dataset: str = "webdataset"
    split: str | None = None
    licence: str | None = None
    limit: PositiveInt | None = None

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .webdataset import ReadWebDataset

        return ReadWebDataset(self)

    def resolve_paths(self, base: Path) -> None:
        self.path = resolve_path(self.path, base)


class ParquetRows(SourceConfig):
    """Fields shared by the sources that read LAION-style parquet rows (read by sources/laion.py)."""

    path: str = Field(description="Parquet file, folder of .parquet files or glob (local, gs://, s3://).")
    ids: str | None = Field(
        default=None,
        description="Keep only these SAMPLE_IDs (LAION-Face): .npy, .parquet, .txt/.csv (one per line) or "
        "the published laion_face_ids.pth (needs torch; `facecorpus laion convert-ids` makes a .npy once).",
    )
    ids_parts: list[int] | None = Field(
        default=None, description="With a laion_face_ids.pth: only these parts (LAION-Face 20M: 0,2,5,8,13,15,17,18,21,22,24,25,28)."
    )
    split: str | None = None
    licence: str | None = Field(default=None, description="Overrides the per-row LICENSE column.")
    limit: PositiveInt | None = Field(default=None, description="Stop after this many rows (after the id filter).")

    def resolve_paths(self, base: Path) -> None:
        self.path = resolve_path(self.path, base)
        if self.ids:
            self.ids = resolve_path(self.ids, base)


class WebListRows(ParquetRows):
    """Rows with URLs that the pipeline downloads."""

    min_side: PositiveInt | None = Field(default=None, description="Reject rows whose declared WIDTH/HEIGHT is smaller.")
    download: DownloadConfig = Field(default_factory=DownloadConfig)


class LaionColumns(ParquetRows):
    """LAION's own columns: the NSFW tag, CLIP similarity; FaRL's detections joined by SAMPLE_ID."""

    gives_faces: ClassVar[bool] = True

    nsfw: list[str] | None = Field(
        default_factory=lambda: ["UNLIKELY"], description="NSFW tags kept; other rows are rejected `nsfw`. null: no filter."
    )
    min_similarity: float | None = Field(default=None, description="Reject rows with a lower CLIP similarity.")
    detections: str | None = Field(
        default=None,
        description="FaRL face detections (sample2detect_*.pth, or parquet from `facecorpus laion convert-detections`): "
        "file, folder or glob. Their boxes replace face detection.",
    )

    def resolve_paths(self, base: Path) -> None:
        super().resolve_paths(base)
        if self.detections:
            self.detections = resolve_path(self.detections, base)


class LaionSource(LaionColumns, WebListRows):
    """LAION-400M metadata parquet (SAMPLE_ID, URL, TEXT, HEIGHT, WIDTH, LICENSE, NSFW, similarity; any case)."""

    type: Literal["laion"]
    dataset: str = "laion"

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .laion import ReadLaion

        return ReadLaion(self, finished=finished)


class FaceCaptionSource(WebListRows):
    """FaceCaption-15M parquet: url, face box, laion_caption, face_caption. The box replaces detection."""

    gives_faces: ClassVar[bool] = True

    type: Literal["facecaption"]
    url_column: str | None = Field(default=None, description="Default: the first of url, URL, image_url.")
    box_column: str | None = Field(default=None, description="Default: the first of face_box, face_bbox, bbox, box.")
    box_format: Literal["xyxy", "xywh"] = "xyxy"
    caption_column: str | None = Field(default=None, description="Default: face_caption (kept as source_caption).")
    text_column: str | None = Field(default=None, description="Default: laion_caption (kept as untrusted text).")
    id_column: str | None = Field(default=None, description="Default: SAMPLE_ID or id; else file:row.")
    dataset: str = "facecaption15m"

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .laion import ReadFaceCaption

        return ReadFaceCaption(self, finished=finished)


class Img2DatasetSource(LaionColumns):
    """img2dataset's output folder (output_format webdataset: NNNNN.parquet + NNNNN.tar per shard), e.g.
    LAION-Face downloaded with FaRL's download.sh. Nothing is downloaded; img2dataset's failures are rejects."""

    type: Literal["img2dataset"]
    dataset: str = "laion"

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .laion import ReadImg2Dataset

        return ReadImg2Dataset(self, finished=finished)


def source_union() -> Any:
    """The recipe's `sources` item type: every registered source, told apart by `type`."""
    return Annotated[Union[tuple(SOURCE_TYPES.values())], Field(discriminator="type")]  # noqa: UP007


#: one entry of the recipe's `sources` list
Source = source_union()
