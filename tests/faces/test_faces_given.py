"""Face boxes given by the source (FaceCaption-15M, FaRL) replace detection: scaling, clipping, the
stage's counters and rejects, the portable and insightface backends, `backend: none`, and end to end
through `facecorpus run` (Beam FnApiRunner) downloading insightface's real 6-face group photo t1.jpg
from the loopback web server."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from facecorpus.faces.config import FacesConfig
from facecorpus.faces.face_stage import FaceStage
from facecorpus.faces.given import given_faces_of, scale_given_faces
from facecorpus.pipeline import run_recipe
from facecorpus.recipe import validate_recipe
from facecorpus.records import Reject, Sample, SourceFaces
from facecorpus.rejection import Rejected
from facecorpus.stage import METRICS_NAMESPACE, REJECTS, WorkItem
from tests.faces.test_faces_stage import work_item
from tests.generation.test_laion_injection import samples
from tests.sources.test_laion_meta import farl_pth
from tests.support.loopback_web import WebServer
from tests.support.model_packs import cached_store

# Faces of t1.jpg (1280x886) in its own pixels, as MTCNN finds them at full resolution: the centre-left
# face for the FaceCaption-15M row, the face right of centre (with its 5 points) for the FaRL detection.
T1_SIZE = (1280, 886)
FACECAPTION_BOX = [462.0, 263.0, 572.0, 410.0]
FARL_BOX = [743.0, 343.0, 840.0, 469.0]
FARL_POINTS = [[760.0, 396.0], [802.0, 400.0], [773.0, 431.0], [762.0, 437.0], [807.0, 440.0]]


# ------------------------------------------------------------------------------------------ scaling


def test_given_boxes_scale_to_the_pixels_and_clip_to_the_image():
    raw = [
        {"box": [100, 50, 300, 250], "score": 0.97, "landmarks5": [[150, 100], [250, 100], [200, 150], [160, 200], [240, 200]]},
        {"box": [1900, 900, 2100, 1100], "score": None, "landmarks5": None},  # reaches past the corner: clipped
        {"box": [2500, 10, 2600, 90], "score": 1.3, "landmarks5": None},  # right of the image: outside
    ]
    got = scale_given_faces(raw, [2000, 1000], 1000, 500, "farl")  # the image stage halved the image
    assert (got.clipped, got.outside) == (1, 1)
    first, corner = got.faces
    assert first.box == (50.0, 25.0, 150.0, 125.0) and first.score == 0.97 and not first.clipped
    assert first.landmarks5 == ((75.0, 50.0), (125.0, 50.0), (100.0, 75.0), (80.0, 100.0), (120.0, 100.0))
    assert corner.box == (950.0, 450.0, 1000.0, 500.0) and corner.clipped and corner.score is None
    assert first.detector == "given:farl"
    # x and y scale apart (a resize that rounded one side differently)
    (face,) = scale_given_faces([{"box": [10, 10, 20, 20]}], [100, 50], 50, 40, "facecaption15m").faces
    assert face.box == (5.0, 8.0, 10.0, 16.0)


def test_unusable_given_boxes_say_why():
    with pytest.raises(Rejected) as e:
        scale_given_faces([{"box": [3000, 3000, 3100, 3100]}], [1000, 1000], 1000, 1000, "facecaption15m")
    assert e.value.reason == "given_box_outside" and "outside the 1000x1000 image" in e.value.detail
    for bad in ([{"box": [1, 2, 3]}], [{"box": [10, 10, 5, 20]}], [{"box": [0, 0, float("nan"), 4]}], ["box"],
                [{"box": [0, 0, 5, 5], "landmarks5": [[1, 2]]}], {"box": [0, 0, 5, 5]}):
        with pytest.raises(Rejected) as e:
            scale_given_faces(bad, [10, 10], 10, 10, "farl")
        assert e.value.reason == "bad_box", bad
    with pytest.raises(Rejected, match="without the size"):
        given_faces_of(SourceFaces(faces=[{"box": [0, 0, 5, 5]}], size=None, source="farl"), 10, 10)
    # no given faces, or an empty list: the detector's job
    assert given_faces_of(None, 10, 10) is None
    assert given_faces_of(SourceFaces(faces=[], size=[10, 10], source="farl"), 10, 10) is None


# ------------------------------------------------------------------------------ the stage on Beam


@pytest.fixture(scope="module")
def store() -> Path:
    return cached_store("portable")


def given_item(name: str, key: str, faces: list[dict] | None, frame_scale: float = 1.0) -> WorkItem:
    """A decoded demo photo whose source gave `faces` in an image `frame_scale` times its size."""
    item = work_item(name)
    item.key = key
    if faces is not None:
        h, w = item.pixels.shape[:2]
        item.given_faces = SourceFaces(faces=faces, source="facecaption15m",
                                       size=[round(w * frame_scale), round(h * frame_scale)])
    return item


def run_face_stage(items: list[WorkItem], cfg: FacesConfig, out: Path) -> tuple[dict, dict[str, Reject], dict[str, int]]:
    """FaceStage on FnApiRunner → (kept items by key, rejects by key, the stage's counters)."""
    out.mkdir(parents=True, exist_ok=True)

    def dump(kind: str, x: object) -> None:
        (out / f"{kind}-{uuid.uuid4().hex}.pkl").write_bytes(pickle.dumps(x))

    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    result = p | beam.Create(items) | FaceStage(cfg, jpeg_quality=90)
    _ = result["main"] | "Kept" >> beam.Map(lambda it: dump("kept", it.without_pixels()))
    _ = result[REJECTS] | "Rejected" >> beam.Map(lambda r: dump("reject", r))
    res = p.run()
    res.wait_until_finish()
    kept = {it.key: it for it in (pickle.loads(f.read_bytes()) for f in out.glob("kept-*.pkl"))}
    rejects = {r.key: r for r in (pickle.loads(f.read_bytes()) for f in out.glob("reject-*.pkl"))}
    counters = res.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    counts = {c.key.metric.name: int(c.committed or c.attempted or 0) for c in counters}
    return kept, rejects, counts


def test_given_faces_skip_detection_on_beam_and_are_counted(store: Path, tmp_path: Path):
    cfg = FacesConfig(backend="portable", models_dir=str(store), providers="cpu", min_face_size=20, batch_size=4)
    # group6 is t1.jpg shrunk to 1024 px: the given boxes are in t1's own pixels (scale 1.25)
    at_t1 = 1280 / 1024
    items = [
        given_item("group6", "one_given", [{"box": FACECAPTION_BOX, "score": None, "landmarks5": None}], at_t1),
        given_item("group6", "detected", None),
        given_item("group6", "clipped_and_outside", [{"box": [-100, 400, 120, 600], "score": 0.95},
                                                      {"box": [4000, 10, 4100, 90], "score": 0.99}], at_t1),
        given_item("hanks", "all_outside", [{"box": [500, 500, 600, 600], "score": None}]),
        given_item("hanks", "malformed", [{"box": [10, 10, 5, 5], "score": None}]),
    ]
    (fw, fh), (h, w) = items[0].given_faces.size, items[0].pixels.shape[:2]
    kept, rejects, counts = run_face_stage(items, cfg, tmp_path)
    assert set(kept) == {"one_given", "detected", "clipped_and_outside"}
    (face,) = kept["one_given"].faces  # six people in the photo, one given box: one face
    x1, y1, x2, y2 = FACECAPTION_BOX
    assert [face.box.x1, face.box.y1, face.box.x2, face.box.y2] == pytest.approx([x1 * w / fw, y1 * h / fh, x2 * w / fw,
                                                                                 y2 * h / fh])
    assert face.detector == "given:facecaption15m" and face.score == 1.0
    assert face.landmarks_model == "portable:mtcnn-onet" and len(face.landmarks5) == 5
    (lx, ly), (rx, ry) = face.landmarks5[:2]  # O-Net put the eyes in the upper half of the box, left before right
    assert face.box.x1 < lx < rx < face.box.x2 and face.box.y1 < ly < (face.box.y1 + face.box.y2) / 2
    assert face.pose is not None and face.expression is not None and face.quality.size_px > 40
    assert len(kept["detected"].faces) >= 6 and {f.detector for f in kept["detected"].faces} == {"portable:blazeface"}
    (clipped,) = kept["clipped_and_outside"].faces
    assert clipped.box.x1 == 0.0 and clipped.box.x2 == pytest.approx(120 * w / fw) and clipped.score == 0.95
    assert rejects["all_outside"].reason == "given_box_outside" and not rejects["all_outside"].retryable
    assert "outside the 112x112 image" in rejects["all_outside"].detail
    assert rejects["malformed"].reason == "bad_box" and "inverted" in rejects["malformed"].detail
    # MTCNN also reports a low-scoring seventh "face" that selection drops; no given face was dropped
    assert counts["faces.given"] == 2 and counts["faces.detected"] >= len(kept["detected"].faces)
    assert counts["faces.found"] == 2 + counts["faces.detected"]
    assert counts["faces.dropped"] == counts["faces.detected"] - len(kept["detected"].faces)
    assert counts["faces.given_clipped"] == 1 and counts["faces.given_outside"] == 1


def test_backend_none_turns_given_boxes_into_faces_and_passes_the_rest(tmp_path: Path):
    cfg = FacesConfig(backend="none", min_face_size=20, unit="face")
    two = [{"box": [40, 200, 140, 320], "score": 0.99, "landmarks5": None}, {"box": [360, 210, 460, 330], "score": 0.5}]
    items = [given_item("group6", "given", two), given_item("hanks", "plain", None)]
    kept, rejects, counts = run_face_stage(items, cfg, tmp_path)
    assert rejects == {}
    assert set(kept) == {"given_f0", "plain"}  # min_score 0.9 drops the second box: one sample per kept face
    (face,) = kept["given_f0"].faces
    assert face.box.x1 == 40.0 and face.box.y2 == 320.0 and face.detector == "given:facecaption15m"
    assert face.pose is None and face.quality is not None  # no model ran; quality is measured on the pixels
    assert kept["plain"].faces == [] and kept["plain"].primary_face is None  # untouched
    assert counts["faces.given"] == 2 and counts.get("faces.detected", 0) == 0


# ------------------------------------------------------------------------------- end to end (run)


@pytest.fixture(scope="module")
def given_inputs(tmp_path_factory):
    """A FaceCaption-15M parquet (t1 with one box; the 112 px Hanks photo with a box far outside it) and a
    LAION parquet whose FaRL detection (box, 5 points) covers another face of t1; served on loopback."""
    tmp = tmp_path_factory.mktemp("given")
    with WebServer("127.0.0.1") as web:
        pq.write_table(pa.table({
            "url": [web.url("/img/t1.jpg"), web.url("/img/hanks.png")],
            "face_box": [str(FACECAPTION_BOX), "[500, 500, 600, 600]"],
            "laion_caption": ["team photo", "actor"],
            "face_caption": ["A smiling man with short hair.", "A man."],
        }), tmp / "FaceCaption-v1.parquet")
        pq.write_table(pa.table({"SAMPLE_ID": [77], "URL": [web.url("/img/t1.jpg?farl")], "TEXT": ["group"],
                                 "NSFW": ["UNLIKELY"]}), tmp / "part-00000.parquet")
        farl_pth(tmp / "sample2detect_0.pth", {77: [(FARL_BOX, FARL_POINTS, 0.999)]})
        yield tmp


def given_recipe(tmp: Path, faces: dict) -> dict:
    download = {"allow_networks": ["127.0.0.1/32"], "retries": 0, "timeout_s": 5}  # image_size 1024: t1 shrinks once
    return {
        "name": "given-faces",
        "sources": [
            {"type": "facecaption", "path": str(tmp / "FaceCaption-v1.parquet"), "download": download},
            {"type": "laion", "path": str(tmp / "part-00000.parquet"), "detections": str(tmp / "sample2detect_0.pth"),
             "download": download},
        ],
        "image": {"max_side": 512},  # and the image stage shrinks it again: the boxes must follow
        "faces": faces,
        "generation": {"generator": "templates", "categories": ["pose", "lighting_quality"]},
        "validation": {"dedup": {"exact": False, "near": False}},  # the same photo twice, on purpose
    }


def run_given(tmp: Path, out: Path, faces: dict) -> tuple[dict, dict[str, Sample], list[Reject]]:
    stats = run_recipe(validate_recipe(given_recipe(tmp, faces), "given", tmp), str(out)).stats
    by_dataset = {s.source.dataset: s for s in samples(out)}
    rejects = [Reject.model_validate_json(line) for f in sorted((out / "rejects").glob("*.jsonl"))
               for line in f.read_text().splitlines() if line.strip()]
    return stats, by_dataset, rejects


def stored_size(sample: Sample) -> tuple[int, int]:
    """Size of the image the faces stage saw: the download (in `original_*`) shrunk by image.max_side 512."""
    assert sample.image.original_width is not None and sample.image.original_height is not None
    picture = Image.new("RGB", (sample.image.original_width, sample.image.original_height))
    picture.thumbnail((512, 512))  # as the image stage does
    return picture.size


def scaled(box: list[float], sample: Sample) -> list[float]:
    """A box in t1.jpg's pixels → in the pixels the faces stage saw."""
    w, h = stored_size(sample)
    sx, sy = w / T1_SIZE[0], h / T1_SIZE[1]
    return [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]


def test_facecaption_and_farl_boxes_end_to_end_with_portable_models(given_inputs: Path, store: Path, tmp_path: Path):
    faces = {"backend": "portable", "models_dir": str(store), "providers": "cpu", "min_face_size": 20}
    stats, by_dataset, rejects = run_given(given_inputs, tmp_path / "out", faces)
    assert stats["inputs"] == 3 and stats["written"] == 2, stats["by_reason"]
    assert [(r.stage, r.reason) for r in rejects] == [("faces", "given_box_outside")]
    fc, farl = by_dataset["facecaption15m"], by_dataset["laion"]
    assert fc.image.width == 512 and fc.image.original_width == 1024  # downloaded at 1024, stored at 512
    (face,) = fc.faces  # one box given in a photo of six people: exactly one face, the given one
    assert [face.box.x1, face.box.y1, face.box.x2, face.box.y2] == pytest.approx(scaled(FACECAPTION_BOX, fc), abs=0.01)
    assert face.detector == "given:facecaption15m" and face.landmarks_model == "portable:mtcnn-onet"
    assert face.pose is not None and face.expression is not None
    (face,) = farl.faces
    assert [face.box.x1, face.box.y1, face.box.x2, face.box.y2] == pytest.approx(scaled(FARL_BOX, farl), abs=0.01)
    assert face.detector == "given:farl" and face.score == pytest.approx(0.999) and face.landmarks_model is None
    sx, sy = stored_size(farl)[0] / T1_SIZE[0], stored_size(farl)[1] / T1_SIZE[1]
    flat = [v for p in face.landmarks5 for v in p]
    assert flat == pytest.approx([v for x, y in FARL_POINTS for v in (x * sx, y * sy)], abs=0.01)  # FaRL's points, kept
    assert face.pose is not None


def test_given_boxes_become_crops_with_backend_none(given_inputs: Path, tmp_path: Path):
    faces = {"backend": "none", "min_face_size": 20, "crop": {"enabled": True, "margin": 0.25, "size": 96}}
    stats, by_dataset, rejects = run_given(given_inputs, tmp_path / "out", faces)
    assert stats["written"] == 2 and [r.reason for r in rejects] == ["given_box_outside"], stats["by_reason"]
    for sample, box, detector in ((by_dataset["facecaption15m"], FACECAPTION_BOX, "given:facecaption15m"),
                                  (by_dataset["laion"], FARL_BOX, "given:farl")):
        # KEY.jpg is the square around the given box, 1.5 × its longer side, in the 512 px image's pixels
        x1, y1, x2, y2 = scaled(box, sample)
        side = max(x2 - x1, y2 - y1) * 1.5
        c = sample.crop
        assert c is not None and c.size == 96 and sample.image.width == 96
        assert [c.box.x1, c.box.y1, c.box.x2, c.box.y2] == pytest.approx(
            [(x1 + x2 - side) / 2, (y1 + y2 - side) / 2, (x1 + x2 + side) / 2, (y1 + y2 + side) / 2], abs=0.05)
        face = sample.faces[sample.primary_face]
        assert face.detector == detector and face.pose is None  # no model ran
