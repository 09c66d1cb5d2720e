"""LAION-Face and FaceCaption-15M: parquet lists of web image URLs, downloaded inside the pipeline.

    parquet files ─▶ (file, row group) units ─▶ read rows, keep the LAION-Face ids
        ─▶ [limit] ─▶ row filters (NSFW, declared size, similarity)     ─▶ rejects (stage source)
        ─▶ group by SAMPLE_ID (+ FaRL detections)  → first row wins      ─▶ rejects duplicate_id
        ─▶ keyed by host lane ─▶ PoliteDownload (download/, stateful)    ─▶ rejects (stage download)
        ─▶ WorkItems: data = image bytes; SourceInfo.id = SAMPLE_ID, .text = alt-text (untrusted),
           .licence = LICENSE, .extra = similarity, NSFW, declared size; given faces on .given_faces

Every row that passes the id filter is one input (`count_inputs`); rows outside the id list are not
part of the dataset and are not counted. Column names are matched case-insensitively.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils.shared import Shared

from ..download.download_rows import STAGE as DOWNLOAD_STAGE
from ..download.download_rows import PoliteDownload, Scalar, WebRow, item_from_bytes, key_by_lane, row_reject
from ..errors import UserError
from ..keys import make_key
from ..records import Reject
from ..rejection import Rejection
from ..stage import REJECTS, Counters, count_inputs, make_reject
from .config import FaceCaptionSource, Img2DatasetSource
from .files import list_files
from .laion_columns import (
    IMAGE_EXTENSIONS,
    ColumnPlan,
    LaionLike,
    WebListSource,
    img2dataset_failure,
    parquet_files,
    parse_box,
    sample_id_of,
    scalar_of,
    schema_names,
)
from .laion_face_meta import IdList, iter_detections
from .laion_ids import shared_id_list
from .webdataset import iter_tar_samples

# ------------------------------------------------------------------------------------------- reading


class _ReadRowGroup(beam.DoFn):
    """(file index, file, row group) → WebRows of the rows in the id list; bad rows → rejects."""

    def __init__(self, cfg: WebListSource) -> None:
        self.cfg = cfg
        self._shared = Shared()
        self._ids: IdList | None = None

    def setup(self) -> None:
        if self.cfg.ids:
            # one object per process, one memory-mapped copy per machine (50M ids ≈ 400 MB): sources/laion_ids.py
            self._holder = shared_id_list(self._shared, self.cfg.ids, self.cfg.ids_parts)
            self._ids = self._holder.ids

    def process(self, unit: tuple[int, str, int]) -> Iterator[Any]:
        file_index, path, row_group = unit
        cfg = self.cfg
        with FileSystems.open(path) as f:
            pf = pq.ParquetFile(f)
            plan = ColumnPlan(cfg, pf.schema_arrow.names, path)
            table = pf.read_row_group(row_group, columns=plan.names())
        offset = sum(pf.metadata.row_group(i).num_rows for i in range(row_group))
        positions = pa.array(range(offset, offset + table.num_rows), pa.int64())
        if self._ids is not None and plan.id is not None:
            mask = pa.array(self._ids.mask(table.column(plan.id)))
            table, positions = table.filter(mask), positions.filter(mask)
        name = posixpath.basename(path)
        cols = {c: table.column(c).to_pylist() for c in plan.names()}
        for i, pos in enumerate(positions.to_pylist()):
            values = {c: cols[c][i] for c in cols}
            sid = sample_id_of(values.get(plan.id) if plan.id else None, f"{name}:{pos}")
            yield self._row(cfg, plan, values, sid, path, (file_index, pos))

    def _row(self, cfg: WebListSource, plan: ColumnPlan, values: dict[str, Any], sid: str | None, path: str,
             order: tuple[int, int]) -> WebRow:
        def get(column: str | None) -> Any:
            return values.get(column) if column is not None else None

        name = posixpath.basename(path)
        url = get(plan.url)
        extra: dict[str, Scalar] = {"parquet": name, "row": order[1]}
        for key, column in (("declared_width", plan.width), ("declared_height", plan.height),
                            ("similarity", plan.similarity), ("nsfw", plan.nsfw), ("license", plan.licence)):
            if column is not None:
                extra[key] = scalar_of(get(column))
        licence = cfg.licence or (extra.get("license") if isinstance(extra.get("license"), str) and extra["license"] != "?" else None)
        row = WebRow(
            source_id=sid or f"{name}:{order[1]}", url=url.strip() if isinstance(url, str) else "", dataset=cfg.dataset,
            order=order, split=cfg.split, licence=licence, text=scalar_of(get(plan.text)) if plan.text else None,
            extra=extra,
        )
        if row.text is not None and not isinstance(row.text, str):
            row.text = str(row.text)
        if isinstance(cfg, FaceCaptionSource):
            caption = get(plan.caption)
            row.source_caption = str(caption) if caption is not None else None
            try:
                row.given_faces = [{"box": b, "score": None, "landmarks5": None} for b in parse_box(get(plan.box), cfg.box_format)]
                row.given_faces_source = "facecaption15m"
            except (ValueError, TypeError, KeyError, json.JSONDecodeError) as e:
                row.extra["box_error"] = str(e)[:200]
        if isinstance(cfg, Img2DatasetSource):
            row.archive = path[: -len(".parquet")] + ".tar"
            row.member = str(get(plan.member))
            status = get(plan.status)
            if status != "success":
                row.fetch_error = img2dataset_failure(status, get(plan.error))
        if sid is None:
            row.extra["id_error"] = "unreadable id"
        return row


def _order_key(row: WebRow) -> tuple[int, int]:
    return row.order


class _FilterRows(beam.DoFn):
    """Counts every row as an input and rejects the ones the recipe's filters exclude (stage source)."""

    def __init__(self, cfg: WebListSource) -> None:
        self.cfg = cfg

    def process(self, row: WebRow) -> Iterator[Any]:
        count_inputs()
        why = self.refusal(row)
        if why is None:
            Counters("source").kept()
            yield row
        else:
            stage, rejection = why
            Counters(stage).rejected(rejection.reason)
            yield beam.pvalue.TaggedOutput(REJECTS, row_reject(row, rejection, stage))

    def refusal(self, row: WebRow) -> tuple[str, Rejection] | None:
        """(stage, why) when the row must not go on."""
        cfg, x = self.cfg, row.extra
        if "id_error" in x:
            return "source", Rejection("bad_row", f"{x['parquet']} row {x['row']}: the id cell is not a usable id")
        if not row.url and not isinstance(cfg, Img2DatasetSource):
            return "source", Rejection("missing_url", f"{x['parquet']} row {x['row']} has no URL")
        if isinstance(cfg, LaionLike) and cfg.nsfw is not None:
            tag = x.get("nsfw")
            if tag not in cfg.nsfw:
                return "source", Rejection("nsfw", f"NSFW tag {tag!r} is not among the kept tags {cfg.nsfw}")
        if isinstance(cfg, LaionLike) and cfg.min_similarity is not None:
            sim = x.get("similarity")
            if not isinstance(sim, int | float) or sim < cfg.min_similarity:
                return "source", Rejection("low_similarity", f"similarity {sim!r} is below min_similarity {cfg.min_similarity}")
        min_side = getattr(cfg, "min_side", None)
        if min_side is not None:
            w, h = x.get("declared_width"), x.get("declared_height")
            if isinstance(w, int | float) and isinstance(h, int | float) and min(w, h) < min_side:
                return "source", Rejection("declared_too_small", f"declared size {w}x{h} is below min_side {min_side}")
        if "box_error" in x:
            return "source", Rejection("bad_box", f"the face box cannot be read: {x['box_error']}")
        if row.fetch_error is not None:
            return DOWNLOAD_STAGE, row.fetch_error
        return None


class _FirstOfId(beam.DoFn):
    """(id, rows[, detections]) → the first row of each id (duplicates rejected), with FaRL faces attached."""

    def process(self, element: tuple[str, Any]) -> Iterator[Any]:
        sid, grouped = element
        if isinstance(grouped, dict):  # CoGroupByKey with detections
            rows, detections = list(grouped["rows"]), list(grouped["det"])
        else:
            rows, detections = list(grouped), []
        if rows:  # (no rows: detections of a sample that is not in this run)
            yield from self._first(sid, rows, detections)

    def _first(self, sid: str, rows: list[WebRow], detections: list[list[dict]]) -> Iterator[Any]:
        rows.sort(key=_order_key)
        first, *dupes = rows
        counters = Counters("source")
        for d in dupes:
            counters.rejected("duplicate_id")
            why = f"id {sid} appears again at {d.extra.get('parquet')} row {d.extra.get('row')}; the first row is kept"
            yield beam.pvalue.TaggedOutput(REJECTS, make_reject(
                None, "source", Rejection("duplicate_id", why), source_id=d.source_id, dataset=d.dataset, url=d.url or None,
            ))
        if detections and first.given_faces is None:
            first.given_faces = detections[0]
            first.given_faces_source = "farl"
        yield first


def _detection_files(path: str) -> list[str]:
    if any(c in path for c in "*?[") or not path.lower().endswith((".pth", ".pt", ".parquet")):
        files = list_files(path, [".pth", ".pt", ".parquet"])
    else:
        files = [path] if FileSystems.exists(path) else []
    if not files:
        raise UserError(f"no detection files (.pth or .parquet) found at {path}")
    return files


class _SkipFinishedRows(beam.DoFn):
    """Resume: rows whose key the output already holds (written, or rejected for good) are not downloaded again."""

    def process(self, row: WebRow, finished: Any) -> Iterator[WebRow]:
        if list(finished[make_key(row.dataset, row.source_id)]):
            Counters("resume").count("skipped")
        else:
            yield row


class _ReadArchive(beam.DoFn):
    """(tar of an img2dataset shard, its rows) → WorkItems from the tar's members; no network."""

    def process(self, element: tuple[str, Iterable[WebRow]]) -> Iterator[Any]:
        archive, rows = element
        want = {row.member: row for row in rows}
        counters = Counters(DOWNLOAD_STAGE)
        problem = None
        try:
            with FileSystems.open(archive) as f:
                for member, parts in iter_tar_samples(f):
                    row = want.pop(member.rsplit("/", 1)[-1], None)
                    if row is None:
                        continue
                    ext = next((e for e in IMAGE_EXTENSIONS if e in parts), None)
                    made = item_from_bytes(row, parts[ext], None) if ext else row_reject(
                        row, Rejection("missing_file", f"{posixpath.basename(archive)} holds {member} without an image"))
                    yield from self._emit(made, counters)
        except (OSError, EOFError, tarfile.TarError) as e:
            problem = f"{posixpath.basename(archive)} cannot be read to the end: {type(e).__name__}: {e}"
        for row in want.values():  # listed as downloaded, but not (readable) in the tar
            detail = problem or f"{posixpath.basename(archive)} has no member {row.member}, which its parquet lists"
            yield from self._emit(row_reject(row, Rejection("missing_file", detail)), counters)

    @staticmethod
    def _emit(made: Any, counters: Counters) -> Iterator[Any]:
        if isinstance(made, Reject):
            counters.rejected(made.reason)
            yield beam.pvalue.TaggedOutput(REJECTS, made)
        else:
            counters.kept()
            yield made


class ReadWebList(beam.PTransform):
    """A LAION or FaceCaption-15M source: parquet rows → downloaded WorkItems and rejects.

    `finished` (resume): (key, status) pairs already in the output; those rows skip the download, so
    `--resume --retry-rejects` fetches only the URLs whose rejects were retryable.
    """

    def __init__(self, cfg: WebListSource, finished: beam.PCollection | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.finished = finished

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        cfg = self.cfg
        files = parquet_files(cfg.path)
        units: list[tuple[int, str, int]] = []
        for i, path in enumerate(files):
            names, groups = schema_names(path)
            ColumnPlan(cfg, names, path)  # fail before the run when a file lacks a needed column
            units += [(i, path, g) for g in range(groups)]
        if cfg.ids and not FileSystems.exists(cfg.ids):
            raise UserError(f"id list not found: {cfg.ids}")
        read = (
            pbegin
            | "RowGroups" >> beam.Create(units)
            | "SpreadRowGroups" >> beam.Reshuffle()
            | "ReadRows" >> beam.ParDo(_ReadRowGroup(cfg))
        )
        if cfg.limit is not None:
            read = (
                read
                | "Limit" >> beam.combiners.Top.Of(cfg.limit, key=_order_key, reverse=True)
                | "Unlimit" >> beam.FlatMap(lambda rows: rows)
            )
        filtered = read | "FilterRows" >> beam.ParDo(_FilterRows(cfg)).with_outputs(REJECTS, main="main")
        keyed = filtered["main"] | "ById" >> beam.Map(lambda r: (r.source_id, r))
        detections = getattr(cfg, "detections", None)
        if detections:
            det = (
                pbegin
                | "DetectionFiles" >> beam.Create(_detection_files(detections))
                | "SpreadDetections" >> beam.Reshuffle()
                | "ReadDetections" >> beam.FlatMap(lambda p: ((str(s), faces) for s, faces in iter_detections(p)))
            )
            grouped = {"rows": keyed, "det": det} | "JoinDetections" >> beam.CoGroupByKey()
        else:
            grouped = keyed | "GroupById" >> beam.GroupByKey()
        unique = grouped | "FirstOfId" >> beam.ParDo(_FirstOfId()).with_outputs(REJECTS, main="main")
        rows = unique["main"]
        if self.finished is not None:
            rows = rows | "SkipFinished" >> beam.ParDo(_SkipFinishedRows(), finished=beam.pvalue.AsMultiMap(self.finished))
        if isinstance(cfg, Img2DatasetSource):  # already downloaded: read the images from img2dataset's tars
            downloaded = (
                rows
                | "ByArchive" >> beam.Map(lambda r: (r.archive, r))
                | "GroupByArchive" >> beam.GroupByKey()
                # img2dataset's download, read back: labelled as the stage its failures' rejects name
                | "download" >> beam.ParDo(_ReadArchive()).with_outputs(REJECTS, main="main")
            )
        else:
            downloaded = key_by_lane(rows, cfg.download.per_domain) | "download" >> beam.ParDo(
                PoliteDownload(cfg.download)).with_outputs(REJECTS, main="main")
        rejects = (filtered[REJECTS], unique[REJECTS], downloaded[REJECTS]) | "Rejects" >> beam.Flatten()
        return {"main": downloaded["main"], "rejects": rejects}


class ReadLaion(ReadWebList):
    """Source `laion`: LAION-400M metadata parquet (optionally only LAION-Face ids, FaRL detections)."""


class ReadFaceCaption(ReadWebList):
    """Source `facecaption`: FaceCaption-15M parquet; its face box replaces detection."""


class ReadImg2Dataset(ReadWebList):
    """Source `img2dataset`: an img2dataset output folder (parquet + tar per shard); nothing is downloaded."""

