"""A local wheelhouse for installing facecorpus with plain pip in a fresh venv, offline and fast.

The wheels are packed from the distributions installed in the test environment (which `make` installed
from PyPI with uv): each one's files as its RECORD lists them, its metadata, and a new RECORD with the
hashes of what was packed. So pip resolves facecorpus's real requirements against the real metadata of
the releases PyPI serves, and installs them, without the network. Only the requirement closure of
facecorpus and the extras asked for is packed; wheels are kept in the venv's test cache (next to the
model-pack artifacts) and reused while the installed version is the same.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import re
import sys
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.model_packs import cache_lock

CACHE = Path(sys.prefix) / "facecorpus-test-cache" / "wheelhouse"
#: written by the installer, not part of a wheel
_INSTALLER_FILES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def _dist(name: str) -> md.Distribution | None:
    try:
        return md.distribution(name)
    except md.PackageNotFoundError:
        return None


def closure(roots: list[str]) -> dict[str, md.Distribution]:
    """Installed distributions needed by these requirement strings (extras followed, markers evaluated)."""
    env = default_environment()
    seen: dict[str, md.Distribution] = {}
    todo = [(Requirement(r), "") for r in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        dist = _dist(req.name)
        if dist is None:
            raise LookupError(f"{req} is needed but not installed in the test environment")
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen[key] = dist
        for dep in dist.requires or []:
            d = Requirement(dep)
            for wanted in [""] + sorted(req.extras):
                if d.marker is None or d.marker.evaluate({**env, "extra": wanted}):
                    todo.append((d, wanted))
                    break
    return {canonicalize_name(d.metadata["Name"]): d for d in seen.values()}


def _wheel_name(dist: md.Distribution) -> str:
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    if not tags:
        raise LookupError(f"{dist.metadata['Name']} has no WHEEL tags (not installed from a wheel)")
    interp = ".".join(sorted({t.split("-")[0] for t in tags}))
    abi = ".".join(sorted({t.split("-")[1] for t in tags}))
    plat = ".".join(sorted({t.split("-")[2] for t in tags}))
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    return f"{name}-{dist.version}-{interp}-{abi}-{plat}.whl"


def _entry_point_scripts(dist: md.Distribution) -> set[str]:
    return {ep.name for ep in dist.entry_points if ep.group in ("console_scripts", "gui_scripts")}


def pack(dist: md.Distribution, dest: Path) -> Path:
    """One installed distribution as a wheel file in `dest` (kept if already there)."""
    with cache_lock():
        return _pack(dist, dest)


def _pack(dist: md.Distribution, dest: Path) -> Path:
    out = dest / _wheel_name(dist)
    if out.is_file():
        return out
    site = Path(dist.locate_file(""))
    info_dir = next(p for p in (dist.files or []) if p.parent.name.endswith(".dist-info")).parent.as_posix()
    data_dir = info_dir.removesuffix(".dist-info") + ".data"
    scripts = _entry_point_scripts(dist)
    record = []
    tmp = out.with_suffix(".part")
    # stored, not deflated: packing speed matters here, size does not
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as whl:
        for f in dist.files or []:
            rel = f.as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc"):
                continue
            if rel.startswith(info_dir + "/") and rel.split("/", 1)[1] in _INSTALLER_FILES:
                continue
            if rel.startswith("../"):  # outside site-packages: bin/ scripts and data files
                parts = Path(rel).parts
                tail = parts[next(i for i, p in enumerate(parts) if p != ".."):]
                if tail[0] == "bin":
                    if tail[-1] in scripts:
                        continue  # pip writes entry-point scripts itself
                    arc = f"{data_dir}/scripts/{'/'.join(tail[1:])}"
                else:
                    arc = f"{data_dir}/data/{'/'.join(tail)}"
            else:
                arc = rel
            path = (site / f).resolve()
            if not path.is_file():
                continue
            data = path.read_bytes()
            whl.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append((arc, f"sha256={digest}", str(len(data))))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows(record)
        writer.writerow((f"{info_dir}/RECORD", "", ""))
        whl.writestr(f"{info_dir}/RECORD", buf.getvalue())
    tmp.replace(out)
    return out


def _already_a_wheel(dist: md.Distribution, folders: list[Path]) -> Path | None:
    """A folder already holding this release's wheel (e.g. /opt/wheels' torch): no need to pack it."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    for folder in folders:
        for whl in folder.glob("*.whl") if folder.is_dir() else []:
            stem = whl.name.lower().split("-")
            if stem[0] == name and stem[1] == dist.version.lower():
                return folder
    return None


def build(roots: list[str], dest: Path = CACHE, reuse: tuple[Path, ...] = (Path("/opt/wheels"),)) -> list[Path]:
    """Folders (for pip's --find-links) holding wheels for every distribution the roots need, facecorpus
    excluded: `dest`, where missing ones are packed, and those of `reuse` that already had some."""
    with cache_lock():  # test processes running at once pack into one folder
        return _build(roots, dest, reuse)


def _build(roots: list[str], dest: Path, reuse: tuple[Path, ...]) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    folders = [dest]
    for name, dist in sorted(closure(roots).items()):
        if name == "facecorpus":
            continue
        found = _already_a_wheel(dist, list(reuse))
        if found is not None:
            folders += [found] if found not in folders else []
        else:
            pack(dist, dest)
    return folders
