"""CelebA, RAF-DB basic, UTKFace and the generic labelled table in their real layouts (the demo's inputs,
built from real face photos), read on the real local runner: every row becomes an item or a reject
with its reason; official test partitions are held out unless asked for by name."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facecorpus.demo import photo_paths
from facecorpus.demo_labelled import build_affectnet, build_celeba, build_rafdb, build_utkface
from facecorpus.errors import UserError
from facecorpus.sources.celeba import ReadCelebA, box_from_landmarks, read_listing
from facecorpus.sources.config import CelebASource, LabelledSource, RafDbSource, UTKFaceSource
from facecorpus.sources.labelled_table import ReadLabelledTable, TableRows
from facecorpus.sources.licences import CELEBA, RAFDB, UTKFACE, licence_of
from facecorpus.sources.rafdb import ReadRafDb
from facecorpus.sources.utkface import ReadUTKFace, UTKFaceRows, parse_name
from tests.sources.test_sources import collect


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("labelled")
    photos = photo_paths()
    build_celeba(d, photos)
    build_rafdb(d, photos)
    build_utkface(d, photos)
    build_affectnet(d, photos)
    return d


def _by_id(items: list) -> dict[str, tuple]:
    return {json.loads(i[1])["id"]: i for i in items}


def _celeba(d: Path, **kw) -> CelebASource:
    cfg = CelebASource.model_validate({"type": "celeba", "root": "celeba", **kw})
    cfg.resolve_paths(d)
    return cfg


def test_celeba_rows_become_items_or_reasoned_rejects(inputs):
    items, rejects = collect(ReadCelebA(_celeba(inputs)))
    reasons = {r.source_id: r.reason for r in rejects}
    assert reasons == {
        "000001.jpg": "duplicate_row", "000013.jpg": "bad_row", "000014.jpg": "missing_partition",
        "000015.jpg": "bad_landmarks", "000016.jpg": "unknown_label", "000017.jpg": "missing_file",
        "../000018.jpg": "unsafe_path", "000011.jpg": "holdout", "000012.jpg": "holdout",
    }
    holdout = next(r for r in rejects if r.reason == "holdout")
    assert "CelebA partition 2 (test)" in holdout.detail and holdout.stage == "source"
    by_id = _by_id(items)
    assert sorted(by_id) == [f"{i:06d}.jpg" for i in range(1, 11)]
    _, source, labels, size = by_id["000001.jpg"]
    source = json.loads(source)
    assert source["split"] == "train" and source["licence"] == CELEBA.id
    assert source["extra"] == {"partition": 0, "identity": 100}
    assert labels["gender"]["value"] == "male" and labels["gender"]["raw"] == "Male=1"
    assert labels["beard"]["value"] is False and labels["beard"]["raw"] == "No_Beard=1"  # No_Beard inverted
    assert len(labels) == 40 and all(v["source"] == "label" for v in labels.values())
    assert json.loads(by_id["000009.jpg"][1])["split"] == "val"
    assert size > 1000


def test_celeba_landmarks_become_given_faces_inside_the_aligned_image(inputs):
    listing = read_listing(str(inputs / "celeba" / "Anno" / "list_landmarks_align_celeba.txt"), 10, None)
    points = listing.first()["000003.jpg"]
    import numpy as np

    pts = np.array([float(v) for v in points]).reshape(5, 2)
    x1, y1, x2, y2 = box_from_landmarks(pts)
    # the ArcFace square around CelebA's landmarks lies (almost) inside the 178x218 aligned image, covering the face
    assert -10 < x1 < pts[:, 0].min() and pts[:, 0].max() < x2 < 188
    assert 0 < y1 < pts[:, 1].min() and pts[:, 1].max() < y2 < 228
    assert 0.7 < (x2 - x1) / (y2 - y1) < 1.3


def test_celeba_test_partition_is_read_when_asked_for_by_name(inputs):
    items, rejects = collect(ReadCelebA(_celeba(inputs, split="test")))
    assert sorted(json.loads(i[1])["id"] for i in items) == ["000011.jpg", "000012.jpg"]
    assert all(json.loads(i[1])["extra"]["held_out"] is True for i in items)
    assert "holdout" not in {r.reason for r in rejects}


def test_celeba_refuses_settings_that_cannot_hold_out_or_do_not_match(inputs, tmp_path):
    with pytest.raises(UserError, match="list_eval_partition"):
        ReadCelebA(_celeba(inputs, partitions=None, root=None, images=str(inputs / "celeba/Img/img_align_celeba.zip"),
                           attributes=str(inputs / "celeba/Anno/list_attr_celeba.txt"))).parser.check()
    bbox = tmp_path / "list_bbox_celeba.txt"
    bbox.write_text("1\nimage_id x_1 y_1 width height\n000001.jpg 95 71 226 313\n")
    with pytest.raises(UserError, match="in-the-wild"):
        ReadCelebA(_celeba(inputs, boxes=str(bbox))).parser.check()
    bad_header = tmp_path / "list_attr_celeba.txt"
    bad_header.write_text("1\nSmiling Young\n000001.jpg 1 -1\n")
    with pytest.raises(UserError, match="should name the columns"):
        list(ReadCelebA(_celeba(inputs, attributes=str(bad_header))).parser.rows())


def test_celeba_in_the_wild_boxes_and_a_corrupt_zip_member(inputs, tmp_path):
    """Boxes (x, y, width, height) on in-the-wild images; an empty or malformed box; a member whose
    bytes fail the zip's CRC (read_error)."""
    src = inputs / "celeba" / "Img" / "img_align_celeba.zip"
    wild = tmp_path / "img_celeba.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(wild, "w", compression=zipfile.ZIP_STORED) as zout:
        for name in zin.namelist():
            zout.writestr(name.replace("img_align_celeba", "img_celeba"), zin.read(name))
    raw = bytearray(wild.read_bytes())
    member = zipfile.ZipFile(wild).getinfo("img_celeba/000002.jpg")
    raw[member.header_offset + 30 + len(member.filename) + 200] ^= 0xFF  # flip a byte inside the stored data
    wild.write_bytes(bytes(raw))
    boxes = tmp_path / "list_bbox_celeba.txt"
    rows = [f"{i:06d}.jpg 20 30 140 150" for i in range(1, 11) if i not in (4, 5, 6)]
    rows += ["000004.jpg 20 30 0 150", "000005.jpg 20 30 x 150"]
    boxes.write_text(f"{len(rows)}\nimage_id x_1 y_1 width height\n" + "\n".join(rows) + "\n")
    cfg = _celeba(inputs, images=str(wild), landmarks=None, boxes=str(boxes))
    items, rejects = collect(ReadCelebA(cfg))
    reasons = {r.source_id: r.reason for r in rejects}
    assert reasons["000002.jpg"] == "read_error" and reasons["000004.jpg"] == "bad_box"
    assert reasons["000005.jpg"] == "bad_box" and reasons["000006.jpg"] == "missing_box"
    assert "000003.jpg" in _by_id(items)


def test_celeba_missing_landmarks_and_bad_identity(inputs, tmp_path):
    """A row of the attribute list without its landmarks row, and an identity that is not a number."""
    anno = inputs / "celeba" / "Anno"
    marks = [line for line in (anno / "list_landmarks_align_celeba.txt").read_text().splitlines()
             if not line.startswith("000003.jpg")]
    (tmp_path / "list_landmarks_align_celeba.txt").write_text("\n".join(marks) + "\n")
    ids = [("000004.jpg person4" if line.startswith("000004.jpg") else line)
           for line in (anno / "identity_CelebA.txt").read_text().splitlines()]
    (tmp_path / "identity_CelebA.txt").write_text("\n".join(ids) + "\n")
    cfg = _celeba(inputs, landmarks=str(tmp_path / "list_landmarks_align_celeba.txt"),
                  identities=str(tmp_path / "identity_CelebA.txt"))
    items, rejects = collect(ReadCelebA(cfg))
    reasons = {r.source_id: (r.reason, r.detail) for r in rejects}
    assert reasons["000003.jpg"][0] == "missing_landmarks" and "no row in" in reasons["000003.jpg"][1]
    assert reasons["000004.jpg"] == ("bad_identity", "identity_CelebA.txt: the identity of 000004.jpg is not a number: "
                                                     "'person4'")
    assert {"000003.jpg", "000004.jpg"}.isdisjoint(_by_id(items)) and len(items) == 8


def test_broken_archives_are_one_line_or_a_read_error(inputs, tmp_path):
    """An image archive that cannot be opened is one line before the run (zip or tar alike, any
    labelled source); a .tar.gz that breaks off mid-way keeps what came before and ends in one
    `read_error` naming the archive."""
    (tmp_path / "UTKFace.zip").write_bytes(b"not a zip")
    (tmp_path / "UTKFace.tar.gz").write_bytes(b"not gzip either")
    for name in ("UTKFace.zip", "UTKFace.tar.gz"):
        with pytest.raises(UserError, match=f"{name} is not a readable"):
            collect(ReadUTKFace(UTKFaceSource(type="utkface", images=str(tmp_path / name))))
    (tmp_path / "aligned.zip").write_bytes(b"PK but no directory")
    with pytest.raises(UserError, match="aligned.zip is not a readable zip"):
        collect(ReadRafDb(_rafdb(inputs, images=str(tmp_path / "aligned.zip"))))
    import tarfile

    whole = tmp_path / "whole.tar.gz"
    with tarfile.open(whole, "w:gz") as tar:
        tar.add(inputs / "utkface" / "UTKFace", arcname="UTKFace")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    items, rejects = collect(ReadUTKFace(UTKFaceSource(type="utkface", images=str(cut))))
    broken = [r for r in rejects if r.reason == "read_error"]
    assert len(broken) == 1 and broken[0].source_id == "cut.tar.gz" and "breaks off at" in broken[0].detail
    assert 0 < len(items) < 12 and broken[0].retryable


def _rafdb(d: Path, **kw) -> RafDbSource:
    cfg = RafDbSource.model_validate({"type": "rafdb", "root": "rafdb/basic", **kw})
    cfg.resolve_paths(d)
    return cfg


def test_rafdb_rows_become_items_or_reasoned_rejects(inputs):
    items, rejects = collect(ReadRafDb(_rafdb(inputs)))
    reasons = sorted((r.reason, r.source_id) for r in rejects)
    assert reasons == [
        ("bad_row", "train_00013.jpg"), ("bad_row", "val_00001.jpg"), ("duplicate_row", "train_00001.jpg"),
        *[("holdout", f"test_{i:04d}.jpg") for i in range(1, 5)],
        ("missing_file", "train_00015.jpg"), ("unknown_label", "train_00014.jpg"), ("unsafe_path", "../train_00016.jpg"),
    ]
    by_id = _by_id(items)
    assert len(by_id) == 12
    _, source, labels, _ = by_id["train_00001.jpg"]
    assert labels == {"expression": {"value": "happy", "source": "label", "confidence": 1.0, "raw": "4"}}
    assert json.loads(source)["licence"] == RAFDB.id and json.loads(source)["extra"]["variant"] == "aligned"
    assert "RAF-DB's test partition" in next(r.detail for r in rejects if r.reason == "holdout")


def test_rafdb_original_images_and_the_test_split(inputs):
    cfg = _rafdb(inputs, split="test", images="rafdb/basic/Image/original")
    cfg.resolve_paths(inputs)
    items, rejects = collect(ReadRafDb(cfg))
    assert sorted(_by_id(items)) == [f"test_{i:04d}.jpg" for i in range(1, 5)]
    assert all(json.loads(i[1])["extra"] == {"variant": "original", "held_out": True} for i in items)
    assert all(i[3] > 5000 for i in items)  # the 320x320 originals, not the 100x100 aligned faces


def test_utkface_names_become_labels_and_malformed_names_rejects(inputs, tmp_path):
    cfg = UTKFaceSource(type="utkface", images=str(inputs / "utkface" / "UTKFace"))
    items, rejects = collect(ReadUTKFace(cfg))
    reasons = {r.source_id: (r.reason, r.detail) for r in rejects}
    assert reasons["39_1_20170116174525125.jpg.chip.jpg"][0] == "bad_file_name"
    assert "age 117" in reasons["117_0_0_20170117000000001.jpg.chip.jpg"][1]
    assert "gender 2" in reasons["30_2_0_20170117000000002.jpg.chip.jpg"][1]
    assert "race 7" in reasons["30_0_7_20170117000000003.jpg.chip.jpg"][1]
    assert len(reasons) == 4 and len(items) == 12
    labels = _by_id(items)["54_0_0_20170110100000000.jpg.chip.jpg"][2]
    assert {k: v["value"] for k, v in labels.items()} == {"age_years": 54, "age": "50-59", "gender": "male", "race": "white"}
    assert json.loads(items[0][1])["licence"] == UTKFACE.id
    # the released .tar.gz reads the same, front to back; a zip of the folder too
    import tarfile

    tgz = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(inputs / "utkface" / "UTKFace", arcname="UTKFace")
    tar_items, tar_rejects = collect(ReadUTKFace(UTKFaceSource(type="utkface", images=str(tgz))))
    assert sorted(i[3] for i in tar_items) == sorted(i[3] for i in items) and len(tar_rejects) == 4


def test_utkface_name_parsing():
    assert parse_name("1_0_0_20161219140623097.jpg.chip.jpg") == {"age": "1", "gender": "0", "race": "0", "taken": "20161219140623097"}
    assert parse_name("part1/25_1_3_20170104222949458.jpg") == {"age": "25", "gender": "1", "race": "3", "taken": "20170104222949458"}
    assert isinstance(parse_name("61_1_20170109142408075.jpg.chip.jpg"), str)
    assert isinstance(parse_name("53__0_20170116184028385.jpg"), str)


def test_utkface_zip_with_an_entry_that_leaves_the_archive(inputs, tmp_path):
    z = tmp_path / "UTKFace.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted((inputs / "utkface" / "UTKFace").iterdir())[:3]:
            zf.writestr(f"UTKFace/{p.name}", p.read_bytes())
        zf.writestr("../30_0_0_20170101000000000.jpg", b"x")
    rows = list(UTKFaceRows(UTKFaceSource(type="utkface", images=str(z))).rows())
    assert [getattr(r, "reason", None) for r in rows].count("unsafe_path") == 1 and len(rows) == 4


AFFECTNET_EXPRESSIONS = {"0": "neutral", "1": "happy", "2": "sad", "3": "surprise", "4": "fear", "5": "disgust",
                         "6": "angry", "7": "contempt"}


def _affectnet(d: Path, **kw) -> LabelledSource:
    data = dict(type="labelled", table="affectnet/training.csv", images="affectnet/Manually_Annotated_Images",
                image_column="subDirectory_filePath", split_column="split", holdout=["val"], dataset="affectnet",
                licence="AffectNet academic licence",
                attributes={"expression": {"column": "expression", "values": AFFECTNET_EXPRESSIONS},
                            "face_mask": {"column": "face_mask", "values": {"0": False, "1": True},
                                          "declare": {"kind": "flag", "form": "wear", "phrase": "a face mask"}}})
    data.update(kw)
    cfg = LabelledSource.model_validate(data)
    cfg.resolve_paths(d)
    return cfg


def test_labelled_table_maps_columns_onto_attributes(inputs):
    items, rejects = collect(ReadLabelledTable(_affectnet(inputs)))
    reasons = sorted((r.reason, r.source_id) for r in rejects)
    assert reasons == [
        ("bad_row", "training.csv:19"), ("duplicate_row", "1/face_000.jpg"),
        ("holdout", "1/face_008.jpg"), ("holdout", "1/face_009.jpg"),
        ("missing_file", "1/absent.jpg"), ("missing_label", "1/unlabelled.jpg"),
        ("unknown_label", "1/uncertain.jpg"), ("unsafe_path", "../escape.jpg"),
    ]
    by_id = _by_id(items)
    assert len(by_id) == 10
    labels = by_id["1/mask_0.jpg"][2]
    assert labels["face_mask"]["value"] is True and labels["expression"]["value"] == "neutral"
    assert json.loads(by_id["1/mask_0.jpg"][1])["licence"] == "AffectNet academic licence"


def test_labelled_table_jsonl_parquet_and_thresholds(inputs, tmp_path):
    images = inputs / "affectnet" / "Manually_Annotated_Images"
    rows = [{"file": "1/face_000.jpg", "Smiling": 1.7, "Eyeglasses": -0.4, "split": 0},
            {"file": "1/face_001.jpg", "Smiling": -2.0, "Eyeglasses": 0.9, "split": 2}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "lfw.parquet")
    (tmp_path / "lfw.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    attrs = {"smiling": {"column": "Smiling", "threshold": 0.0}, "eyeglasses": {"column": "Eyeglasses", "threshold": 0.0}}
    for table in ("lfw.parquet", "lfw.jsonl"):
        cfg = LabelledSource.model_validate(dict(type="labelled", table=str(tmp_path / table), images=str(images),
                                                 image_column="file", split_column="split", splits={"0": "train", "2": "test"},
                                                 dataset="lfw", licence="LFW attributes: research", attributes=attrs))
        out = list(TableRows(cfg, cfg.vocabulary()).rows())
        first = out[0]
        assert first.split == "train" and first.labels["smiling"].value is True and first.labels["eyeglasses"].value is False
        assert out[1].split == "test" and out[1].labels["eyeglasses"].value is True
        if table.endswith(".jsonl"):
            assert out[2].reason == "bad_row" and "not JSON" in out[2].detail


@pytest.mark.parametrize("attributes,message", [
    ({"expression": {"column": "e", "values": {"1": "joyful"}}}, "not among its codes"),
    ({"mood": {"column": "m"}}, "declare it"),
    ({"smiling": {"column": "s", "declare": {"kind": "flag", "form": "be", "phrase": "smiling"}}}, "already declared"),
    ({"expression": {"column": "e", "threshold": 0.5}}, "flags only"),
    ({"mood": {"column": "m", "declare": {"kind": "category", "noun": "mood"}}}, "needs noun, question and phrases"),
])
def test_labelled_table_mapping_mistakes_are_one_line(attributes, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        LabelledSource.model_validate(dict(type="labelled", table="t.csv", images="i", dataset="x", licence="y",
                                           attributes=attributes))


def test_labelled_table_missing_column_fails_before_the_run(inputs):
    with pytest.raises(UserError, match="no column"):
        ReadLabelledTable(_affectnet(inputs, image_column="path")).parser.check()


def test_licences_are_declared_once_per_source():
    assert CelebASource.model_fields["licence"].default == CELEBA.id
    assert licence_of(CELEBA.id).commercial is False and licence_of("CC-BY-4.0").commercial is True
    assert licence_of("my own terms") is None
