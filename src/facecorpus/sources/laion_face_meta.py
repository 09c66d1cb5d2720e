"""LAION-Face metadata published by FaRL: the SAMPLE_ID list and the per-sample face detections.

- `laion_face_ids.pth`: a torch file holding 32 parts (one per LAION-400M metadata parquet), each an
  iterable of integer SAMPLE_IDs. LAION-Face 50M is all parts; LAION-Face 20M is parts
  0,2,5,8,13,15,17,18,21,22,24,25,28. `read_id_list` also takes .npy, .parquet and text files, and
  `convert_ids` turns the .pth into a .npy once (so workers need no torch).
- `sample2detect_<part>.pth`: a dict int(SAMPLE_ID) → list of (box, 5 landmarks, score) from
  RetinaFace (batch-face), in pixel coordinates of the image as img2dataset stored it (resize_mode no).
  `convert_detections` turns them into parquet (sample_id, faces) that Beam reads in parallel.

.pth files are pickles: they are loaded with torch's `weights_only` loader, allowing only numpy array
and scalar types on top of tensors, so a tampered file cannot run code.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ..errors import UserError
from .files import read_bytes

LAION_FACE_20M_PARTS = (0, 2, 5, 8, 13, 15, 17, 18, 21, 22, 24, 25, 28)
ID_COLUMN_NAMES = ("sample_id", "id", "ids")

# numpy objects a pickled array or scalar needs; nothing else is allowed out of a .pth
_NUMPY_SAFE = {
    "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
}
_NUMPY_DTYPES = {"Float16DType", "Float32DType", "Float64DType", "Int8DType", "Int16DType", "Int32DType",
                 "Int64DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "BoolDType"}

FACES_TYPE = pa.list_(pa.struct([
    ("box", pa.list_(pa.float32(), 4)),
    ("landmarks5", pa.list_(pa.float32(), 10)),
    ("score", pa.float32()),
]))
DETECTIONS_SCHEMA = pa.schema([("sample_id", pa.int64()), ("faces", FACES_TYPE)])


# ------------------------------------------------------------------------------------------ torch files


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        from ..extras import missing_extra

        raise missing_extra("train", "reading a .pth file",
                            "or convert it once where torch is installed: facecorpus laion convert-ids") from None
    return torch


def _numpy_safe_globals() -> dict[str, Any]:
    """Importable numpy objects an array or scalar pickle refers to, by dotted name."""
    found = {}
    names = list(_NUMPY_SAFE) + [f"numpy.dtypes.{d}" for d in _NUMPY_DTYPES]
    for name in names:
        module, _, attr = name.rpartition(".")
        try:
            found[name] = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    return found


def load_torch_file(path: str) -> Any:
    """Unpickle a .pth with torch's weights-only loader plus numpy arrays/scalars; refuse anything else."""
    torch = _import_torch()
    data = read_bytes(path)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - weights_only refused some global; see which
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
        except Exception:  # noqa: BLE001
            raise UserError(f"{path}: not a readable torch file ({type(first).__name__})") from None
        allowed = _numpy_safe_globals()
        refused = sorted(n for n in names if n not in allowed)
        if refused:
            raise UserError(
                f"{path}: holds pickled objects other than tensors and numpy arrays ({', '.join(refused[:5])}); "
                "refusing to unpickle it, since that could run code"
            ) from None
        # the listing above does not name dtype classes nested in arrays, so allow all numeric numpy types
        with torch.serialization.safe_globals(list(allowed.values())):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _as_int_array(values: Any) -> np.ndarray:
    if hasattr(values, "numpy"):  # a torch tensor
        values = values.numpy()
    arr = np.asarray(list(values) if isinstance(values, set | frozenset) else values)
    if arr.dtype.kind == "f":
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise UserError("the id list holds non-integer numbers")
    if arr.dtype.kind not in "iuf":
        arr = np.asarray([int(v) for v in arr.ravel()])
    return arr.astype(np.int64).ravel()


def ids_from_pth(path: str, parts: Iterable[int] | None = None) -> np.ndarray:
    """SAMPLE_IDs from FaRL's laion_face_ids.pth (a sequence or dict of parts), optionally only some parts."""
    obj = load_torch_file(path)
    if isinstance(obj, dict):
        by_part = {int(k): v for k, v in obj.items()}
    elif isinstance(obj, list | tuple) and obj and not np.isscalar(obj[0]):
        by_part = dict(enumerate(obj))
    else:  # one flat list or tensor of ids
        if parts is not None:
            raise UserError(f"{path} is one flat id list, it has no parts to choose from (drop ids_parts)")
        return _as_int_array(obj)
    wanted = list(by_part) if parts is None else list(parts)
    missing = [p for p in wanted if p not in by_part]
    if missing:
        raise UserError(f"{path} has parts {sorted(by_part)[:3]}…{sorted(by_part)[-1:]}; asked for missing parts {missing}")
    return np.concatenate([_as_int_array(by_part[p]) for p in wanted]) if wanted else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------------------------- id list


class IdList:
    """A set of SAMPLE_IDs, held as a sorted int64 array (50M ids ≈ 400 MB) plus any non-integer ids."""

    def __init__(self, ints: np.ndarray, others: Iterable[str] = ()) -> None:
        self.ints = np.unique(ints.astype(np.int64))
        self.others = frozenset(others)

    @classmethod
    def presorted(cls, ints: np.ndarray) -> IdList:
        """An IdList over an array that already is sorted, unique int64 (a memory map stays one)."""
        ids = cls.__new__(cls)
        ids.ints, ids.others = ints, frozenset()
        return ids

    def __len__(self) -> int:
        return int(self.ints.size) + len(self.others)

    def contains_ints(self, values: np.ndarray) -> np.ndarray:
        """Vectorised membership for integer ids."""
        if self.ints.size == 0:
            return np.zeros(values.shape, bool)
        pos = np.searchsorted(self.ints, values)
        pos[pos == self.ints.size] = 0
        return self.ints[pos] == values

    def mask(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Boolean mask over a parquet id column (integers, integral floats or strings)."""
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            filled = pc.fill_null(column, -1)
            return self.contains_ints(np.asarray(filled.to_numpy(zero_copy_only=False)).astype(np.int64)) & ~np.asarray(
                pc.is_null(column).to_numpy(zero_copy_only=False)
            )
        out = np.zeros(len(column), bool)
        for i, v in enumerate(column.to_pylist()):
            if v is None:
                continue
            s = str(v).strip()
            if s.lstrip("-").isdigit():
                out[i] = bool(self.contains_ints(np.asarray([int(s)], np.int64))[0])
            else:
                out[i] = s in self.others
        return out


def _ids_from_table(table: pa.Table, path: str) -> IdList:
    names = {n.lower(): n for n in table.column_names}
    name = next((names[c] for c in ID_COLUMN_NAMES if c in names), None)
    if name is None:
        if table.num_columns != 1:
            raise UserError(f"{path}: no SAMPLE_ID column among {table.column_names}")
        name = table.column_names[0]
    col = table.column(name)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        return IdList(_as_int_array(col.drop_null().to_numpy()))
    return _ids_from_strings(str(v) for v in col.drop_null().to_pylist())


def _ids_from_strings(values: Iterable[str]) -> IdList:
    ints, others = [], []
    for v in values:
        v = v.strip()
        if not v:
            continue
        (ints if v.lstrip("-").isdigit() else others).append(int(v) if v.lstrip("-").isdigit() else v)
    return IdList(np.asarray(ints, np.int64), others)


def read_id_list(path: str, parts: Iterable[int] | None = None) -> IdList:
    """Load a SAMPLE_ID list: .npy, .parquet, .pth (torch), or text (.txt/.csv/.tsv, one id a line; a
    header line is skipped when it is not an id)."""
    if not FileSystems.exists(path):
        raise UserError(f"id list not found: {path}")
    lower = path.lower()
    if parts is not None and not lower.endswith((".pth", ".pt")):
        raise UserError(f"ids_parts only applies to a laion_face_ids.pth, not {path}")
    if lower.endswith((".pth", ".pt")):
        return IdList(ids_from_pth(path, parts))
    if lower.endswith(".npy"):
        try:
            arr = np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)
        except ValueError as e:
            raise UserError(f"{path}: not a plain numpy array ({e})") from None
        if arr.dtype.kind in "US":
            return _ids_from_strings(str(v) for v in arr.ravel())
        return IdList(_as_int_array(arr))
    if lower.endswith(".parquet"):
        with FileSystems.open(path) as f:
            return _ids_from_table(pq.read_table(f), path)
    text = read_bytes(path).decode("utf-8-sig", errors="replace")
    first_cells = (line.split(",")[0].split("\t")[0] for line in text.splitlines())
    return _ids_from_strings(first_cells)


def convert_ids(pth: str, out: str, parts: Iterable[int] | None = None) -> int:
    """Write the ids of a laion_face_ids.pth (or some of its parts) as a sorted unique int64 .npy; returns the count."""
    ids = np.unique(ids_from_pth(pth, parts))
    buf = io.BytesIO()
    np.save(buf, ids, allow_pickle=False)
    if "://" not in out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    with FileSystems.create(out) as f:
        f.write(buf.getvalue())
    return int(ids.size)


# ------------------------------------------------------------------------------------------- detections


def _face_from_farl(entry: Any) -> dict | None:
    """One (box, landmarks, score) entry → {box, landmarks5, score}; None when it is not readable."""
    try:
        box, marks, score = entry[0], entry[1], entry[2]
        box = np.asarray(box.numpy() if hasattr(box, "numpy") else box, np.float64).ravel()[:4]
        marks = np.asarray(marks.numpy() if hasattr(marks, "numpy") else marks, np.float64).ravel()
        score = float(score.item() if hasattr(score, "item") else score)
    except (TypeError, IndexError, ValueError):
        return None
    if box.size != 4 or not np.all(np.isfinite(box)):
        return None
    return {
        "box": [float(v) for v in box],
        "landmarks5": [[float(marks[2 * i]), float(marks[2 * i + 1])] for i in range(5)] if marks.size == 10 else None,
        "score": min(1.0, max(0.0, score)),
    }


def iter_farl_pth(path: str) -> Iterator[tuple[int, list[dict]]]:
    """(SAMPLE_ID, faces) from a sample2detect_<part>.pth."""
    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict SAMPLE_ID → detections, found {type(obj).__name__}")
    for sid, entries in obj.items():
        faces = [f for f in (_face_from_farl(e) for e in (entries or [])) if f is not None]
        yield int(sid), faces


def iter_detections_parquet(path: str) -> Iterator[tuple[int, list[dict]]]:
    """(SAMPLE_ID, faces) from a parquet written by `convert_detections`."""
    with FileSystems.open(path) as f:
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        if not {"sample_id", "faces"} <= names:
            raise UserError(f"{path}: expected columns sample_id, faces (from `facecorpus laion convert-detections`)")
        for batch in pf.iter_batches(columns=["sample_id", "faces"], batch_size=65536):
            for sid, faces in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                if sid is None:
                    continue
                yield int(sid), [
                    {
                        "box": list(face["box"]),
                        "landmarks5": [[face["landmarks5"][2 * i], face["landmarks5"][2 * i + 1]] for i in range(5)]
                        if face.get("landmarks5") else None,
                        "score": face["score"] if face.get("score") is not None else 1.0,
                    }
                    for face in (faces or [])
                ]


def iter_detections(path: str) -> Iterator[tuple[int, list[dict]]]:
    """Detections from either format, by extension."""
    if path.lower().endswith((".pth", ".pt")):
        return iter_farl_pth(path)
    return iter_detections_parquet(path)


def convert_detections(paths: list[str], out: str, rows_per_group: int = 100_000) -> int:
    """Write FaRL sample2detect_*.pth files as one parquet (sample_id, faces); returns the number of samples."""
    n = 0
    with FileSystems.create(out) as f, pq.ParquetWriter(f, DETECTIONS_SCHEMA) as writer:
        ids: list[int] = []
        faces: list[list[dict]] = []

        def flush() -> None:
            rows = [
                [{"box": x["box"], "score": x["score"],
                  "landmarks5": [c for p in x["landmarks5"] for c in p] if x["landmarks5"] else None} for x in fs]
                for fs in faces
            ]
            writer.write_table(pa.table({"sample_id": pa.array(ids, pa.int64()), "faces": pa.array(rows, FACES_TYPE)}))
            ids.clear()
            faces.clear()

        for path in paths:
            for sid, found in iter_farl_pth(path):
                ids.append(sid)
                faces.append(found)
                n += 1
                if len(ids) >= rows_per_group:
                    flush()
        if ids:
            flush()
    return n
