"""LAION-Face metadata: id lists in every format (torch .pth included), FaRL detections, FaceCaption-15M boxes."""

from __future__ import annotations

import io
import sys

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image
from typer.testing import CliRunner

from facecorpus.cli import app
from facecorpus.errors import UserError
from facecorpus.sources.config import FaceCaptionSource, LaionSource
from facecorpus.sources.laion import ReadFaceCaption, ReadLaion
from facecorpus.sources.laion_columns import parse_box
from facecorpus.sources.laion_face_meta import (
    LAION_FACE_20M_PARTS,
    IdList,
    convert_detections,
    iter_detections,
    read_id_list,
)
from tests.support.loopback_web import WebServer, photo_bytes

TEST_DOWNLOAD = {"allow_networks": ["127.0.0.1/32"], "timeout_s": 2, "retries": 0, "batch_size": 8, "image_size": 640}


class RunsCode:
    """Pickles as a call to os.system: what a tampered .pth could carry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def cli(*args: str):
    """The real typer app, in-process (the command modules import torch and Beam: a subprocess costs seconds)."""
    return CliRunner().invoke(app, list(args))


def ints(ids) -> list[int]:
    return sorted(int(v) for v in ids.ints)


# --------------------------------------------------------------------------------------------- id lists


def test_id_lists_in_every_format(tmp_path):
    want = [5, 17, 1581282576]
    (tmp_path / "ids.txt").write_text("SAMPLE_ID\n5\n17\n\n1581282576\n")
    (tmp_path / "ids.csv").write_text("sample_id,part\n17,0\n5,0\n1581282576,3\n")
    np.save(tmp_path / "ids.npy", np.asarray(want, np.int64))
    pq.write_table(pa.table({"SAMPLE_ID": pa.array([5.0, 17.0, 1581282576.0]), "other": [1, 2, 3]}), tmp_path / "ids.parquet")
    pq.write_table(pa.table({"x": ["5", "17", "1581282576"]}), tmp_path / "one_column.parquet")
    for name in ("ids.txt", "ids.csv", "ids.npy", "ids.parquet", "one_column.parquet"):
        assert ints(read_id_list(str(tmp_path / name))) == want, name


def test_laion_face_ids_pth_with_parts_and_the_converter(tmp_path):
    # the published file: 32 parts, each an iterable of int SAMPLE_IDs (tensors or lists)
    parts = [torch.tensor([p * 100 + 1, p * 100 + 2]) if p % 2 else [p * 100 + 1, p * 100 + 2] for p in range(32)]
    torch.save(parts, tmp_path / "laion_face_ids.pth")
    everything = read_id_list(str(tmp_path / "laion_face_ids.pth"))
    assert len(everything) == 64
    subset = read_id_list(str(tmp_path / "laion_face_ids.pth"), parts=[0, 5])
    assert ints(subset) == [1, 2, 501, 502]
    proc = cli("laion", "convert-ids", str(tmp_path / "laion_face_ids.pth"), "--out", str(tmp_path / "20m.npy"), "--parts", "20m")
    assert proc.exit_code == 0, proc.output
    assert f"wrote {2 * len(LAION_FACE_20M_PARTS)} SAMPLE_IDs" in proc.output
    assert ints(read_id_list(str(tmp_path / "20m.npy"))) == sorted(p * 100 + k for p in LAION_FACE_20M_PARTS for k in (1, 2))
    with pytest.raises(UserError, match="missing parts"):
        read_id_list(str(tmp_path / "laion_face_ids.pth"), parts=[40])


def test_pth_without_torch_says_what_to_install(tmp_path, monkeypatch):
    torch.save([[1, 2]], tmp_path / "ids.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as on a machine without it
    with pytest.raises(UserError, match=r"needs the 'train' extra for torch.*pip install 'facecorpus\[train\]'"):
        read_id_list(str(tmp_path / "ids.pth"))


def test_a_pth_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({0: [1, 2], 1: RunsCode(str(marker))}, tmp_path / "tampered.pth")
    with pytest.raises(UserError, match="refusing to unpickle"):
        read_id_list(str(tmp_path / "tampered.pth"))
    assert not marker.exists()


def test_mask_handles_ints_floats_strings_and_nulls():
    ids = IdList(np.asarray([3, 9], np.int64), ["abc"])
    assert ids.mask(pa.array([1, 3, None, 9], pa.int64())).tolist() == [False, True, False, True]
    assert ids.mask(pa.array([3.0, 4.0, None])).tolist() == [True, False, False]
    assert ids.mask(pa.array(["9", "abc", "x", None])).tolist() == [True, True, False, False]


# ------------------------------------------------------------------------------------------- detections


def farl_pth(path, entries: dict) -> None:
    """A sample2detect_<part>.pth as FaRL publishes it: int id → [(box, landmarks (5,2), score)] with numpy."""
    torch.save({sid: [(np.asarray(b, np.float32), np.asarray(lm, np.float32), np.float32(s)) for b, lm, s in faces]
                for sid, faces in entries.items()}, path)


def test_farl_detections_pth_and_parquet_agree(tmp_path):
    lm = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]
    farl_pth(tmp_path / "sample2detect_0.pth", {7: [([10, 20, 110, 140, 0.99], lm, 0.99)], 8: []})
    from_pth = dict(iter_detections(str(tmp_path / "sample2detect_0.pth")))
    assert from_pth[7][0]["box"] == [10, 20, 110, 140] and from_pth[7][0]["landmarks5"][4] == [9, 10]
    assert from_pth[7][0]["score"] == pytest.approx(0.99) and from_pth[8] == []
    proc = cli("laion", "convert-detections", str(tmp_path / "sample2detect_0.pth"), "--out", str(tmp_path / "det.parquet"))
    assert proc.exit_code == 0, proc.output
    from_parquet = dict(iter_detections(str(tmp_path / "det.parquet")))
    assert from_parquet.keys() == from_pth.keys()
    assert from_parquet[7][0]["box"] == pytest.approx(from_pth[7][0]["box"])
    assert np.allclose(from_parquet[7][0]["landmarks5"], from_pth[7][0]["landmarks5"])
    assert convert_detections([str(tmp_path / "sample2detect_0.pth")], str(tmp_path / "again.parquet")) == 2


_COLLECTED: dict[str, list] = {"items": [], "rejects": []}


def _keep(kind: str, element) -> None:
    # a module-level function is pickled by reference, so the local runner appends to this very list
    _COLLECTED[kind].append(element)


def run_source(transform: beam.PTransform) -> tuple[list, list]:
    """Run a source transform on the local runner (in this process); returns (work items, rejects)."""
    _COLLECTED["items"].clear()
    _COLLECTED["rejects"].clear()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        result = p | transform
        result["main"] | "KeepItems" >> beam.Map(lambda e: _keep("items", e))
        result["rejects"] | "KeepRejects" >> beam.Map(lambda e: _keep("rejects", e))
    return list(_COLLECTED["items"]), list(_COLLECTED["rejects"])


@pytest.fixture(scope="module")
def web():
    with WebServer("127.0.0.1") as server:
        yield server


def test_farl_boxes_replace_detection_and_follow_the_resize(tmp_path, web):
    w0, h0 = Image.open(io.BytesIO(photo_bytes()["t1.jpg"][0])).size
    pq.write_table(pa.table({"sample_id": [7, 8], "URL": [web.url("/img/t1.jpg"), web.url("/img/hanks.png")],
                             "TEXT": ["group", "portrait"], "nsfw": ["UNLIKELY", "UNLIKELY"]}), tmp_path / "part.parquet")
    lm = [[100, 100], [140, 100], [120, 120], [105, 140], [135, 140]]
    farl_pth(tmp_path / "sample2detect_0.pth", {7: [([80, 60, 160, 180], lm, 0.98)], 99: [([1, 1, 5, 5], lm, 0.5)]})
    cfg = LaionSource(type="laion", path=str(tmp_path / "part.parquet"), detections=str(tmp_path / "sample2detect_0.pth"),
                      download=TEST_DOWNLOAD)
    items, rejects = run_source(ReadLaion(cfg))
    assert rejects == []
    by_id = {i.source.id: i for i in items}
    assert set(by_id) == {"7", "8"}  # id 99 has detections but no row: not an input
    t1 = by_id["7"]
    scale = 640 / max(w0, h0)
    assert t1.given_faces.source == "farl"
    assert t1.given_faces.size == [round(w0 * scale), round(h0 * scale)]
    (face,) = t1.given_faces.faces
    assert face["box"] == pytest.approx([80 * scale, 60 * scale, 160 * scale, 180 * scale], rel=1e-2)
    assert face["score"] == pytest.approx(0.98) and face["landmarks5"][2] == pytest.approx([120 * scale, 120 * scale], rel=1e-2)
    assert by_id["8"].given_faces is None


# ------------------------------------------------------------------------------------------ FaceCaption


def test_facecaption_rows_keep_caption_and_box(tmp_path, web):
    pq.write_table(pa.table({
        "url": [web.url("/img/astronaut.png"), web.url("/img/hanks.png"), web.url("/img/t1.jpg")],
        "face_box": ["[170.0, 30.0, 290.0, 190.0]", "[10, 12, 100, 108]", "not a box"],
        "laion_caption": ["astronaut portrait", "actor", "group"],
        "face_caption": ["A woman with short dark hair smiles.", "A man with short hair.", "x"],
    }), tmp_path / "FaceCaption-v1.parquet")
    cfg = FaceCaptionSource(type="facecaption", path=str(tmp_path / "FaceCaption-v1.parquet"), download=TEST_DOWNLOAD)
    items, rejects = run_source(ReadFaceCaption(cfg))
    assert [(r.source_id, r.reason) for r in rejects] == [("FaceCaption-v1.parquet:2", "bad_box")]
    by_id = {i.source.id: i for i in items}
    astro = by_id["FaceCaption-v1.parquet:0"]
    assert astro.source.dataset == "facecaption15m"
    assert astro.source.source_caption == "A woman with short dark hair smiles."
    assert astro.source.text == "astronaut portrait"
    assert astro.given_faces.faces == [{"box": [170.0, 30.0, 290.0, 190.0], "score": None, "landmarks5": None}]
    assert astro.given_faces.source == "facecaption15m"


def test_parse_box_forms():
    assert parse_box([1, 2, 3, 4], "xyxy") == [[1, 2, 3, 4]]
    assert parse_box("(1, 2, 10, 20)", "xywh") == [[1, 2, 11, 22]]
    assert parse_box([[0, 0, 5, 5], [6, 6, 9, 9]], "xyxy") == [[0, 0, 5, 5], [6, 6, 9, 9]]
    for bad in ("", "[1, 2, 3]", [5, 5, 1, 1], None):
        with pytest.raises(ValueError):
            parse_box(bad, "xyxy")


def test_the_id_list_is_loaded_once_per_process_and_mapped_once_per_machine(tmp_path, monkeypatch):
    """Two DoFn instances of one reader (as Beam deserialises them) share one IdList object, read from
    the source file once; another process (a fresh Shared handle) maps the machine's copy without
    reading the source again; a replaced list is read anew."""
    import pickle

    from facecorpus.sources import laion_ids
    from facecorpus.sources.laion import _ReadRowGroup

    monkeypatch.setenv(laion_ids.CACHE_ENV, str(tmp_path / "cache"))
    reads: list[str] = []
    real = laion_ids.read_id_list
    monkeypatch.setattr(laion_ids, "read_id_list", lambda path, parts=None: reads.append(path) or real(path, parts))
    np.save(tmp_path / "ids.npy", np.asarray([30, 10, 20, 10], np.int64))
    cfg = LaionSource(type="laion", path=str(tmp_path / "part.parquet"), ids=str(tmp_path / "ids.npy"))
    fn = _ReadRowGroup(cfg)
    first, second = pickle.loads(pickle.dumps(fn)), pickle.loads(pickle.dumps(fn))
    first.setup()
    second.setup()
    assert len(reads) == 1 and first._ids is second._ids
    assert isinstance(first._ids.ints, np.memmap) and first._ids.ints.tolist() == [10, 20, 30]
    assert first._ids.mask(pa.array([20, 25, None, 30])).tolist() == [True, False, False, True]

    other_process = _ReadRowGroup(cfg)  # its own Shared handle: what a second SDK process starts with
    other_process.setup()
    assert len(reads) == 1 and other_process._ids is not first._ids
    assert other_process._ids.ints.tolist() == [10, 20, 30] and len(list((tmp_path / "cache").iterdir())) == 1

    np.save(tmp_path / "ids.npy", np.asarray([7, 8, 9, 10, 11], np.int64))  # a replaced list: new size
    replaced = _ReadRowGroup(cfg)
    replaced.setup()
    assert len(reads) == 2 and replaced._ids.ints.tolist() == [7, 8, 9, 10, 11]
