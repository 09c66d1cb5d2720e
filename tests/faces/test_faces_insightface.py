"""The insightface backend through the real library (FaceAnalysis, model_zoo routing, SCRFD decoding,
landmark/pose, gender-age, ArcFace) with tiny signature-compatible ONNX graphs built here, network blocked.

The graphs have the input/output signatures insightface routes by (see docs/faces.md): what they
compute is made up, so this checks the adapter's wiring, not accuracy. Two outputs are fixed on
purpose: the 3D-68 landmark model always returns insightface's mean face turned by a known yaw (so the
pose sign can be checked), and the gender-age model always says female, 45.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from facecorpus import models
from facecorpus.demo import photo_paths
from facecorpus.faces.analyzer import FaceAnalyzer, load_analyzer
from facecorpus.faces.attributes import merge_attributes, model_attributes
from facecorpus.faces.config import FaceCropConfig, FacesConfig
from facecorpus.faces.selection import select_faces
from facecorpus.image_check import decode_image
from facecorpus.image_config import ImageConfig
from facecorpus.records import AttributeValue
from tests.support.inprocess_cli import run_main
from tests.support.loopback_web import INSIGHTFACE_IMAGES

TURNED_YAW = 25.0  # degrees toward the image's right, baked into the landmark model's output


def _graph(name: str, nodes: list, inputs: list, outputs: list, inits: list) -> onnx.ModelProto:
    model = helper.make_model(
        helper.make_graph(nodes, name, inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _t(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def scrfd_detector() -> onnx.ModelProto:
    """SCRFD with 3 strides × 2 anchors and keypoints: 9 outputs (scores, boxes, kps by ascending stride).

    Each s×s cell is averaged, then a 1×1 convolution: the score rises with brightness (the black padding
    insightface adds never scores), boxes are 8 strides to each side, keypoints sit around the anchor."""
    nodes, inits, outs = [], [], {"score": [], "bbox": [], "kps": []}
    kps_offsets = np.array([-1.0, -0.8, 1.0, -0.8, 0.0, 0.0, -0.8, 1.0, 0.8, 1.0])
    for s in (8, 16, 32):
        nodes.append(helper.make_node("AveragePool", ["input.1"], [f"cell{s}"], kernel_shape=[s, s], strides=[s, s]))
        for kind, per_anchor in (("score", 1), ("bbox", 4), ("kps", 10)):
            channels = 2 * per_anchor
            w = np.zeros((channels, 3, 1, 1))
            if kind == "score":
                w[:] = 10.0 / 3  # 10 × the cell's mean normalised value
                bias = np.full(channels, 3.0 if s == 32 else -20.0)  # only stride 32 finds anything
            elif kind == "bbox":
                bias = np.full(channels, 8.0)
            else:
                bias = np.tile(kps_offsets, 2)
            inits += [_t(f"w_{kind}{s}", w), _t(f"b_{kind}{s}", bias), helper.make_tensor(
                f"shape_{kind}{s}", TensorProto.INT64, [2], [-1, per_anchor])]
            nodes += [
                helper.make_node("Conv", [f"cell{s}", f"w_{kind}{s}", f"b_{kind}{s}"], [f"c_{kind}{s}"]),
                helper.make_node("Transpose", [f"c_{kind}{s}"], [f"t_{kind}{s}"], perm=[0, 2, 3, 1]),
                helper.make_node("Reshape", [f"t_{kind}{s}", f"shape_{kind}{s}"],
                                 [f"r_{kind}{s}" if kind == "score" else f"{kind}_{s}"]),
            ]
            if kind == "score":
                nodes.append(helper.make_node("Sigmoid", [f"r_{kind}{s}"], [f"score_{s}"]))
            outs[kind].append(helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [None, per_anchor]))
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])
    return _graph("scrfd", nodes, [inp], outs["score"] + outs["bbox"] + outs["kps"], inits)


def constant_head(name: str, side: int, values: np.ndarray, batch: int | str = 1, random_weights: bool = False) -> onnx.ModelProto:
    """input (batch, 3, side, side) → output (batch, len(values)): values + (random projection of the mean colour)."""
    n = len(values)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, n)) if random_weights else np.zeros((3, n))
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["proj"]),
        helper.make_node("Add", ["proj", "bias"], ["fc1"]),
    ]
    inp = helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, side, side])
    out = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [batch, n])
    return _graph(name, nodes, [inp], [out], [_t("w", w), _t("bias", values)])


def turned_mean_face(yaw_deg: float) -> np.ndarray:
    """insightface's 68-point mean shape turned by `yaw_deg` (our sign: toward the image's right), as the
    1k3d68 model's 3309 outputs (1103 points × xyz in [-1, 1] of its 192 px crop; the last 68 are used)."""
    from insightface.data import get_object

    mean = get_object("meanshape_68.pkl").astype(np.float64)  # x right, y down, z toward the viewer
    y = math.radians(yaw_deg)
    # in camera axes (z away from the viewer) a yaw to the image's right sends the face normal to +x
    rot = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    flip = np.diag([1.0, 1.0, -1.0])
    pts = (flip @ rot @ flip @ mean.T).T * 0.6  # shrink into the crop
    out = np.zeros((1103, 3))
    out[-68:] = pts
    return out.reshape(-1)


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `buffalo_l`-named pack of tiny graphs, imported into a fresh store with the real `models import`."""
    src = tmp_path_factory.mktemp("tiny_buffalo")
    onnx.save(scrfd_detector(), src / "det_10g.onnx")
    onnx.save(constant_head("lmk3d", 192, turned_mean_face(TURNED_YAW)), src / "1k3d68.onnx")
    onnx.save(constant_head("lmk2d", 192, np.zeros(212), random_weights=True), src / "2d106det.onnx")
    onnx.save(constant_head("genderage", 96, np.array([2.0, -2.0, 0.45])), src / "genderage.onnx")
    onnx.save(constant_head("arcface", 112, np.ones(512) * 0.1, batch="N", random_weights=True), src / "w600k_r50.onnx")
    assert sum(p.stat().st_size for p in src.glob("*.onnx")) < 100_000
    store = tmp_path_factory.mktemp("store")
    models.import_pack("buffalo_l", src, store)
    return store


@pytest.fixture(scope="module")
def no_network() -> Iterator[None]:
    """Any connection attempt beyond loopback fails, from loading the pack on (insightface must never download)."""
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address) -> None:  # noqa: ANN001
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
            raise OSError(f"network blocked in this test: {address}")
        return real_connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):  # noqa: ANN001, ANN202
        raise OSError(f"name resolution blocked in this test: {host}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded_connect)
        mp.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        yield


def test_network_is_really_blocked(no_network: None) -> None:
    import urllib.request

    with pytest.raises(OSError, match="blocked"):
        urllib.request.urlopen("https://github.com/deepinsight/insightface/releases", timeout=5)


def cfg_for(store: Path, **kw: object) -> FacesConfig:
    return FacesConfig(backend="insightface", models_dir=str(store), providers="cpu", det_size=320, min_score=0.5,
                       max_faces=100, **kw)


@pytest.fixture(scope="module")
def analyzer(tiny_pack: Path, no_network: None) -> FaceAnalyzer:
    return load_analyzer(cfg_for(tiny_pack, embedding=True))


def test_real_faceanalysis_runs_every_model_offline(analyzer: FaceAnalyzer, no_network: None) -> None:
    rgb = np.asarray(decode_image(photo_paths()["group6"].read_bytes(), ImageConfig()).rgb)
    faces = analyzer.analyze(rgb)
    assert faces, "the tiny detector reports faces on bright image cells"
    assert analyzer.name == "insightface:buffalo_l"
    assert analyzer.providers == ["CPUExecutionProvider"]
    assert analyzer.app.det_model.input_sizes == [(320, 320)]  # one explicit size, not insightface's 128+640 default
    for f in faces:
        assert f.detector == "insightface:buffalo_l/detection"
        assert 0.5 <= f.score <= 1.0
        assert len(f.landmarks5) == 5
        (lx, ly), (rx, _), (nx, ny), _, _ = f.landmarks5
        cx = (f.box.x1 + f.box.x2) / 2
        assert lx < nx < rx and abs(nx - cx) < 1e-3 * rx  # kps decoded around the anchor centre
        assert f.gender == "female" and f.age == 45.0
        assert f.pose is not None and f.pose.yaw == pytest.approx(TURNED_YAW, abs=0.5)
        assert abs(f.pose.pitch) < 0.5 and abs(f.pose.roll) < 0.5
        assert f.embedding is not None and len(f.embedding) == 512
        assert np.linalg.norm(f.embedding) == pytest.approx(1.0, abs=1e-4)
        assert f.quality is not None and f.quality.size_px > 0
    # the batched embedding matches insightface's own one-face-at-a-time path
    from insightface.utils import face_align

    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    kps = np.asarray(faces[0].landmarks5, dtype=np.float32)
    single = analyzer.recognizer.get_feat(face_align.norm_crop(bgr, landmark=kps, image_size=112)).reshape(-1)
    assert np.allclose(single / np.linalg.norm(single), faces[0].embedding, atol=1e-4)


def test_dark_padding_and_negatives_give_no_face(analyzer: FaceAnalyzer, no_network: None) -> None:
    black = np.zeros((200, 300, 3), dtype=np.uint8)
    assert analyzer.analyze(black) == []


def test_batch_keeps_images_apart_and_reports_bad_pixels(analyzer: FaceAnalyzer, no_network: None) -> None:
    rgb = np.asarray(decode_image(photo_paths()["astronaut"].read_bytes(), ImageConfig()).rgb)
    one, none, broken = analyzer.analyze_batch([rgb, np.zeros((64, 64, 3), np.uint8), np.zeros((4, 4), np.uint8)])
    assert isinstance(one, list) and one and none == []
    assert broken.reason == "no_pixels"


def test_embedding_only_when_asked(tiny_pack: Path, no_network: None) -> None:
    plain = load_analyzer(cfg_for(tiny_pack))
    assert plain.recognizer is None and "recognition" not in plain.app.models
    rgb = np.asarray(decode_image(photo_paths()["hanks"].read_bytes(), ImageConfig()).rgb)
    assert all(f.embedding is None for f in plain.analyze(rgb))


def test_model_attributes_merge_with_labels(analyzer: FaceAnalyzer, no_network: None) -> None:
    rgb = np.asarray(decode_image(photo_paths()["astronaut"].read_bytes(), ImageConfig()).rgb)
    cfg = cfg_for(Path("."))
    sel = select_faces(analyzer.analyze(rgb), cfg, rgb.shape[1], rgb.shape[0])
    measured = model_attributes(sel.faces[sel.primary], {"gender": "buffalo_l/genderage", "age": "buffalo_l/genderage"})
    assert measured["gender"].value == "female" and measured["age"].value == "40-49" and measured["age"].raw == "45"
    labels = {"gender": AttributeValue(value="male", source="label"), "age": AttributeValue(value="20-29", source="label")}
    merged, conflicts = merge_attributes(labels, measured)
    assert merged["gender"].source == "label" and merged["gender"].value == "male"
    assert merged["age"].value == "20-29"
    assert [(c.attribute, c.label_value, c.model_value, c.model) for c in conflicts] == [
        ("gender", "male", "female", "buffalo_l/genderage"),
        ("age", "20-29", 45.0, "buffalo_l/genderage"),
    ]
    # an age within 5 years of the labelled bin is no disagreement (bins are coarse, age models are not exact)
    for near in ("50-59", "30-39"):
        _, conflicts = merge_attributes({"age": AttributeValue(value=near, source="label")}, measured)
        assert conflicts == []


def test_faces_command_with_an_insightface_pack(
    tiny_pack: Path, no_network: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["faces", str(photo_paths()["hanks"]), "--pack", "buffalo_l", "--store", str(tiny_pack),
                               "--providers", "cpu", "--det-size", "320"], monkeypatch, capsys)
    assert code == 0, err
    assert "(insightface:buffalo_l)" in out and "gender female  age 45" in out
    code, out, err = run_main(["faces", str(photo_paths()["hanks"]), "--pack", "antelopev2", "--store", str(tiny_pack)],
                              monkeypatch, capsys)
    assert code == 2 and "facecorpus models pull antelopev2" in err


def test_cuda_without_onnxruntime_gpu_is_a_clear_error(tiny_pack: Path) -> None:
    from facecorpus.errors import UserError
    from facecorpus.faces.onnx_runtime import available_providers

    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this machine has onnxruntime-gpu")
    with pytest.raises(UserError, match="install onnxruntime-gpu instead of onnxruntime"):
        load_analyzer(cfg_for(tiny_pack).model_copy(update={"providers": "cuda"}))


def test_insightface_stage_on_beam_records_label_conflicts(tiny_pack: Path, no_network: None, tmp_path: Path) -> None:
    from tests.faces.test_faces_stage import run_stage, work_item

    cfg = cfg_for(tiny_pack, primary="central").model_copy(
        update={"crop": FaceCropConfig(enabled=True, size=96, align=True)}
    )
    hanks = work_item("hanks", {"gender": "male", "age": "50-59"})
    kept, rejects, _ = run_stage([hanks, work_item("astronaut")], cfg, tmp_path)
    assert rejects == [] and sorted(i.key for i in kept) == ["astronaut", "hanks"]
    h = next(i for i in kept if i.key == "hanks")
    assert h.attributes["gender"].value == "male" and h.attributes["gender"].source == "label"
    assert [(c.attribute, c.model_value) for c in h.attribute_conflicts] == [("gender", "female")]  # 45 is near 50-59
    assert h.flags == ["label_conflict"]
    a = next(i for i in kept if i.key == "astronaut")
    assert a.attributes["gender"].source == "model:buffalo_l/genderage" and a.attribute_conflicts == []
    assert a.image.width == a.image.height == 96 and a.crop.aligned


def test_given_boxes_skip_the_detector(analyzer: FaceAnalyzer, no_network: None) -> None:
    """FaceCaption-15M / FaRL boxes (docs/laion.md): every model but SCRFD runs on the given boxes."""
    from facecorpus.faces.given import GivenFace
    from tests.faces.test_faces_given import FACECAPTION_BOX, FARL_BOX, FARL_POINTS

    rgb = np.asarray(Image.open(INSIGHTFACE_IMAGES / "t1.jpg").convert("RGB"))  # the boxes are in t1's pixels
    unmarked = GivenFace(box=tuple(FACECAPTION_BOX), score=None, landmarks5=None, source="facecaption15m")
    marked = GivenFace(box=tuple(FARL_BOX), score=0.97, landmarks5=tuple(tuple(p) for p in FARL_POINTS), source="farl")
    first, second = sorted(analyzer.analyze_given(rgb, [unmarked, marked]), key=lambda f: f.box.x1)
    assert [first.box.x1, first.box.y1, first.box.x2, first.box.y2] == pytest.approx(FACECAPTION_BOX)
    assert first.detector == "given:facecaption15m" and first.score == 1.0
    assert second.detector == "given:farl" and second.score == pytest.approx(0.97)
    for f in (first, second):  # genderage and the 3D landmarks ran on the given box (the tiny models' fixed outputs)
        assert f.gender == "female" and f.age == 45.0
        assert f.pose is not None and f.pose.yaw == pytest.approx(TURNED_YAW, abs=0.5)
        assert f.embedding is not None and len(f.embedding) == 512
    # 5 points: FaRL's as given; FaceCaption-15M has none, so they come from the 68 landmarks
    assert second.landmarks5 == [tuple(p) for p in FARL_POINTS] and second.landmarks_model is None
    assert first.landmarks_model == "insightface:buffalo_l/landmark_3d_68"
    (lx, _), (rx, _), (nx, _), _, _ = first.landmarks5
    assert FACECAPTION_BOX[0] < lx < nx < rx < FACECAPTION_BOX[2]
