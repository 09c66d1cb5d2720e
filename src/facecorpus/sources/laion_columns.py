"""What the columns of a LAION-style parquet row mean: which column is which (any case, a recipe's
choice or the first of the usual names), ids, scalars, face boxes, and img2dataset's failure messages.
Read by sources/laion.py."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ..download.download_rows import Scalar
from ..errors import UserError
from ..rejection import Rejection
from .config import FaceCaptionSource, Img2DatasetSource, LaionSource
from .files import list_files

LAION_COLUMNS = ("sample_id", "url", "text", "height", "width", "license", "nsfw", "similarity")
URL_CANDIDATES = ("url", "image_url", "img_url")
BOX_CANDIDATES = ("face_box", "face_bbox", "facebox", "bbox", "box")
ID_CANDIDATES = ("sample_id", "id", "key")

WebListSource = LaionSource | FaceCaptionSource | Img2DatasetSource
LaionLike = LaionSource | Img2DatasetSource  # sources with LAION's NSFW/similarity columns and FaRL detections
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def parquet_files(path: str) -> list[str]:
    """A .parquet file, or every .parquet under a folder / matching a glob, sorted."""
    if path.lower().endswith(".parquet") and not any(c in path for c in "*?["):
        if not FileSystems.exists(path):
            raise UserError(f"parquet file not found: {path}")
        return [path]
    files = list_files(path, [".parquet"])
    if not files:
        raise UserError(f"no .parquet files found at {path}")
    return files


def _column_map(names: Iterable[str]) -> dict[str, str]:
    """lower-case name → the file's spelling (LAION copies differ in case)."""
    return {n.lower(): n for n in names}


def _pick(columns: dict[str, str], wanted: str | None, candidates: tuple[str, ...], what: str, path: str,
          required: bool) -> str | None:
    if wanted is not None:
        if wanted.lower() not in columns:
            raise UserError(f"{path}: no column {wanted!r} ({what}); columns are {sorted(columns.values())}")
        return columns[wanted.lower()]
    found = next((columns[c] for c in candidates if c in columns), None)
    if found is None and required:
        raise UserError(f"{path}: no {what} column (looked for {', '.join(candidates)}); columns are {sorted(columns.values())}")
    return found


class ColumnPlan:
    """Which parquet columns a source reads, resolved once per file against its schema."""

    def __init__(self, cfg: WebListSource, names: Iterable[str], path: str) -> None:
        cols = _column_map(names)
        self.box = self.caption = self.member = self.status = self.error = None
        if isinstance(cfg, LaionSource):
            self.url = _pick(cols, None, ("url",), "URL", path, True)
            self.id = _pick(cols, None, ("sample_id",), "SAMPLE_ID", path, cfg.ids is not None or cfg.detections is not None)
            self.text = cols.get("text")
        elif isinstance(cfg, Img2DatasetSource):
            # img2dataset writes key/status/error_message/url/caption, plus the columns it was told to save
            self.member = _pick(cols, None, ("key",), "key (img2dataset)", path, True)
            self.status = _pick(cols, None, ("status",), "status (img2dataset)", path, True)
            self.error = cols.get("error_message")
            self.url = _pick(cols, None, ("url",), "url", path, True)
            self.id = _pick(cols, None, ("sample_id",), "SAMPLE_ID (img2dataset --save_additional_columns)", path,
                            cfg.ids is not None or cfg.detections is not None) or self.member
            self.text = cols.get("caption")
        else:
            self.url = _pick(cols, cfg.url_column, URL_CANDIDATES, "url", path, True)
            self.id = _pick(cols, cfg.id_column, ID_CANDIDATES, "id", path, cfg.ids is not None)
            self.text = _pick(cols, cfg.text_column, ("laion_caption", "text", "caption"), "alt-text", path, False)
            self.box = _pick(cols, cfg.box_column, BOX_CANDIDATES, "face box", path, True)
            self.caption = _pick(cols, cfg.caption_column, ("face_caption",), "face caption", path, False)
        # img2dataset's width/height are its output sizes, not LAION's declared ones
        self.width, self.height = (None, None) if isinstance(cfg, Img2DatasetSource) else (cols.get("width"), cols.get("height"))
        self.licence, self.nsfw, self.similarity = cols.get("license"), cols.get("nsfw"), cols.get("similarity")
        if getattr(cfg, "min_side", None) is not None and (self.width is None or self.height is None):
            raise UserError(f"{path}: min_side needs WIDTH and HEIGHT columns, which this file lacks")
        if isinstance(cfg, LaionLike):
            if cfg.nsfw is not None and self.nsfw is None:
                raise UserError(f"{path}: the nsfw filter needs an NSFW column; set nsfw: null to read without it")
            if cfg.min_similarity is not None and self.similarity is None:
                raise UserError(f"{path}: min_similarity needs a similarity column")

    def names(self) -> list[str]:
        wanted = [self.url, self.id, self.text, self.box, self.caption, self.width, self.height, self.licence,
                  self.nsfw, self.similarity, self.member, self.status, self.error]
        return list(dict.fromkeys(c for c in wanted if c is not None))


def schema_names(path: str) -> tuple[list[str], int]:
    with FileSystems.open(path) as f:
        pf = pq.ParquetFile(f)
        return pf.schema_arrow.names, pf.metadata.num_row_groups


def scalar_of(v: Any) -> Scalar:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


def sample_id_of(v: Any, fallback: str) -> str | None:
    """SAMPLE_IDs are integers (sometimes stored as floats or strings); other ids are kept as text."""
    if v is None:
        return fallback
    if isinstance(v, float):
        return str(int(v)) if math.isfinite(v) and v == int(v) else None
    s = str(v).strip()
    return s or None


def parse_box(value: Any, fmt: str) -> list[list[float]]:
    """One or several face boxes from a parquet cell (list, nested list, or their JSON text) as xyxy."""
    if isinstance(value, str):
        value = json.loads(value.replace("(", "[").replace(")", "]")) if value.strip() else None
    if value is None:
        raise ValueError("no box")
    if isinstance(value, dict):
        value = [value[k] for k in ("x1", "y1", "x2", "y2")] if "x1" in value else list(value.values())
    boxes = value if value and isinstance(value[0], list | tuple) else [value]
    out = []
    for b in boxes:
        nums = [float(x) for x in b][:4]
        if len(nums) != 4 or not all(math.isfinite(x) for x in nums):
            raise ValueError(f"not 4 numbers: {b!r}")
        x1, y1, a, b2 = nums
        x2, y2 = (x1 + a, y1 + b2) if fmt == "xywh" else (a, b2)
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"empty box {nums}")
        out.append([x1, y1, x2, y2])
    return out


# img2dataset keeps urllib's error text; these patterns give it our reasons (first match wins)
_IMG2DATASET_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.IGNORECASE), r) for p, r in (
    (r"X-Robots-Tag", "robots_optout"),
    (r"timed out|timeout", "timeout"),
    (r"Name or service not known|name resolution|nodename nor servname|No address associated|getaddrinfo", "dns"),
    (r"certificate|SSL|TLS", "tls"),
    (r"Connection refused|Connection reset|Remote end closed|EOF occurred|Connection aborted|unreachable", "connection"),
    (r"unknown url type|no host given|URL can't contain control characters|Invalid URL", "bad_url"),
    (r"decod|cannot identify|not an image", "not_image"),
    (r"image too small", "too_small"),
    (r"area too large|too large", "too_large"),
    (r"aspect ratio", "bad_aspect_ratio"),
    (r"hash mismatch", "hash_mismatch"),
))


def img2dataset_failure(status: Any, message: Any) -> Rejection:
    """Why img2dataset did not download a row (its `status`, `error_message`): never retryable here."""
    text = str(message or status or "no error message")
    http = re.search(r"HTTP Error (\d{3})", text)
    reason = f"http_{http.group(1)}" if http else next(
        (r for pattern, r in _IMG2DATASET_ERRORS if pattern.search(text)), "download_failed"
    )
    return Rejection(reason, f"img2dataset {status}: {text}"[:500])
