"""Sources on the real local runner: FairFace (zip and folder), image folders, img2dataset-style shards."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from facecorpus.demo import build_fairface, photo_paths
from facecorpus.errors import UserError
from facecorpus.keys import make_key
from facecorpus.records import Reject, is_valid_key
from facecorpus.sources.config import FairFaceSource, FolderSource, WebDatasetSource
from facecorpus.sources.fairface import ReadFairFace
from facecorpus.sources.folder import ReadFolder
from facecorpus.sources.webdataset import ReadWebDataset


def collect(transform: beam.PTransform) -> tuple[list, list[Reject]]:
    """Run one source on FnApiRunner and return (items, rejects) as plain lists."""
    items: list = []
    rejects: list = []
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
            out = p | transform
            out["main"] | "I" >> beam.Map(lambda it: (it.key, it.source.model_dump_json(), it.labels and {
                k: v.model_dump() for k, v in it.labels.items()}, len(it.data or b""))) | "WI" >> beam.io.WriteToText(f"{d}/items")
            out["rejects"] | "R" >> beam.Map(lambda r: r.model_dump_json()) | "WR" >> beam.io.WriteToText(f"{d}/rejects")
        for f in sorted(Path(d).glob("items*")):
            items += [eval(line) for line in f.read_text().splitlines()]  # noqa: S307 - our own repr output
        for f in sorted(Path(d).glob("rejects*")):
            rejects += [Reject.model_validate_json(line) for line in f.read_text().splitlines()]
    return items, rejects


@pytest.fixture(scope="module")
def fairface(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ff")
    build_fairface(d, photo_paths())
    return d


def _ff_cfg(d: Path, **kw) -> FairFaceSource:
    return FairFaceSource(type="fairface", images=str(d / "fairface-img-margin025-trainval.zip"),
                          labels=[str(d / "fairface_label_val.csv"), str(d / "fairface_label_train.csv")], **kw)


def test_fairface_zip_rows_become_items_or_reasoned_rejects(fairface):
    items, rejects = collect(ReadFairFace(_ff_cfg(fairface, split="val")))
    reasons = sorted(r.reason for r in rejects)
    assert reasons == ["bad_row", "duplicate_row", "missing_file", "unknown_label", "unsafe_path"]
    assert {r.source_id for r in rejects if r.reason == "missing_file"} == {"val/404.jpg"}
    assert len(items) == 17  # val/1..11 and val/20..25 exist in the zip (some are broken images: the image stage rejects those)
    key, source, labels, _ = next(i for i in items if json.loads(i[1])["id"] == "val/7.jpg")
    assert labels["age"]["value"] == "70+" and labels["age"]["raw"] == "more than 70"
    assert labels["race"]["value"] == "latino_hispanic" and labels["race"]["source"] == "label"
    assert json.loads(source)["split"] == "val"
    assert all(is_valid_key(i[0]) for i in items)


def test_fairface_extracted_folder_gives_the_same_keys(fairface, tmp_path):
    folder = tmp_path / "extracted"
    with zipfile.ZipFile(fairface / "fairface-img-margin025-trainval.zip") as zf:
        for name in zf.namelist():
            if ".." in name:
                continue
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(zf.read(name))
    from_zip, _ = collect(ReadFairFace(_ff_cfg(fairface, split="all")))
    cfg = _ff_cfg(fairface, split="all")
    cfg.images = str(folder)
    from_dir, _ = collect(ReadFairFace(cfg))
    assert sorted(i[0] for i in from_zip) == sorted(i[0] for i in from_dir)
    assert len(from_zip) == 19  # 17 val + 2 train


def test_fairface_split_and_limit(fairface):
    items, rejects = collect(ReadFairFace(_ff_cfg(fairface, split="train")))
    assert len(items) == 2 and not rejects
    items, _ = collect(ReadFairFace(_ff_cfg(fairface, split="val", limit=3)))
    assert len(items) == 3


def test_fairface_csv_without_required_columns_is_a_user_error(fairface, tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("file,age\nval/1.jpg,20-29\n")
    cfg = _ff_cfg(fairface)
    cfg.labels = [str(bad)]
    with pytest.raises(UserError, match="missing column"):
        collect(ReadFairFace(cfg))


def test_folder_is_recursive_and_keys_are_stable(tmp_path):
    photos = photo_paths()
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(photos["hanks"], tmp_path / "a" / "hanks.png")
    shutil.copy(photos["rocket"], tmp_path / "a" / "b" / "rocket.jpg")
    (tmp_path / "notes.txt").write_text("skip me")
    items, rejects = collect(ReadFolder(FolderSource(type="folder", path=str(tmp_path))))
    assert sorted(json.loads(i[1])["id"] for i in items) == ["a/b/rocket.jpg", "a/hanks.png"]
    assert not rejects
    assert make_key("folder", "a/hanks.png") == next(i[0] for i in items if "hanks" in i[1])


def test_keys_are_deterministic_unique_and_dot_free():
    ids = ["val/1.jpg", "val_1.jpg", "val/1.png", "a.b.c/d.e.jpg", "x" * 300]
    keys = [make_key("fairface", i) for i in ids]
    assert len(set(keys)) == len(keys)
    assert all(is_valid_key(k) and "." not in k and len(k) <= 100 for k in keys)
    assert keys == [make_key("fairface", i) for i in ids]


def _img2dataset_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]], truncate: bool = False) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for key, parts in samples:
            for ext, data in parts.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2 + 100] if truncate else data)


def test_webdataset_source_reads_img2dataset_layout(tmp_path):
    photos = photo_paths()
    jpg = photos["rocket"].read_bytes()
    meta = {"url": "https://example.org/r.jpg", "caption": "a rocket", "key": "000000001", "status": "success", "width": 10}
    _img2dataset_shard(tmp_path / "00000.tar", [
        ("000000001", {"jpg": jpg, "txt": b"a rocket", "json": json.dumps(meta).encode()}),
        ("000000002", {"txt": b"orphan caption", "json": b"{}"}),
    ])
    _img2dataset_shard(tmp_path / "00001.tar", [
        (f"00000001{i}", {"jpg": photos["astronaut"].read_bytes() * 3, "txt": b"x"}) for i in range(4)
    ], truncate=True)
    items, rejects = collect(ReadWebDataset(WebDatasetSource(type="webdataset", path=str(tmp_path))))
    by_id = {json.loads(i[1])["id"]: json.loads(i[1]) for i in items}
    assert by_id["00000.tar/000000001"]["url"] == "https://example.org/r.jpg"
    assert by_id["00000.tar/000000001"]["text"] == "a rocket"
    assert by_id["00000.tar/000000001"]["extra"]["status"] == "success"
    reasons = sorted(r.reason for r in rejects)
    assert "no_image_member" in reasons and "corrupt_shard" in reasons


def test_unsafe_zip_entries_are_counted_and_never_read(fairface):
    from facecorpus.sources.fairface import _ImageStore

    store = _ImageStore(str(fairface / "fairface-img-margin025-trainval.zip"))
    assert store.read("val/1.jpg")
    assert store.unsafe_entries == ["../escape.jpg"]
    store.close()
