"""`facecorpus validate DIR`: every check a consumer of the output relies on.
(Just over 400 lines; the output package of issue 14 is to split the readers from the checks.)

Shards readable to the end; members grouped per key as KEY.jpg / KEY.json / KEY.txt; keys unique across
shards and without dots; every KEY.json valid against schemas/sample.schema.json (jsonschema) and the
pydantic model, its key matching the member name, KEY.txt equal to its caption; JPEGs decodable;
manifest rows ↔ shard samples, each row equal to the row its record gives and holding the sha256 of
its KEY.json and KEY.jpg (so an edited member is caught); index.json ↔ shards; rejects well-formed,
no input rejected twice or both written and rejected; stats consistent (`inputs == written +
rejected`, written == samples, rejected == reject lines, counts per reason and stage); no partial files
left by an interrupted run; run.json with its fingerprint; and, with the recipe recorded in run.json,
every record passes the recipe's record rules again (refusals, bounds, categories, charset, label
consistency), no two written images are (near-)duplicates and none is on a hold-out list.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import numpy as np
from apache_beam.io.filesystems import FileSystems
from PIL import Image
from pydantic import ValidationError

from ..image_check import hamming
from ..recipe import Recipe
from ..records import Reject, Sample
from ..resources import data_dir
from ..sinks.manifest import FILE_COLUMNS, MANIFEST_SCHEMA, manifest_row
from ..sinks.run_files import (
    INDEX_FILE,
    RUN_FILE,
    STATS_FILE,
    file_size,
    iter_rejects,
    read_manifest,
    read_text,
    shard_files,
)
from ..sinks.shards import SHARDS_DIR, TMP_DIR
from ..storage import folder_exists
from .dedup import band_keys
from .holdout import read_holdout_list
from .record_checks import RecordRules, check_record, rules_for, verdict
from .resume import half_written_files

MAX_PROBLEMS_PER_KIND = 20
#: manifest columns compared with the row the record gives (the contract's and the flat ones)
_COMPARED = [name for name in MANIFEST_SCHEMA.names if name not in FILE_COLUMNS]


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why (does not fail)
    samples: int = 0
    shards: int = 0
    rejects: int = 0
    _kinds: Counter = field(default_factory=Counter)

    def add(self, kind: str, message: str) -> None:
        self._kinds[kind] += 1
        if self._kinds[kind] <= MAX_PROBLEMS_PER_KIND:
            self.problems.append(message)
        elif self._kinds[kind] == MAX_PROBLEMS_PER_KIND + 1:
            self.problems.append(f"… more {kind} problems not listed")

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class SeenSample:
    """What the later checks need of one sample (the record itself is not kept)."""

    shard: str
    record_sha256: str
    jpeg_sha256: str
    row: dict[str, Any] | None  # the manifest row its record gives; None when the record is invalid
    sha256: str | None = None
    phash: str | None = None
    face_index: int | None = None  # crop.face_index: one photo yields one sample per face with `faces.unit: face`


def sample_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((data_dir("schemas") / "sample.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _read_groups(path: str, rep: Report) -> dict[str, dict[str, bytes]] | None:
    shard = path.rsplit("/", 1)[-1]
    groups: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    try:
        with FileSystems.open(path) as f, tarfile.open(fileobj=io.BytesIO(f.read()), mode="r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                base = m.name.rsplit("/", 1)[-1]
                key, _, ext = base.partition(".")
                if key not in groups:
                    if key in order:
                        rep.add("shard", f"{shard}: members of {key} are not contiguous")
                    groups[key] = {}
                    order.append(key)
                fh = tar.extractfile(m)
                groups[key][ext] = fh.read() if fh else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        rep.add("shard", f"{shard}: not a readable tar ({type(e).__name__}: {e})")
        return None
    return groups


def _check_sample(shard: str, key: str, parts: dict[str, bytes], rep: Report, validator: Any,
                  rules: RecordRules | None) -> Sample | None:
    missing = {"jpg", "json", "txt"} - set(parts)
    if missing:
        rep.add("member", f"{shard}: {key} lacks {sorted(missing)}")
        return None
    try:
        record = json.loads(parts["json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        rep.add("json", f"{shard}: {key}.json is not JSON ({e})")
        return None
    errors = sorted(validator.iter_errors(record), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(root)"
        rep.add("schema", f"{shard}: {key}.json fails the schema at {where}: {errors[0].message[:200]}")
        return None
    try:
        sample = Sample.model_validate(record)
    except ValidationError as e:
        rep.add("schema", f"{shard}: {key}.json fails the record model: {e.errors()[0]['msg']}")
        return None
    if sample.key != key:
        rep.add("key", f"{shard}: {key}.json says its key is {sample.key}")
    if parts["txt"].decode("utf-8", errors="replace") != sample.caption:
        rep.add("member", f"{shard}: {key}.txt differs from the caption in {key}.json")
    try:
        with Image.open(io.BytesIO(parts["jpg"])) as im:
            im.load()
            if im.size != (sample.image.width, sample.image.height):
                rep.add("image", f"{shard}: {key}.jpg is {im.size[0]}x{im.size[1]}, record says "
                                 f"{sample.image.width}x{sample.image.height}")
    except Exception as e:  # noqa: BLE001 - any decode failure is a finding
        rep.add("image", f"{shard}: {key}.jpg does not decode ({type(e).__name__})")
    if rules is not None:
        bad, _ = verdict(check_record(sample, rules), rules)
        if bad is not None:
            rep.add("record", f"{shard}: {key} breaks the recipe's record rules ({bad.reason}): {bad.detail}")
    return sample


def _check_shards(out: str, rep: Report, rules: RecordRules | None) -> tuple[dict[str, SeenSample], dict[str, int]]:
    validator = sample_validator()
    seen: dict[str, SeenSample] = {}
    sizes: dict[str, int] = {}
    shards = shard_files(out)
    rep.shards = len(shards)
    for path in shards:
        shard = path.rsplit("/", 1)[-1]
        sizes[shard] = file_size(path)
        groups = _read_groups(path, rep)
        for key, parts in (groups or {}).items():
            rep.samples += 1
            if key in seen:
                rep.add("key", f"key {key} appears in {seen[key].shard} and {shard}")
            sample = _check_sample(shard, key, parts, rep, validator, rules)
            seen[key] = SeenSample(
                shard=shard,
                record_sha256=hashlib.sha256(parts.get("json", b"")).hexdigest(),
                jpeg_sha256=hashlib.sha256(parts.get("jpg", b"")).hexdigest(),
                row=manifest_row(sample, shard) if sample is not None else None,
                sha256=sample.image.sha256 if sample is not None else None,
                phash=sample.image.phash if sample is not None else None,
                face_index=sample.crop.face_index if sample is not None and sample.crop is not None else None,
            )
    return seen, sizes


def _check_manifest(out: str, rep: Report, seen: dict[str, SeenSample]) -> None:
    try:
        manifest = read_manifest(out)
    except Exception as e:  # noqa: BLE001
        rep.add("manifest", f"manifest/ cannot be read ({type(e).__name__}: {e})")
        return
    rows = manifest.to_pylist()
    mkeys = Counter(r["key"] for r in rows)
    for k, n in mkeys.items():
        if n > 1:
            rep.add("manifest", f"manifest lists {k} {n} times")
    for r in rows:
        s = seen.get(r["key"])
        if s is None:
            rep.add("manifest", f"manifest row {r['key']} has no sample in the shards")
            continue
        if s.shard != r["shard"]:
            rep.add("manifest", f"manifest says {r['key']} is in {r['shard']}, it is in {s.shard}")
        if r.get("record_sha256") and r["record_sha256"] != s.record_sha256:
            rep.add("manifest", f"{s.shard}: {r['key']}.json was changed after it was written (sha256 differs from the manifest)")
        if r.get("jpeg_sha256") and r["jpeg_sha256"] != s.jpeg_sha256:
            rep.add("manifest", f"{s.shard}: {r['key']}.jpg was changed after it was written (sha256 differs from the manifest)")
        if s.row is not None:
            differ = [c for c in _COMPARED if c in r and r[c] != s.row[c] and not _both_nan(r[c], s.row[c])]
            if differ:
                rep.add("manifest", f"manifest row {r['key']} disagrees with its record on {', '.join(differ[:5])}")
    for k, s in seen.items():
        if k not in mkeys:
            rep.add("manifest", f"sample {k} in {s.shard} has no manifest row")


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and a != a and b != b


def _check_index(out: str, rep: Report, seen: dict[str, SeenSample], sizes: dict[str, int]) -> None:
    index_path = FileSystems.join(out, INDEX_FILE)
    if not FileSystems.exists(index_path):
        rep.add("index", "index.json is missing")
        return
    try:
        index = json.loads(read_text(index_path))
        listed = {s["url"].rsplit("/", 1)[-1]: s for s in index["shardlist"]}
        counts = Counter(s.shard for s in seen.values())
        for name in sizes:
            if name not in listed:
                rep.add("index", f"index.json does not list {name}")
        for name, entry in listed.items():
            if name not in sizes:
                rep.add("index", f"index.json lists {name}, which does not exist")
                continue
            if entry.get("nsamples") != counts.get(name, 0):
                rep.add("index", f"index.json says {name} has {entry.get('nsamples')} samples, it has {counts.get(name, 0)}")
            if "filesize" in entry and entry["filesize"] != sizes[name]:
                rep.add("index", f"index.json says {name} has {entry['filesize']} bytes, it has {sizes[name]}")
    except (KeyError, TypeError, ValueError) as e:
        rep.add("index", f"index.json is malformed ({type(e).__name__}: {e})")


def _check_rejects(out: str, rep: Report, seen: dict[str, SeenSample]) -> list[Reject]:
    rejects: list[Reject] = []
    by_key: dict[str, str] = {}
    lines: Counter = Counter()
    for path, lineno, line in iter_rejects(out):
        rep.rejects += 1
        where = f"{path.rsplit('/', 1)[-1]} line {lineno}"
        try:
            r = Reject.model_validate_json(line)
        except ValidationError as e:
            rep.add("rejects", f"{where}: not a valid reject ({e.errors()[0]['msg']})")
            continue
        rejects.append(r)
        if r.key is not None:
            if r.key in seen:
                rep.add("rejects", f"{where}: {r.key} is rejected ({r.reason}) and also written in {seen[r.key].shard}")
            if r.key in by_key:
                rep.add("rejects", f"{where}: {r.key} is rejected twice (also at {by_key[r.key]})")
            by_key.setdefault(r.key, where)
        else:
            ident = (r.dataset, r.source_id, r.stage, r.reason, r.detail)
            lines[ident] += 1
            if lines[ident] == 2:
                rep.add("rejects", f"{where}: the same reject of {r.source_id} ({r.reason}) appears twice")
    return rejects


def _check_stats(out: str, rep: Report, rejects: list[Reject]) -> None:
    stats_path = FileSystems.join(out, STATS_FILE)
    if not FileSystems.exists(stats_path):
        rep.add("stats", "stats.json is missing")
        return
    try:
        stats = json.loads(read_text(stats_path))
        if stats["inputs"] != stats["written"] + stats["rejected"]:
            rep.add("stats", f"stats: inputs {stats['inputs']} != written {stats['written']} + rejected {stats['rejected']}")
        if stats["written"] != rep.samples:
            rep.add("stats", f"stats: written {stats['written']} but the shards hold {rep.samples} samples")
        if stats["rejected"] != rep.rejects:
            rep.add("stats", f"stats: rejected {stats['rejected']} but rejects/ holds {rep.rejects} lines")
        by_reason = dict(Counter(r.reason for r in rejects))
        if "by_reason" in stats and stats["by_reason"] != by_reason and len(rejects) == rep.rejects:
            rep.add("stats", f"stats: by_reason {stats['by_reason']} but the reject lines give {dict(sorted(by_reason.items()))}")
        by_stage: dict[str, dict[str, int]] = {}
        for r in rejects:
            by_stage.setdefault(r.stage, {}).setdefault(r.reason, 0)
            by_stage[r.stage][r.reason] += 1
        if "by_stage" in stats and stats["by_stage"] != by_stage and len(rejects) == rep.rejects:
            rep.add("stats", "stats: by_stage does not match the reject lines")
    except (KeyError, TypeError, ValueError) as e:
        rep.add("stats", f"stats.json is malformed ({type(e).__name__}: {e})")


def _check_leftovers(out: str, rep: Report) -> None:
    tmp = FileSystems.join(out, SHARDS_DIR, TMP_DIR)
    try:
        left = [m.path for m in FileSystems.match([tmp + "/**"])[0].metadata_list]
    except Exception:  # noqa: BLE001 - no _tmp folder at all is fine
        left = []
    if left:
        rep.add("partial", f"shards/_tmp holds {len(left)} partial file(s) from an interrupted run: finish it with "
                           f"`facecorpus run … --resume`")
    aside = half_written_files(out)
    if aside:
        rep.add("partial", f"{len(aside)} half-written file(s) from an interrupted run, e.g. {aside[0].rsplit('/', 1)[-1]}: "
                           f"finish it with `facecorpus run … --resume`")


def _recipe_of(out: str, rep: Report) -> Recipe | None:
    path = FileSystems.join(out, RUN_FILE)
    if not FileSystems.exists(path):
        rep.add("run", "run.json is missing: what made this output (recipe, fingerprint) is unknown")
        return None
    try:
        info = json.loads(read_text(path))
    except ValueError as e:
        rep.add("run", f"run.json is not JSON ({e})")
        return None
    if not isinstance(info, dict) or "fingerprint" not in info:
        rep.add("run", "run.json has no fingerprint")
        return None
    if "recipe_json" not in info:
        rep.notes.append("run.json does not record the recipe: record rules, dedup and hold-out not re-checked")
        return None
    try:
        return Recipe.model_validate(info["recipe_json"])
    except ValidationError as e:
        rep.add("run", f"run.json's recipe does not load ({e.errors()[0]['msg']})")
        return None


def _check_duplicates(recipe: Recipe, rep: Report, seen: dict[str, SeenSample]) -> None:
    """The written images hold no pair the recipe's dedup would have rejected (banded like the pipeline).

    Dedup works on input images, before faces are found: the samples of different faces of one photo
    (same sha256, different `crop.face_index`) are not duplicates of each other; two samples of the same
    face of the same photo are.
    """
    d = recipe.validation.dedup
    if d.exact:
        by_sha: dict[tuple[str, int | None], str] = {}
        for k in sorted(seen):
            s = seen[k].sha256
            ident = (s, seen[k].face_index)
            if s is not None and ident in by_sha:
                rep.add("dedup", f"{k} and {by_sha[ident]} are the same image (sha256 {s[:12]}…)")  # type: ignore[index]
            elif s is not None:
                by_sha[ident] = k  # type: ignore[index]
    if d.near:
        buckets: dict[str, list[str]] = {}
        for k in sorted(seen):
            if seen[k].phash is not None:
                for b in band_keys(seen[k].phash, d.max_distance):  # type: ignore[arg-type]
                    buckets.setdefault(b, []).append(k)
        reported: set[tuple[str, str]] = set()
        for keys in buckets.values():
            for i, a in enumerate(keys):
                for b in keys[i + 1 :]:
                    if seen[a].sha256 is not None and seen[a].sha256 == seen[b].sha256:
                        continue  # one photo: its faces (or an exact duplicate, reported above)
                    dist = hamming(seen[a].phash, seen[b].phash)  # type: ignore[arg-type]
                    if dist <= d.max_distance and (a, b) not in reported:
                        reported.add((a, b))
                        rep.add("dedup", f"{a} and {b} are near duplicates (pHash distance {dist} ≤ {d.max_distance})")


def _check_holdout(recipe: Recipe, rep: Report, seen: dict[str, SeenSample]) -> None:
    h = recipe.validation.holdout
    for path in h.lists:
        try:
            listed = read_holdout_list(path)
        except Exception as e:  # noqa: BLE001 - a list moved away cannot be checked; say so
            rep.notes.append(f"hold-out list not re-checked: {e}")
            continue
        shas = {sha: ident for sha, _, ident in listed if sha}
        ids = [ident for _, p, ident in listed if p]
        held = np.array([int(p, 16) for _, p, _ in listed if p], dtype=np.uint64)
        for k, s in sorted(seen.items()):
            if s.sha256 in shas:
                rep.add("holdout", f"{k} is held-out image {shas[s.sha256]} (same sha256)")
            elif h.max_distance is not None and s.phash is not None and len(held):
                dist = np.bitwise_count(held ^ np.uint64(int(s.phash, 16)))
                j = int(dist.argmin())
                if dist[j] <= h.max_distance:
                    rep.add("holdout", f"{k} is within pHash distance {int(dist[j])} of held-out image {ids[j]}")


def check_output(out: str) -> Report:
    """Every check above on the output folder `out`; the report lists what is wrong (empty: valid)."""
    rep = Report()
    if not folder_exists(out):
        rep.add("layout", f"{out} does not exist")
        return rep
    recipe = _recipe_of(out, rep)
    rules = rules_for(recipe) if recipe is not None else None
    seen, sizes = _check_shards(out, rep, rules)
    _check_manifest(out, rep, seen)
    _check_index(out, rep, seen, sizes)
    rejects = _check_rejects(out, rep, seen)
    _check_stats(out, rep, rejects)
    _check_leftovers(out, rep)
    if recipe is not None:
        _check_duplicates(recipe, rep, seen)
        _check_holdout(recipe, rep, seen)
    return rep
