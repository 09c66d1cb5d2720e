"""The recipe's `sources` entries: one config class per source type, each naming its reader.

A concrete source class declares `type: Literal["<name>"]` and `reader()`, which returns the Beam
PTransform that reads it (imported lazily: loading a recipe does not import Beam). Declaring the class
registers it (`SOURCE_TYPES`); the recipe's `sources` list accepts every registered type. To add a
source: a class here, its reader in sources/<name>.py (see docs/architecture.md). (Just over 400
lines: one short class per source type, kept in one file so the registry is one declaration.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import Field, field_validator, model_validator

from ..config import Config, PositiveInt, resolve_path
from ..download.config import DownloadConfig
from ..labels import VOCABULARY, Category, Flag, Vocabulary, Years
from ..textfiles import check_encoding
from .labelled_config import HOLDOUT_DOC, SNAKE_CASE, AttributeColumn, find_file
from .licences import CELEBA, FAIRFACE, RAFDB, UTKFACE

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
    split: Literal["train", "val", "all"] = Field(
        default="val", description="From the `file` column's first folder; else from the CSV's name."
    )
    margin: Literal["0.25", "1.25"] | None = Field(default=None, description="Recorded in `source.extra.margin`.")
    limit: PositiveInt | None = Field(default=None, description="At most this many rows per label file (after the split), in file order.")
    dataset: str = Field(default="fairface", description="Dataset name on records and keys.")
    licence: str = Field(default=FAIRFACE.id, description="Recorded on every record.")
    encoding: str = Field(
        default="utf-8",
        description="Text encoding of the label CSVs without a byte-order mark (latin-1, cp1252, …); a UTF-8/16/32 "
        "BOM wins. Bytes that do not decode stop the run before it starts, naming file, line, column and byte.",
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        return check_encoding(v)

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .fairface import ReadFairFace

        return ReadFairFace(self)

    def resolve_paths(self, base: Path) -> None:
        self.images = resolve_path(self.images, base)
        self.labels = [resolve_path(p, base) for p in self.labels]


class FolderSource(SourceConfig):
    """Every image file under a folder, recursively."""

    type: Literal["folder"]
    path: str = Field(description="A folder (read recursively) or a glob; local, gs://, s3://.")
    extensions: list[str] = Field(
        default_factory=lambda: [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"],
        description="File endings to read (case-insensitive).",
    )
    dataset: str = Field(default="folder", description="Dataset name on records and keys.")
    split: str | None = Field(default=None, description="Recorded on every record.")
    licence: str | None = Field(default=None, description="Recorded on every record.")
    limit: PositiveInt | None = Field(default=None, description="The first N files in sorted order.")

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .folder import ReadFolder

        return ReadFolder(self)

    def resolve_paths(self, base: Path) -> None:
        self.path = resolve_path(self.path, base)


class WebDatasetSource(SourceConfig):
    """WebDataset tar shards, e.g. img2dataset output: KEY.jpg + KEY.txt + KEY.json per sample.

    `KEY.txt` becomes `source.text` (untrusted alt-text), `KEY.json`'s `url` becomes `source.url`, its
    other scalar fields go to `source.extra`."""

    type: Literal["webdataset"]
    path: str = Field(description="A shard, a folder of shards or a glob (local, gs://, s3://).")
    image_extensions: list[str] = Field(
        default_factory=lambda: ["jpg", "jpeg", "png", "webp"], description="Which member is the image."
    )
    dataset: str = Field(default="webdataset", description="Dataset name on records and keys.")
    split: str | None = Field(default=None, description="Recorded on every record.")
    licence: str | None = Field(default=None, description="Recorded on every record; else the sample's `LICENSE`.")
    limit: PositiveInt | None = Field(default=None, description="At most N samples per shard.")

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
    split: str | None = Field(default=None, description="Recorded on every record.")
    licence: str | None = Field(default=None, description="Overrides the per-row LICENSE column.")
    limit: PositiveInt | None = Field(default=None, description="Stop after this many rows (after the id filter).")

    def resolve_paths(self, base: Path) -> None:
        self.path = resolve_path(self.path, base)
        if self.ids:
            self.ids = resolve_path(self.ids, base)


class WebListRows(ParquetRows):
    """Rows with URLs that the pipeline downloads."""

    min_side: PositiveInt | None = Field(default=None, description="Reject rows whose declared WIDTH/HEIGHT is smaller.")
    download: DownloadConfig = Field(default_factory=DownloadConfig, description="How the images are fetched.")


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
    dataset: str = Field(default="laion", description="Dataset name on records and keys.")

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .laion import ReadLaion

        return ReadLaion(self, finished=finished)


class FaceCaptionSource(WebListRows):
    """FaceCaption-15M parquet: url, face box, laion_caption, face_caption. The box replaces detection."""

    gives_faces: ClassVar[bool] = True

    type: Literal["facecaption"]
    url_column: str | None = Field(default=None, description="Default: the first of url, URL, image_url.")
    box_column: str | None = Field(default=None, description="Default: the first of face_box, face_bbox, bbox, box.")
    box_format: Literal["xyxy", "xywh"] = Field(default="xyxy", description="How the box column's four numbers read.")
    caption_column: str | None = Field(default=None, description="Default: face_caption (kept as source_caption).")
    text_column: str | None = Field(default=None, description="Default: laion_caption (kept as untrusted text).")
    id_column: str | None = Field(default=None, description="Default: SAMPLE_ID or id; else file:row.")
    dataset: str = Field(default="facecaption15m", description="Dataset name on records and keys.")

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .laion import ReadFaceCaption

        return ReadFaceCaption(self, finished=finished)


class Img2DatasetSource(LaionColumns):
    """img2dataset's output folder (output_format webdataset: NNNNN.parquet + NNNNN.tar per shard), e.g.
    LAION-Face downloaded with FaRL's download.sh. Nothing is downloaded; img2dataset's failures are rejects."""

    type: Literal["img2dataset"]
    dataset: str = Field(default="laion", description="Dataset name on records and keys.")

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .laion import ReadImg2Dataset

        return ReadImg2Dataset(self, finished=finished)


# ------------------------------------------------------------------------------ labelled face datasets


class CelebASource(SourceConfig):
    """CelebA: images (img_align_celeba zip or folder) plus its Anno/ and Eval/ listings."""

    gives_faces: ClassVar[bool] = True  # landmarks and boxes, when listed

    type: Literal["celeba"]
    root: str | None = Field(default=None, description="The CelebA folder (Anno/, Eval/, Img/): the paths below default to "
                             "the files found there under their distribution names (set one to null to not read it).")
    images: str | None = Field(default=None, description="img_align_celeba.zip or its folder (or img_celeba, in the wild).")
    attributes: str | None = Field(default=None, description="list_attr_celeba.txt (the list of inputs).")
    partitions: str | None = Field(default=None, description="list_eval_partition.txt (0 train, 1 val, 2 test).")
    landmarks: str | None = Field(default=None, description="list_landmarks_align_celeba.txt (given faces).")
    boxes: str | None = Field(default=None, description="list_bbox_celeba.txt (in-the-wild images only).")
    identities: str | None = Field(default=None, description="identity_CelebA.txt (kept as source.extra.identity).")
    split: Literal["train", "val", "test", "all"] = Field(default="all", description="Only rows of this partition; all: every partition not held out.")
    holdout: list[Literal["train", "val", "test"]] = Field(default_factory=lambda: ["test"], description=HOLDOUT_DOC)
    limit: PositiveInt | None = Field(default=None, description="At most this many rows, in file order.")
    dataset: str = Field(default="celeba", description="Dataset name on records and keys.")
    licence: str = Field(default=CELEBA.id, description="Recorded on every record (sources/licences.py).")

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .celeba import ReadCelebA

        return ReadCelebA(self)

    def resolve_paths(self, base: Path) -> None:
        root = Path(resolve_path(self.root, base)) if self.root else None
        defaults = {
            "images": ("img_align_celeba.zip", "img_align_celeba"),
            "attributes": ("list_attr_celeba.txt",),
            "partitions": ("list_eval_partition.txt",),
            "landmarks": ("list_landmarks_align_celeba.txt",),
            "identities": ("identity_CelebA.txt",),
        }
        for key in ("images", "attributes", "partitions", "landmarks", "boxes", "identities"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, resolve_path(value, base))
            elif root is not None and key in defaults and key not in self.model_fields_set:  # null: not read
                setattr(self, key, find_file(root, defaults[key]))

    @model_validator(mode="after")
    def _needs_files(self) -> CelebASource:
        if self.root is None and (self.images is None or self.attributes is None):
            raise ValueError("CelebA needs root: (the CelebA folder) or both images: and attributes:")
        return self


class RafDbSource(SourceConfig):
    """RAF-DB basic: EmoLabel/list_patition_label.txt plus Image/aligned (or Image/original)."""

    type: Literal["rafdb"]
    root: str | None = Field(default=None, description="The `basic` folder: labels and images default to "
                             "EmoLabel/list_patition_label.txt and Image/aligned (or aligned.zip).")
    labels: str | None = Field(default=None, description="EmoLabel/list_patition_label.txt.")
    images: str | None = Field(default=None, description="Image/aligned or Image/original (a folder or a zip).")
    variant: Literal["auto", "aligned", "original"] = Field(
        default="auto", description="auto: aligned when the images path says so (names *_aligned.jpg).")
    split: Literal["train", "test", "all"] = Field(default="all", description="Only rows of this partition; all: every partition not held out.")
    holdout: list[Literal["train", "test"]] = Field(default_factory=lambda: ["test"], description=HOLDOUT_DOC)
    limit: PositiveInt | None = Field(default=None, description="At most this many rows, in file order.")
    dataset: str = Field(default="rafdb", description="Dataset name on records and keys.")
    licence: str = Field(default=RAFDB.id, description="Recorded on every record (sources/licences.py).")

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .rafdb import ReadRafDb

        return ReadRafDb(self)

    def resolve_paths(self, base: Path) -> None:
        root = Path(resolve_path(self.root, base)) if self.root else None
        if self.labels is not None:
            self.labels = resolve_path(self.labels, base)
        elif root is not None:
            self.labels = str(root / "EmoLabel" / "list_patition_label.txt")
        if self.images is not None:
            self.images = resolve_path(self.images, base)
        elif root is not None:
            found = [p for p in (root / "Image" / "aligned", root / "Image" / "aligned.zip") if p.exists()]
            self.images = str(found[0] if found else root / "Image" / "aligned")

    @model_validator(mode="after")
    def _needs_files(self) -> RafDbSource:
        if self.root is None and (self.images is None or self.labels is None):
            raise ValueError("RAF-DB needs root: (the basic folder) or both labels: and images:")
        return self


class UTKFaceSource(SourceConfig):
    """UTKFace: a folder, zip or .tar.gz of images whose names carry age, gender and race."""

    type: Literal["utkface"]
    images: str = Field(description="UTKFace/ (or crop_part1/, part1/…), a zip of it, or UTKFace.tar.gz.")
    split: str | None = Field(default=None, description="Recorded on every sample (UTKFace has no official split).")
    limit: PositiveInt | None = Field(default=None, description="At most this many images, in name order.")
    dataset: str = Field(default="utkface", description="Dataset name on records and keys.")
    licence: str = Field(default=UTKFACE.id, description="Recorded on every record (sources/licences.py).")

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .utkface import ReadUTKFace

        return ReadUTKFace(self)

    def resolve_paths(self, base: Path) -> None:
        self.images = resolve_path(self.images, base)


class LabelledSource(SourceConfig):
    """A label table (CSV, TSV, JSON lines, parquet) + images, with a mapping of columns to attributes."""

    type: Literal["labelled"]
    table: str = Field(description="The label table: .csv, .tsv, .jsonl or .parquet.")
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = Field(default="auto", description="auto: from the table's file ending.")
    images: str = Field(description="Folder or zip holding the images the image column names.")
    image_column: str = Field(default="image", description="The column naming each row's image file.")
    id_column: str | None = Field(default=None, description="Default: the image name.")
    split_column: str | None = Field(default=None, description="The column holding each row's split; null: no splits.")
    splits: dict[str, str] = Field(default_factory=dict, description="Raw split cell → split name, e.g. {'2': test}.")
    split: str = Field(default="all", description="Only rows of this split; all: every split not held out.")
    holdout: list[str] = Field(default_factory=lambda: ["test"], description=HOLDOUT_DOC)
    attributes: dict[str, AttributeColumn] = Field(min_length=1, description="Attribute name → where its labels are read.")
    limit: PositiveInt | None = Field(default=None, description="At most this many rows, in file order.")
    dataset: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Dataset name on records and keys.")
    licence: str = Field(description="The dataset's terms (recorded on every sample); required: say what they are.")

    def reader(self, finished: beam.PCollection | None = None) -> beam.PTransform:
        from .labelled_table import ReadLabelledTable

        return ReadLabelledTable(self)

    def split_name(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        return self.splits.get(raw, raw)

    def resolve_paths(self, base: Path) -> None:
        self.table = resolve_path(self.table, base)
        self.images = resolve_path(self.images, base)

    def declared_attributes(self) -> list[Category | Flag | Years]:
        return [spec.declare.build(name) for name, spec in self.attributes.items() if spec.declare is not None]

    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.declared_attributes())

    @model_validator(mode="after")
    def _mapping_fits_vocabulary(self) -> LabelledSource:
        vocab = self.vocabulary()
        for name, spec in self.attributes.items():
            if not SNAKE_CASE.match(name):
                raise ValueError(f"attribute names are snake_case: {name!r}")
            if spec.declare is not None and name in VOCABULARY:
                raise ValueError(f"attribute {name!r} is in the vocabulary already; map onto it without declare:")
            declared = vocab.get(name)
            if declared is None:
                raise ValueError(f"attribute {name!r} is not in the vocabulary (labels.py); declare it with declare:")
            if spec.threshold is not None and not isinstance(declared, Flag):
                raise ValueError(f"attribute {name!r}: threshold is for flags only")
            if isinstance(declared, Category) and spec.values is not None:
                unknown = sorted({str(v) for v in spec.values.values() if not isinstance(v, str) or v not in declared.words})
                if unknown:
                    raise ValueError(f"attribute {name!r}: {unknown} are not among its codes {list(declared.words)}")
        return self




def source_union() -> Any:
    """The recipe's `sources` item type: every registered source, told apart by `type`."""
    return Annotated[Union[tuple(SOURCE_TYPES.values())], Field(discriminator="type")]  # noqa: UP007


#: one entry of the recipe's `sources` list
Source = source_union()
