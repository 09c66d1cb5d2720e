"""The face stage on Beam (RunInference + selection + crops + attribute merge), alone and inside `facecorpus run`."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from facecorpus.demo import photo_paths
from facecorpus.faces.config import FaceCropConfig, FacesConfig
from facecorpus.faces.face_stage import FaceStage
from facecorpus.image_check import decode_image, encode_jpeg
from facecorpus.image_config import ImageConfig
from facecorpus.records import AttributeValue, Reject, SourceInfo
from facecorpus.stage import METRICS_NAMESPACE, REJECTS, WorkItem
from tests.support.helpers import write_recipe
from tests.support.inprocess_cli import run_main
from tests.support.model_packs import cached_store


@pytest.fixture(scope="module")
def store() -> Path:
    return cached_store("portable")


def work_item(name: str, labels: dict[str, str] | None = None) -> WorkItem:
    decoded = decode_image(photo_paths()[name].read_bytes(), ImageConfig())
    return WorkItem(
        key=name,
        source=SourceInfo(dataset="photos", id=f"{name}.jpg"),
        labels={k: AttributeValue(value=v, source="label") for k, v in (labels or {}).items()},
        image=decoded.info,
        jpeg=encode_jpeg(decoded.rgb, 92),
        pixels=np.asarray(decoded.rgb),
    )


def run_stage(items: list[WorkItem], cfg: FacesConfig, out: Path) -> tuple[list[WorkItem], list[Reject], int]:
    """Run FaceStage on FnApiRunner; (kept items, rejects, the `inputs` counter the stage added)."""
    out.mkdir(parents=True, exist_ok=True)

    def dump(kind: str):  # noqa: ANN202 - one pickle per element, read back after the run
        import pickle
        import uuid

        def write(x: object) -> None:
            (out / f"{kind}-{uuid.uuid4().hex}.pkl").write_bytes(pickle.dumps(x))

        return write

    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    result = p | beam.Create(items) | FaceStage(cfg, jpeg_quality=90)
    _ = result["main"] | "Kept" >> beam.Map(lambda it: dump("kept")(it.without_pixels()))
    _ = result[REJECTS] | "Rejected" >> beam.Map(dump("reject"))
    res = p.run()
    res.wait_until_finish()
    import pickle

    kept = [pickle.loads(f.read_bytes()) for f in sorted(out.glob("kept-*.pkl"))]
    rejects = [pickle.loads(f.read_bytes()) for f in sorted(out.glob("reject-*.pkl"))]
    found = res.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name("inputs"))["counters"]
    return kept, rejects, int(sum(c.committed or c.attempted or 0 for c in found))


def test_one_sample_per_face_with_aligned_crops_on_beam(store: Path, tmp_path: Path) -> None:
    cfg = FacesConfig(
        backend="portable", models_dir=str(store), providers="cpu", unit="face", batch_size=3,
        crop=FaceCropConfig(enabled=True, margin=0.25, size=160, align=True),
    )
    hanks = work_item("hanks", {"gender": "male", "age": "50-59"})
    broken = WorkItem(key="broken", source=SourceInfo(dataset="photos", id="broken.jpg"))  # no pixels
    items = [work_item("group6"), hanks, work_item("coffee"), work_item("rocket"), broken]
    kept, rejects, extra_inputs = run_stage(items, cfg, tmp_path)

    assert sorted(i.key for i in kept) == sorted([f"group6_f{i}" for i in range(6)] + ["hanks_f0"])
    assert extra_inputs == 5  # the group photo was one input and became six samples
    by_reason = {r.source_id: r.reason for r in rejects}
    assert by_reason == {"coffee.jpg": "no_face", "rocket.jpg": "no_face", "broken.jpg": "no_pixels"}
    assert all(r.stage == "faces" and r.detail for r in rejects)
    for item in kept:
        stored = Image.open(io.BytesIO(item.jpeg))
        assert stored.size == (item.image.width, item.image.height) == (160, 160)
        assert item.crop is not None and item.crop.aligned and item.crop.size == 160
        assert item.crop.face_index == int(item.key.rsplit("_f", 1)[1])
        face = item.faces[item.primary_face]
        (lx, ly), (rx, ry) = face.landmarks5[:2]
        assert abs(ly - ry) < 0.18 * (rx - lx) and 0 < lx < rx < 160  # aligned by 5 points: eyes within 10° of level
        assert item.attributes["expression"].source == "model:portable/fer"
    # labels belong to the image's subject and win; the model's expression is added beside them
    h = next(i for i in kept if i.key == "hanks_f0")
    assert h.attributes["gender"].source == "label" and h.attributes["expression"].value == "happy"
    assert h.attribute_conflicts == []
    group_phashes = {i.image.phash for i in kept if i.key.startswith("group6")}
    assert len(group_phashes) == 6  # each sample describes its own crop


def test_image_unit_without_crop_and_max_faces(store: Path, tmp_path: Path) -> None:
    cfg = FacesConfig(backend="portable", models_dir=str(store), providers="cpu", max_faces=5, primary="central")
    kept, rejects, extra_inputs = run_stage([work_item("group6"), work_item("astronaut")], cfg, tmp_path)
    assert [r.reason for r in rejects] == ["too_many_faces"] and "6 faces" in rejects[0].detail
    assert extra_inputs == 0
    (astro,) = kept
    assert astro.crop is None and len(astro.faces) == 1 and astro.primary_face == 0
    assert astro.image.width == 512  # the stored image is untouched


def _recipe(tmp_path: Path, photos: Path, faces: dict, **more: dict) -> Path:
    return write_recipe(tmp_path / "recipe.yaml", {
        "name": "faces-e2e",
        "sources": [{"type": "folder", "path": str(photos), "dataset": "photos"}],
        "faces": faces,
        "generation": {"generator": "templates"},
        "output": {"samples_per_shard": 4},
        "runner": {"runner": "FnApiRunner"},
        **more,
    })


def test_run_with_portable_faces_validates(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("group6", "hanks", "coffee"):
        src = photo_paths()[name]
        shutil.copyfile(src, photos / f"{name}{src.suffix}")
    # exact and near dedup stay on: every face of the group photo shares its sha256 and pHash, and neither
    # the pipeline nor `validate` may call those samples duplicates of each other
    recipe = _recipe(tmp_path, photos, {"backend": "portable", "unit": "face", "crop": {"enabled": True, "size": 128}})
    monkeypatch.setenv("FACECORPUS_MODELS", str(store))
    out = tmp_path / "out"
    code, stdout, stderr = run_main(["run", str(recipe), "--out", str(out)], monkeypatch, capsys)
    assert code == 0, stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["inputs"] == stats["written"] + stats["rejected"] == 8  # 3 files; the group photo is 6 inputs
    assert stats["written"] == 7 and stats["by_reason"] == {"no_face": 1}
    code, stdout, stderr = run_main(["validate", str(out)], monkeypatch, capsys)
    assert code == 0, stderr
    records = []
    for shard in (out / "shards").glob("*.tar"):
        with tarfile.open(shard) as tf:
            members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                rec = json.loads(data)
                img = Image.open(io.BytesIO(members[name[:-5] + ".jpg"]))
                assert img.size == (rec["image"]["width"], rec["image"]["height"]) == (128, 128)
                records.append(rec)
    assert all(r["crop"] and r["faces"][r["primary_face"]]["pose"] for r in records)
    assert any("pose" == qa["category"] for r in records for qa in r["qa"])  # the generator used the measured pose


def test_missing_pack_fails_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(photo_paths()["hanks"], photos / "hanks.png")
    recipe = _recipe(tmp_path, photos, {"backend": "insightface", "models_dir": str(tmp_path / "empty-store")})
    out = tmp_path / "out"
    code, stdout, stderr = run_main(["run", str(recipe), "--out", str(out)], monkeypatch, capsys)
    assert code == 2
    assert "facecorpus models pull buffalo_l" in stderr and "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.parametrize("detector", ["blazeface", "mtcnn"])
def test_model_failures_become_rejects(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, detector: str) -> None:
    from facecorpus.faces.blazeface import BlazeFace
    from facecorpus.faces.mtcnn import MTCNN
    from facecorpus.faces.portable import PortableAnalyzer

    model = BlazeFace if detector == "blazeface" else MTCNN
    real_detect = model.detect

    def detect_or_fail(self: BlazeFace | MTCNN, rgb: np.ndarray, **kwargs: object):  # noqa: ANN202
        if rgb.shape[:2] == (112, 112):  # the Tom Hanks crop
            raise RuntimeError("simulated model runtime failure")
        return real_detect(self, rgb, **kwargs)

    monkeypatch.setattr(model, "detect", detect_or_fail)
    cfg = FacesConfig(backend="portable", models_dir=str(store), providers="cpu", batch_size=2, detector=detector)
    kept, rejects, _ = run_stage([work_item("hanks"), work_item("astronaut")], cfg, tmp_path / "one")
    assert [i.key for i in kept] == ["astronaut"]  # one bad image does not take its batch down
    (r,) = rejects
    assert (r.source_id, r.reason, r.retryable) == ("hanks.jpg", "model_error", True)
    assert "simulated model runtime failure" in r.detail

    def whole_batch_fails(self: PortableAnalyzer, images: list, given: list | None = None, priors: list | None = None) -> list:
        raise MemoryError("simulated out of memory for the batch")

    monkeypatch.setattr(PortableAnalyzer, "analyze_batch", whole_batch_fails)
    kept, rejects, _ = run_stage([work_item("hanks"), work_item("astronaut")], cfg, tmp_path / "batch")
    assert kept == []
    assert sorted((r.source_id, r.reason, r.retryable) for r in rejects) == [
        ("astronaut.jpg", "model_error", True), ("hanks.jpg", "model_error", True)]
    assert all("simulated out of memory" in r.detail for r in rejects)


@pytest.mark.parametrize("setting", ["auto", "any"])
def test_size_prior_travels_from_the_item_to_the_search(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    from facecorpus.faces.priors import CROP
    from facecorpus.faces.search import FaceFinder

    planned: dict[tuple[int, int], list[str]] = {}
    real_plan = FaceFinder.plan

    def spy(self: FaceFinder, rgb: np.ndarray, prior: str | None):  # noqa: ANN202
        views = real_plan(self, rgb, prior)
        planned.setdefault(rgb.shape[:2], []).extend(v.model for v in views)
        return views

    monkeypatch.setattr(FaceFinder, "plan", spy)
    crop = work_item("hanks")  # a face crop, as FairFace's items are
    crop.face_size = CROP
    cfg = FacesConfig(backend="portable", models_dir=str(store), providers="cpu", size_prior=setting)  # type: ignore[arg-type]
    kept, rejects, _ = run_stage([crop, work_item("astronaut")], cfg, tmp_path)
    assert sorted(i.key for i in kept) == ["astronaut", "hanks"] and rejects == []
    assert planned[(512, 512)] == ["full_range"]  # no hint: every scale
    assert planned[(112, 112)] == (["short_range"] if setting == "auto" else ["full_range"])
