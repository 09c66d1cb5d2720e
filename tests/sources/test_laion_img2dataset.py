"""Source `img2dataset`: LAION-Face already downloaded by img2dataset itself (as FaRL's download.sh does)
is read without touching the network; img2dataset's failed rows become rejects with our reasons."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from facecorpus.sources.config import Img2DatasetSource
from facecorpus.sources.laion import ReadImg2Dataset
from facecorpus.sources.laion_columns import img2dataset_failure
from tests.sources.test_laion_meta import run_source
from tests.support.loopback_web import WebServer


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    """img2dataset's real downloader (in-process API, one worker) run against the loopback server."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from img2dataset import download

    tmp = tmp_path_factory.mktemp("i2d")
    with WebServer("127.0.0.1") as web:
        rows = [
            (11, web.url("/img/t1.jpg"), "UNLIKELY"),
            (12, web.url("/missing/x.jpg"), "UNLIKELY"),
            (13, web.url("/img/astronaut.png"), "UNLIKELY"),
            (14, web.url("/html-as-jpeg"), "UNLIKELY"),
            (15, web.url("/noai"), "UNLIKELY"),
            (16, web.url("/img/hanks.png"), "NSFW"),
            (17, web.url("/img/mask.jpg"), "UNLIKELY"),  # not in the id list below
        ]
        pq.write_table(pa.table({
            "SAMPLE_ID": [r[0] for r in rows], "URL": [r[1] for r in rows], "TEXT": [f"alt {r[0]}" for r in rows],
            "NSFW": [r[2] for r in rows], "similarity": [0.31] * len(rows), "LICENSE": ["?"] * len(rows),
        }), tmp / "laion_face_part_00000.parquet")
        # the arguments of FaRL's download.sh, on a small scale
        download(url_list=str(tmp / "laion_face_part_00000.parquet"), input_format="parquet", url_col="URL",
                 caption_col="TEXT", output_format="webdataset", output_folder=str(tmp / "split_00000"),
                 processes_count=1, thread_count=4, resize_mode="no", timeout=3, retries=0, enable_wandb=False,
                 save_additional_columns=["NSFW", "similarity", "LICENSE", "SAMPLE_ID"])
        web.clear()
        yield {"folder": tmp / "split_00000", "web": web, "tmp": tmp}


def test_downloaded_shards_are_read_without_the_network(downloaded):
    tmp = downloaded["tmp"]
    np.save(tmp / "ids.npy", np.asarray([11, 12, 13, 14, 15, 16], np.int64))
    torch.save({11: [(np.asarray([10, 20, 90, 120], np.float32), np.zeros((5, 2), np.float32), np.float32(0.97))]},
               tmp / "sample2detect_0.pth")
    cfg = Img2DatasetSource(type="img2dataset", path=str(downloaded["folder"]), ids=str(tmp / "ids.npy"),
                            detections=str(tmp / "sample2detect_0.pth"))
    items, rejects = run_source(ReadImg2Dataset(cfg))
    assert downloaded["web"].hits == []  # nothing was downloaded again
    by_id = {i.source.id: i for i in items}
    assert set(by_id) == {"11", "13"}
    t1 = by_id["11"]
    assert t1.source.dataset == "laion" and t1.source.text == "alt 11" and t1.source.licence is None
    assert t1.source.extra["similarity"] == pytest.approx(0.31) and t1.source.extra["nsfw"] == "UNLIKELY"
    assert t1.data[:3] == b"\xff\xd8\xff"  # the JPEG img2dataset wrote
    assert t1.given_faces.faces[0]["box"] == pytest.approx([10, 20, 90, 120])  # resize_mode no: same frame
    assert {(r.source_id, r.stage, r.reason) for r in rejects} == {
        ("12", "download", "http_404"),
        ("14", "download", "not_image"),
        ("15", "download", "robots_optout"),
        ("16", "source", "nsfw"),
    }
    assert all("img2dataset" in r.detail for r in rejects if r.stage == "download")


def test_missing_tar_members_are_rejects(downloaded, tmp_path):
    import shutil
    import tarfile

    folder = tmp_path / "broken"
    shutil.copytree(downloaded["folder"], folder)
    tar = next(folder.glob("*.tar"))
    with tarfile.open(tar) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
    jpgs = [m.name.split(".")[0] for m, _ in members if m.name.endswith(".jpg")]
    gone, no_image = jpgs[0], jpgs[1]
    with tarfile.open(tar, "w") as dst:  # their parquet rows still say 'success'
        for m, data in members:
            stem = m.name.split(".")[0]
            if stem != gone and m.name != f"{no_image}.jpg":  # one sample gone, one without its image
                dst.addfile(m, io.BytesIO(data))
    cfg = Img2DatasetSource(type="img2dataset", path=str(folder), nsfw=None)
    items, rejects = run_source(ReadImg2Dataset(cfg))
    details = sorted(r.detail for r in rejects if r.reason == "missing_file")
    assert len(details) == 2
    assert "has no member" in details[0] and "without an image" in details[1]
    assert len(items) == 2  # t1, astronaut, mask and the NSFW-tagged photo (no filters here), minus those two


@pytest.mark.parametrize(("status", "message", "reason"), [
    ("failed_to_download", "HTTP Error 404: Not Found", "http_404"),
    ("failed_to_download", "<urlopen error timed out>", "timeout"),
    ("failed_to_download", "<urlopen error [Errno -2] Name or service not known>", "dns"),
    ("failed_to_download", "<urlopen error [Errno 111] Connection refused>", "connection"),
    ("failed_to_download", "Use of image disallowed by X-Robots-Tag directive", "robots_optout"),
    ("failed_to_resize", "Image decoding error", "not_image"),
    ("failed_to_resize", "image too small", "too_small"),
    ("failed_to_download", "something new", "download_failed"),
])
def test_img2dataset_error_messages_map_to_our_reasons(status, message, reason):
    assert img2dataset_failure(status, message).reason == reason
