"""Selection rules, primary face, attribute merge and crop geometry on hand-made face records (no models)."""

from __future__ import annotations

import numpy as np
import pytest

from facecorpus.faces.attributes import age_bin, merge_attributes, model_attributes
from facecorpus.faces.config import FaceCropConfig, FacesConfig
from facecorpus.faces.crops import crop_face, move_face
from facecorpus.faces.geometry import (
    ARCFACE_TEMPLATE_112,
    aligned_template,
    similarity_transform,
    transform_points,
)
from facecorpus.faces.selection import select_faces
from facecorpus.records import AttributeValue, Expression, Face, FaceBox, Pose
from facecorpus.rejection import Rejected


def face(x: float, y: float, size: float, score: float = 0.99) -> Face:
    return Face(box=FaceBox(x1=x, y1=y, x2=x + size, y2=y + size * 1.2), score=score, detector="test")


CFG = FacesConfig(backend="portable", min_score=0.9, min_face_size=40, max_faces=3)


@pytest.mark.parametrize(
    ("faces", "reason", "detail"),
    [
        ([], "no_face", "no face"),
        ([face(0, 0, 100, 0.5), face(200, 0, 100, 0.89)], "low_score", "best scores 0.890"),
        ([face(0, 0, 30), face(200, 0, 100, 0.5)], "face_too_small", "largest face is 30 px"),
        ([face(i * 60, 0, 50) for i in range(4)], "too_many_faces", "4 faces"),
    ],
)
def test_rejects_in_order(faces: list[Face], reason: str, detail: str) -> None:
    with pytest.raises(Rejected) as e:
        select_faces(faces, CFG, 640, 480)
    assert e.value.reason == reason and detail in e.value.detail


def test_filters_then_reading_order_and_primary() -> None:
    faces = [face(400, 10, 150), face(10, 10, 60), face(300, 300, 20), face(200, 200, 80, score=0.3)]
    sel = select_faces(faces, CFG, 640, 480)
    assert [f.box.x1 for f in sel.faces] == [10, 400] and sel.dropped == 2
    assert sel.primary == 1  # the largest
    central = select_faces([face(10, 10, 100), face(270, 190, 90)], CFG.model_copy(update={"primary": "central"}), 640, 480)
    assert central.primary == 1


def test_labels_win_and_expression_is_added() -> None:
    f = face(0, 0, 100)
    f.expression = Expression(label="happy", confidence=0.8, probabilities={"happy": 0.8, "neutral": 0.2})
    measured = model_attributes(f, {"expression": "portable/fer"})
    labels = {"gender": AttributeValue(value="female", source="label", raw="Female")}
    merged, conflicts = merge_attributes(labels, measured)
    assert merged["gender"].raw == "Female" and merged["expression"].source == "model:portable/fer"
    assert merged["expression"].confidence == 0.8 and conflicts == []
    assert model_attributes(f, {}) == {}  # a backend that does not measure expression adds nothing


def test_age_bins() -> None:
    assert [age_bin(a) for a in (0, 2.9, 3, 19.5, 29, 70, 103)] == ["0-2", "0-2", "3-9", "10-19", "20-29", "70+", "70+"]


def test_similarity_transform_recovers_rotation_scale_shift() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, size=(5, 2))
    theta = np.radians(30)
    rot = 1.7 * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = src @ rot.T + [12, -7]
    m = similarity_transform(src, dst)
    assert np.allclose(transform_points(m, src), dst, atol=1e-9)


def test_crop_geometry_and_roll_follow_the_rotation() -> None:
    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[100:200, 150:250] = 200
    f = face(150, 100, 100)
    # ArcFace's template turned 20° clockwise (as seen, y down) about the box centre: a head rolled by +20°
    theta = np.radians(20)
    turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    marks = (ARCFACE_TEMPLATE_112 - 56) @ turn.T + [200, 160]
    f.landmarks5 = [(float(x), float(y)) for x, y in marks]
    f.pose = Pose(yaw=5, pitch=0, roll=20)
    square = crop_face(rgb, f, 0, FaceCropConfig(enabled=True, margin=0.5, size=None))
    assert square.pixels.shape == (240, 240, 3)  # native size: 120 px box × (1 + 2 × 0.5)
    assert square.crop.box.x1 == pytest.approx(200 - 120) and square.crop.box.y1 == pytest.approx(160 - 120)
    aligned = crop_face(rgb, f, 0, FaceCropConfig(enabled=True, margin=0.25, size=112, align=True))
    moved = move_face(f, aligned.affine)
    (lx, ly), (rx, ry) = moved.landmarks5[:2]
    assert abs(ly - ry) < 0.01 * (rx - lx)
    assert abs(moved.pose.roll) < 0.5 and moved.pose.yaw == 5  # the crop turned the head upright
    assert np.allclose(moved.landmarks5, aligned_template(112, 0.25), atol=1e-6)
