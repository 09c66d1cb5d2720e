"""Recipes: the YAML that says what a run reads, computes and writes.

`load_recipe(path, overrides)` applies `--set dotted.key=value` overrides, validates with pydantic and
turns any mistake into one `UserError` line naming the file, the key and what is wrong.
Every key is documented in docs/recipes.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UserError
from .records import DEFAULT_CATEGORIES, PositiveInt
from .textfiles import decode_text


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: sources only: rows can carry face boxes that replace detection (FaceCaption-15M, FaRL)
    gives_faces: ClassVar[bool] = False


def is_remote(path: str) -> bool:
    return "://" in path


def _resolve(path: str, base: Path) -> str:
    if is_remote(path):
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


# --------------------------------------------------------------------------------------------- sources


class FairFaceSource(_Config):
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

    def resolve_paths(self, base: Path) -> None:
        self.images = _resolve(self.images, base)
        self.labels = [_resolve(p, base) for p in self.labels]


class FolderSource(_Config):
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

    def resolve_paths(self, base: Path) -> None:
        self.path = _resolve(self.path, base)


class WebDatasetSource(_Config):
    """WebDataset tar shards, e.g. img2dataset output: KEY.jpg + KEY.txt + KEY.json per sample."""

    type: Literal["webdataset"]
    path: str = Field(description="A shard, a folder of shards or a glob (local, gs://, s3://).")
    image_extensions: list[str] = Field(default_factory=lambda: ["jpg", "jpeg", "png", "webp"])
    dataset: str = "webdataset"
    split: str | None = None
    licence: str | None = None
    limit: PositiveInt | None = None

    def resolve_paths(self, base: Path) -> None:
        self.path = _resolve(self.path, base)


class DownloadConfig(_Config):
    """How web images are fetched (sources `laion`, `facecaption`). Defaults are the production-safe ones."""

    threads: PositiveInt = Field(default=32, description="Requests in flight per worker process.")
    per_domain: PositiveInt = Field(default=4, description="Requests in flight per host per worker process.")
    timeout_s: float = Field(default=10.0, gt=0, description="Connect and per-read timeout.")
    deadline_s: float = Field(default=60.0, gt=0, description="Whole-URL limit per attempt (redirects and body).")
    retries: int = Field(default=2, ge=0, le=10, description="Extra attempts after a transient failure.")
    backoff_s: float = Field(default=1.0, ge=0, description="First back-off; doubles per retry, with jitter.")
    max_backoff_s: float = Field(default=60.0, ge=0, description="Longest wait, including a server's Retry-After.")
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_bytes: PositiveInt = Field(default=25_000_000, description="Larger bodies are rejected `too_large`.")
    user_agent: str | None = Field(default=None, description="Default: 'facecorpus/<version> (…; +contact)'.")
    contact: str | None = Field(default=None, description="URL or e-mail added to the User-Agent for site owners.")
    user_agent_token: str = Field(default="facecorpus", description="Token X-Robots-Tag lines may address.")
    optout_directives: list[str] = Field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex"],
        description="X-Robots-Tag directives that opt an image out (`robots_optout`).",
    )
    allow_networks: list[str] = Field(
        default_factory=list,
        description="Non-public networks (CIDR) that may be contacted anyway. Empty in production: loopback, "
        "private, link-local, multicast and reserved addresses are refused. Tests set ['127.0.0.1/32'].",
    )
    verify_tls: bool = True
    batch_size: PositiveInt = Field(default=256, description="Rows per download task.")
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = Field(
        default="keep_ratio_largest", description="img2dataset resize mode applied on download."
    )
    image_size: PositiveInt = Field(default=1024, description="img2dataset image_size for resize_mode.")
    resize_only_if_bigger: bool = True

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for n in v:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network in CIDR form: {n!r}") from None
        return v


class _ParquetRows(_Config):
    """Fields shared by the sources that read LAION-style parquet rows."""

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
        self.path = _resolve(self.path, base)
        if self.ids:
            self.ids = _resolve(self.ids, base)


class _WebListSource(_ParquetRows):
    """Rows with URLs that the pipeline downloads."""

    min_side: PositiveInt | None = Field(default=None, description="Reject rows whose declared WIDTH/HEIGHT is smaller.")
    download: DownloadConfig = Field(default_factory=DownloadConfig)


class _LaionColumns(_ParquetRows):
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
            self.detections = _resolve(self.detections, base)


class LaionSource(_LaionColumns, _WebListSource):
    """LAION-400M metadata parquet (SAMPLE_ID, URL, TEXT, HEIGHT, WIDTH, LICENSE, NSFW, similarity; any case)."""

    type: Literal["laion"]
    dataset: str = "laion"


class Img2DatasetSource(_LaionColumns):
    """img2dataset's output folder (output_format webdataset: NNNNN.parquet + NNNNN.tar per shard), e.g.
    LAION-Face downloaded with FaRL's download.sh. Nothing is downloaded; img2dataset's failures are rejects."""

    type: Literal["img2dataset"]
    dataset: str = "laion"


class FaceCaptionSource(_WebListSource):
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


Source = Annotated[
    FairFaceSource | FolderSource | WebDatasetSource | LaionSource | FaceCaptionSource | Img2DatasetSource,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------------------------------------- stages


class ImageConfig(_Config):
    min_side: PositiveInt = Field(default=32, description="Reject images whose shorter side is below this.")
    max_pixels: PositiveInt = Field(default=60_000_000, description="Reject larger images (decompression bombs).")
    max_input_bytes: PositiveInt = Field(default=50_000_000, description="Reject larger input files.")
    max_side: PositiveInt | None = Field(default=1024, description="Downscale the stored image to this longer side.")
    jpeg_quality: int = Field(default=92, ge=50, le=100)


class FaceCropConfig(_Config):
    """What `KEY.jpg` holds when the sample is a face crop (docs/faces.md)."""

    enabled: bool = Field(default=False, description="Store a crop around the primary face instead of the image.")
    margin: float = Field(
        default=0.25, ge=0, le=3, description="FairFace-style: the square grows by margin x face size on each side."
    )
    size: PositiveInt | None = Field(default=224, description="Side of the stored square crop; null: native size.")
    align: bool = Field(default=False, description="Rotate and scale by the 5 landmarks so the eyes are level.")


class FacesConfig(_Config):
    """Face detection, landmarks, attributes, quality, selection and crops (docs/faces.md)."""

    backend: Literal["none", "portable", "insightface"] = Field(
        default="none", description="'none': no face analysis; 'portable': CPU pack; 'insightface': buffalo_l etc."
    )
    pack: str | None = Field(default=None, description="Model pack; null: 'portable' or 'buffalo_l' by backend.")
    models_dir: str | None = Field(
        default=None, description="Model store; null: $FACECORPUS_MODELS or ~/.cache/facecorpus/models."
    )
    providers: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="onnxruntime providers; 'cuda' needs onnxruntime-gpu instead of onnxruntime."
    )
    device_id: int = Field(default=0, ge=0, description="CUDA device.")
    det_size: PositiveInt = Field(
        default=640, description="insightface: detector input side; portable: longer side MTCNN runs at."
    )
    det_threshold: float = Field(default=0.5, ge=0, le=1, description="Detector confidence to report a face at all.")
    detect_min_face: PositiveInt | None = Field(
        default=None, description="Portable: smallest face (px) MTCNN looks for; null: half of min_face_size."
    )
    min_score: float = Field(default=0.9, ge=0, le=1, description="Faces below are dropped; none left: `low_score`.")
    min_face_size: PositiveInt = Field(
        default=40, description="Shorter box side (px); smaller faces are dropped; none left: `face_too_small`."
    )
    max_faces: PositiveInt = Field(default=10, description="More faces than this left: `too_many_faces`.")
    primary: Literal["largest", "central"] = Field(default="largest", description="Which face the sample is about.")
    unit: Literal["image", "face"] = Field(default="image", description="'face': one sample per face (<key>_f<i>).")
    crop: FaceCropConfig = Field(default_factory=FaceCropConfig)
    mesh: bool = Field(default=True, description="Portable: FaceMesh → pose, eye and mouth openness.")
    expression: bool = Field(default=True, description="Portable: expression (7 classes).")
    attributes: bool = Field(default=True, description="insightface: gender and age; 3D landmarks → pose.")
    embedding: bool = Field(default=False, description="insightface: store the ArcFace embedding (biometric data).")
    batch_size: PositiveInt = Field(default=8, description="Largest RunInference batch (images).")
    model_copies: PositiveInt | None = Field(
        default=None, description="Share the model across worker processes with this many copies (GPU); null: one per process."
    )

    def pack_name(self) -> str:
        return self.pack or ("buffalo_l" if self.backend == "insightface" else "portable")


class LLMImageConfig(_Config):
    """How the image goes along with a request (a base64 JPEG data URL)."""

    send: Literal["auto", "always", "never"] = Field(
        default="auto", description="auto: attach it unless the endpoint is the embedded text-only server."
    )
    max_side: PositiveInt = Field(default=512, description="Downscale so the longer side is at most this.")
    max_bytes: PositiveInt = Field(default=1_000_000, description="Re-encode at lower quality above this size.")
    jpeg_quality: int = Field(default=90, ge=30, le=100)
    detail: Literal["auto", "low", "high"] | None = Field(default=None, description="OpenAI image detail; null: omit.")


class OpenAIConfig(_Config):
    """The OpenAI-compatible endpoint: OpenAI, vLLM, llama.cpp, … `base_url: local` is the embedded server."""

    base_url: str = Field(default="https://api.openai.com/v1", description="'local': the embedded llama.cpp server.")
    model: str = "gpt-4o-2024-11-20"
    local_model: str = Field(default="smollm2", description="Model pack served when base_url is 'local'.")
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY", description="NAME of the environment variable holding the key (never the key)."
    )
    temperature: float | None = Field(default=None, ge=0, le=2, description="null: the endpoint's default.")
    max_tokens: PositiveInt = 600
    seed: int | None = None
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="More body fields, e.g. {frequency_penalty: 0.5} or llama.cpp's repeat_penalty."
    )
    timeout_s: float = Field(default=120.0, gt=0, description="Per request.")
    concurrency: PositiveInt = Field(default=16, description="Requests in flight per worker.")
    batch_requests: PositiveInt | None = Field(
        default=None, description="Requests per RunInference batch; null: 8 x concurrency."
    )
    image: LLMImageConfig = Field(default_factory=LLMImageConfig)
    reask: bool = Field(default=True, description="Re-ask once after a refusal, a cut-off or an unparsable answer.")
    refusal_message: str | None = Field(default=None, description="Corrective re-ask after a refusal; null: built-in.")
    on_category_failure: Literal["reject", "skip"] = Field(
        default="reject", description="A category that fails after the re-ask rejects the sample, or is skipped."
    )
    preflight: bool = Field(default=True, description="Check the key and the endpoint before the run starts.")


class RetryConfig(_Config):
    """The one retry layer (tenacity): 429, 5xx, timeouts and connection errors; Retry-After is honoured."""

    max_attempts: PositiveInt = 6
    initial_s: float = Field(default=1.0, gt=0)
    max_s: float = Field(default=60.0, gt=0, description="Longest single wait.")
    max_total_s: float = Field(default=900.0, gt=0, description="Give up on a request after this long.")


class LimitsConfig(_Config):
    """Per-worker budgets (token buckets); null: unlimited. Set them to your account's limits / workers."""

    rpm: PositiveInt | None = Field(default=None, description="Requests per minute.")
    tpm: PositiveInt | None = Field(default=None, description="Tokens per minute (estimated prompt + max_tokens).")


class CacheConfig(_Config):
    """Content-addressed response cache: a re-run never pays twice for the same request."""

    enabled: bool = True
    dir: str | None = Field(
        default=None, description="Local folder, gs:// or s3://; null: $FACECORPUS_LLM_CACHE or ~/.cache/facecorpus/llm."
    )


class PriceConfig(_Config):
    """USD per million tokens."""

    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0, description="null: same as input.")
    output: float = Field(ge=0)


def _default_prices() -> dict[str, PriceConfig]:
    # OpenAI list prices (USD / 1M tokens) at the time of writing; override in the recipe when they change.
    gpt4o = PriceConfig(input=2.50, cached_input=1.25, output=10.00)
    return {
        "gpt-4o-2024-11-20": gpt4o,
        "gpt-4o-2024-08-06": gpt4o,
        "gpt-4o": gpt4o,
        "gpt-4o-mini": PriceConfig(input=0.15, cached_input=0.075, output=0.60),
        "smollm2": PriceConfig(input=0.0, output=0.0),
    }


class BatchConfig(_Config):
    """OpenAI Batch API mode: JSONL request files, 24 h window, half price."""

    files: PositiveInt = Field(default=1, description="Request groups submitted in parallel (each split by the limits).")
    max_requests_per_file: int = Field(default=50_000, ge=1, le=50_000)
    max_bytes_per_file: int = Field(default=190_000_000, ge=1_000, le=200_000_000)
    poll_initial_s: float = Field(default=15.0, gt=0)
    poll_max_s: float = Field(default=600.0, gt=0)
    max_wait_h: float = Field(default=26.0, gt=0, description="Stop waiting for a batch after this long.")
    state_dir: str | None = Field(default=None, description="Where batch ids are kept; null: <out>/llm_batches.")


class GenerationConfig(_Config):
    generator: Literal["templates", "openai"] = "templates"
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES), min_length=1)
    seed: int = 0
    prompt_set: str = Field(default="fairfacegpt", description="A set in prompts/manifest.yaml (fairfacegpt, structured).")
    prompts_dir: str | None = Field(default=None, description="Your own prompt folder (with manifest.yaml).")
    topics: dict[str, str] = Field(default_factory=dict, description="Topic phrases for extra categories.")
    bounds: dict[str, PositiveInt] = Field(
        default_factory=dict, description="Override the prompt set's length bounds, e.g. answer_max_chars (small models)."
    )
    mode: Literal["online", "batch"] = Field(default="online", description="batch: the OpenAI Batch API.")
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=_default_prices, description="Per model; merged over defaults.")
    batch_discount: float = Field(default=0.5, ge=0, le=1, description="Fraction off the price in batch mode.")
    batch: BatchConfig = Field(default_factory=BatchConfig)

    @field_validator("prices", mode="before")
    @classmethod
    def _merge_prices(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {**_default_prices(), **v}
        return v


    @field_validator("categories")
    @classmethod
    def _unique_snake(cls, v: list[str]) -> list[str]:
        import re

        bad = [c for c in v if not re.match(r"^[a-z][a-z0-9_]*$", c)]
        if bad:
            raise ValueError(f"category names must be snake_case: {bad}")
        if len(set(v)) != len(v):
            raise ValueError("categories must not repeat")
        return v


class OutputConfig(_Config):
    samples_per_shard: PositiveInt = Field(default=1000, description="Target samples per shard.")
    max_shard_bytes: PositiveInt = Field(default=1_000_000_000, description="A shard closes before passing this.")
    rejects_shards: PositiveInt = Field(default=1, description="Number of rejects/*.jsonl files.")
    grouping: Literal["auto", "staging", "shuffle"] = Field(
        default="auto",
        description="How samples reach their shard: 'staging' spills samples to files and shuffles keys only "
        "(flat memory on local runners); 'shuffle' groups whole samples (Dataflow); 'auto' picks by runner.",
    )


class DedupConfig(_Config):
    """Duplicate images within a run: keep the one with the smallest key, reject the rest `duplicate`."""

    exact: bool = Field(default=True, description="Same sha256 of the input bytes.")
    near: bool = Field(default=True, description="Perceptual hashes within max_distance bits.")
    max_distance: int = Field(default=4, ge=0, le=16, description="Largest pHash Hamming distance that counts as near.")


class HoldoutConfig(_Config):
    """Images that must never enter the corpus (benchmark test sets): rejected `holdout`."""

    lists: list[str] = Field(default_factory=list, description="Files made by `facecorpus holdout build`.")
    max_distance: int | None = Field(
        default=4, ge=0, le=16, description="pHash distance that still counts as the held-out image; null: sha256 only."
    )

    def resolve_paths(self, base: Path) -> None:
        self.lists = [_resolve(p, base) for p in self.lists]


class ValidationConfig(_Config):
    """Checks on every generated record, dedup and hold-out. See docs/trust.md."""

    min_answer_chars: PositiveInt = Field(default=2, description="Shorter answers are rejected `answer_too_short`.")
    max_answer_chars: PositiveInt = Field(default=4000, description="Longer answers are rejected `answer_too_long`.")
    min_caption_chars: PositiveInt = 3
    max_caption_chars: PositiveInt = 2000
    language: Literal["en"] | None = Field(default="en", description="Expected language of the text; null: no check.")
    refusals: Literal["reject", "off"] = Field(default="reject", description="Refusals and hedges left after the re-ask.")
    label_conflict: Literal["reject", "flag", "off"] = Field(
        default="reject", description="Text that contradicts a dataset label: reject, or keep with a flag."
    )
    age_tolerance_years: int = Field(default=2, ge=0, le=30, description="Slack around a label's age bin.")
    source_copy: Literal["reject", "off"] = Field(
        default="reject", description="Text copying the untrusted source text (alt-text) or doing what it orders: reject."
    )
    source_copy_words: int = Field(
        default=8, ge=3, le=100, description="Consecutive words shared with the source text that count as copying."
    )
    skippable_generators: list[str] = Field(
        default_factory=lambda: ["templates"],
        description="Generators allowed to leave out a requested category (flagged `skipped:<category>`).",
    )
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    holdout: HoldoutConfig = Field(default_factory=HoldoutConfig)


LOCAL_RUNNERS = frozenset({"FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "PrismRunner"})


def is_local_runner(runner: str) -> bool:
    """True for Beam runners whose workers are this machine (they share its disk and loopback)."""
    return runner in LOCAL_RUNNERS


class RunnerConfig(_Config):
    runner: str = Field(default="FnApiRunner", description="Beam runner: FnApiRunner locally, DataflowRunner in GCP.")
    options: list[str] = Field(default_factory=list, description="Extra Beam pipeline options, e.g. --project=…")


class Recipe(_Config):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    sources: list[Source] = Field(min_length=1)
    image: ImageConfig = Field(default_factory=ImageConfig)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)

    def canonical_json(self) -> str:
        """The recipe as canonical JSON, without execution details that do not change what is written
        (`EXECUTION_ONLY`): a run moved from the local runner to Dataflow, or resumed with more
        concurrency, another model-store path or a longer timeout, keeps its identity."""
        data = self.model_dump(mode="json")
        data["sources"] = [source_identity(s) for s in self.sources]
        return json.dumps(_without(data, EXECUTION_ONLY), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


#: recipe keys that change how a run executes, not what it writes; left out of the recipe's identity
#: (its sha256 and the resume fingerprint). Cached LLM answers are content-addressed, so the cache's
#: place and the request pacing do not change them either.
EXECUTION_ONLY: dict[str, Any] = {
    "runner": True,
    "output": {"grouping": True},
    "faces": {"models_dir": True, "batch_size": True, "model_copies": True, "device_id": True},
    "generation": {
        "openai": {"timeout_s": True, "concurrency": True, "batch_requests": True, "preflight": True},
        "retries": True,
        "limits": True,
        "cache": True,
    },
}
#: the same for a web source's `download` section: pacing and politeness, not what an image becomes
DOWNLOAD_EXECUTION_ONLY = ("threads", "per_domain", "timeout_s", "deadline_s", "retries", "backoff_s",
                           "max_backoff_s", "batch_size")


def _without(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        rule = spec.get(k)
        if rule is True:
            continue
        out[k] = _without(v, rule) if isinstance(rule, dict) and isinstance(v, dict) else v
    return out


def source_identity(source: BaseModel) -> dict[str, Any]:
    """A source's settings as JSON, without its download pacing (`DOWNLOAD_EXECUTION_ONLY`)."""
    data = source.model_dump(mode="json")
    if isinstance(data.get("download"), dict):
        data["download"] = {k: v for k, v in data["download"].items() if k not in DOWNLOAD_EXECUTION_ONLY}
    return data


# --------------------------------------------------------------------------------------------- loading


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=value` override in place; list items are addressed by index (`sources.0.split`)."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment!r}: expected dotted.key=value")
    dotted, raw = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise UserError(f"--set {assignment!r}: empty key segment")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {dotted}: '{part}' is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UserError(f"--set {dotted}: '{'.'.join(parts[:i])}' is a value, not a section")


def _format_loc(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    out: list[str] = []
    node: Any = data
    for part in loc:
        # pydantic adds the discriminator's value (e.g. 'fairface') to the location of union members
        if isinstance(node, dict) and isinstance(part, str) and part not in node and node.get("type") == part:
            continue
        out.append(f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part)))
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return "".join(out) or "(top level)"


def validate_recipe(data: Any, origin: str, base_dir: Path) -> Recipe:
    if not isinstance(data, dict):
        raise UserError(f"recipe {origin}: expected a mapping of keys at the top level")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = _format_loc(tuple(err["loc"]), data)
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] not in ("extra_forbidden", "missing") and "input" in err:
            got = err["input"]
            msg += f" (got {got!r})" if not isinstance(got, dict | list) else ""
        more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise UserError(f"recipe {origin}: {where}: {msg}{more}") from None
    for src in recipe.sources:
        src.resolve_paths(base_dir)
    recipe.validation.holdout.resolve_paths(base_dir)
    return recipe


def read_recipe_text(p: Path) -> str:
    """The recipe file's text (UTF-8, or what its BOM says); one UserError line when it cannot be read."""
    if p.is_dir():
        raise UserError(f"recipe {p} is a folder; give the path of the recipe's YAML file")
    if not p.is_file():
        raise UserError(f"recipe file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserError(f"recipe {p}: cannot be read ({e.strerror})") from None
    return decode_text(data, "utf-8", f"recipe {p}", "save the recipe as UTF-8")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML file, apply overrides, validate. Raises UserError with one clear line."""
    p = Path(path)
    try:
        data = yaml.safe_load(read_recipe_text(p))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"recipe {p}:{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        data = {}
    for assignment in overrides or []:
        if isinstance(data, dict):
            apply_override(data, assignment)
    return validate_recipe(data, str(p), p.resolve().parent)
