"""`facecorpus validate DIR`: every check a consumer of the output relies on, in bounded memory.

Shards readable to the end; members grouped per key as KEY.jpg / KEY.json / KEY.txt; keys unique across
shards and without dots; every KEY.json valid against schemas/sample.schema.json (jsonschema) and the
pydantic model, its key matching the member name, KEY.txt equal to its caption; JPEGs decodable;
manifest rows ↔ shard samples, each row equal to the row its record gives and holding the sha256 of
its KEY.json and KEY.jpg (so an edited member is caught); index.json ↔ shards; rejects well-formed,
no input rejected twice or both written and rejected; stats consistent (`inputs == written +
rejected`, written == samples, rejected == reject lines, counts per reason and stage); no partial files
left by an interrupted run; run.json with its fingerprint; and, with the recipe recorded in run.json,
every record passes the recipe's record rules again (refusals, bounds, categories, charset, label
consistency), no two written images are (near-)duplicates and none is on a hold-out list
(output/check_rules.py).

Memory: a shard is read member by member through a FileSystems stream (one sample at a time), its own
manifest file (manifest/<shard>.parquet, the same rows) in pyarrow batches beside it, reject lines one
at a time (output/check_rejects.py: 16 bytes kept per line). What stays for the whole output is a few
fields per sample (`SeenSample`: key, shard, image hashes, and the dedup check's bands: under 1 KB,
benchmarks/finalize.py) for the checks that span shards (unique keys, written vs rejected, duplicates)
— not records, images or manifest rows. One process: a LAION-scale output (tens of millions of
samples, ~3 ms of CPU each) would need these checks as a Beam job (not done).
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
from apache_beam.io.filesystems import FileSystems
from PIL import Image
from pydantic import ValidationError

from ..recipe import Recipe
from ..records import Sample
from ..resources import data_dir
from ..storage import folder_exists, match_paths, match_sizes, read_text
from ..validation.record_checks import RecordRules, check_record, rules_for, verdict
from .check_rejects import check_rejects
from .check_rules import SeenSample, check_duplicates, check_holdout
from .layout import (
    INDEX_FILE,
    RUN_FILE,
    SHARDS_DIR,
    STATS_FILE,
    half_written_files,
    manifest_files,
    name_of,
    tmp_dir,
)
from .manifest import FILE_COLUMNS, MANIFEST_SCHEMA, manifest_row
from .readers import iter_manifest_batches, iter_shard_groups
from .summaries import RejectSummary

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


def sample_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((data_dir("schemas") / "sample.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


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


@dataclass
class _Written:
    """A sample as the manifest check needs it: where it is, the sha256 of its members, the row its record gives."""

    shard: str
    record_sha256: str
    jpeg_sha256: str
    row: dict[str, Any] | None  # None when the record is invalid


@dataclass
class _Manifest:
    """The manifest side of the check, kept across shards only for rows and samples that did not pair up
    within their shard (none in a sound output)."""

    messages: list[str] = field(default_factory=list)  # row ↔ sample disagreements, in reading order
    loose_rows: list[dict[str, Any]] = field(default_factory=list)  # rows whose sample is not in their shard
    loose_samples: dict[str, _Written] = field(default_factory=dict)  # samples without a row in their shard's manifest
    extra_rows: Counter = field(default_factory=Counter)  # key → rows beyond the first
    unreadable: bool = False

    def rows_of(self, path: str | None, rep: Report) -> dict[str, dict[str, Any]]:
        """key → row of one manifest file, read in batches (a shard's rows: bounded by its size)."""
        rows: dict[str, dict[str, Any]] = {}
        if path is None or self.unreadable:
            return rows
        try:
            for batch in iter_manifest_batches([path]):
                for r in batch.to_pylist():
                    if r["key"] in rows:
                        self.extra_rows[r["key"]] += 1
                    else:
                        rows[r["key"]] = r
        except Exception as e:  # noqa: BLE001 - any unreadable manifest is one finding
            rep.add("manifest", f"manifest/ cannot be read ({type(e).__name__}: {e})")
            self.unreadable = True
        return rows

    def compare(self, r: dict[str, Any], key: str, s: _Written) -> None:
        """The checks of one manifest row against the sample it describes."""
        if s.shard != r["shard"]:
            self.messages.append(f"manifest says {key} is in {r['shard']}, it is in {s.shard}")
        if r.get("record_sha256") and r["record_sha256"] != s.record_sha256:
            self.messages.append(f"{s.shard}: {key}.json was changed after it was written (sha256 differs from the manifest)")
        if r.get("jpeg_sha256") and r["jpeg_sha256"] != s.jpeg_sha256:
            self.messages.append(f"{s.shard}: {key}.jpg was changed after it was written (sha256 differs from the manifest)")
        if s.row is not None:
            differ = [c for c in _COMPARED if c in r and r[c] != s.row[c] and not _both_nan(r[c], s.row[c])]
            if differ:
                self.messages.append(f"manifest row {key} disagrees with its record on {', '.join(differ[:5])}")

    def finish(self, rep: Report, seen: dict[str, SeenSample]) -> None:
        """Pair the loose rows and samples across shards, then report, in the order: rows listed twice, row
        disagreements, rows without a sample, samples without a row."""
        if self.unreadable:
            return
        orphans: list[str] = []
        for r in self.loose_rows:
            k = r["key"]
            s = seen.get(k)
            if s is None:
                orphans.append(f"manifest row {k} has no sample in the shards")
            elif s.has_row:
                self.extra_rows[k] += 1
            else:
                s.has_row = True
                loose = self.loose_samples.pop(k, None)
                if loose is not None:
                    self.compare(r, k, loose)
        loose_keys = Counter(r["key"] for r in self.loose_rows if r["key"] not in seen)
        for k, n in loose_keys.items():
            if n > 1:
                self.extra_rows[k] += n - 1
        for k, n in self.extra_rows.items():
            rep.add("manifest", f"manifest lists {k} {n + 1} times")
        for m in self.messages + orphans:
            rep.add("manifest", m)
        for k, s in seen.items():
            if not s.has_row:
                rep.add("manifest", f"sample {k} in {s.shard} has no manifest row")


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and a != a and b != b


def _check_shards(out: str, rep: Report, rules: RecordRules | None) -> tuple[dict[str, SeenSample], dict[str, int], Counter]:
    """Every shard, streamed, with its own manifest file beside it; returns what the later checks need:
    the samples (`SeenSample`), shard sizes and samples per shard."""
    validator = sample_validator()
    seen: dict[str, SeenSample] = {}
    sizes: dict[str, int] = {}
    per_shard: Counter = Counter()
    manifest = _Manifest()
    manifests = {name_of(p)[: -len(".parquet")]: p for p in manifest_files(out)}
    shards = match_sizes(FileSystems.join(out, SHARDS_DIR, "*.tar"))
    rep.shards = len(shards)
    for path, size in shards:
        shard = name_of(path)
        sizes[shard] = size
        rows = manifest.rows_of(manifests.pop(shard[: -len(".tar")], None), rep)
        in_shard: set[str] = set()
        try:
            for key, parts in iter_shard_groups(path):
                if key in in_shard:
                    rep.add("shard", f"{shard}: members of {key} are not contiguous")
                    continue
                in_shard.add(key)
                rep.samples += 1
                per_shard[shard] += 1
                if key in seen:
                    rep.add("key", f"key {key} appears in {seen[key].shard} and {shard}")
                sample = _check_sample(shard, key, parts, rep, validator, rules)
                written = _Written(shard, hashlib.sha256(parts.get("json", b"")).hexdigest(),
                                   hashlib.sha256(parts.get("jpg", b"")).hexdigest(),
                                   manifest_row(sample, shard) if sample is not None else None)
                s = seen[key] = SeenSample(
                    shard=shard,
                    sha256=sample.image.sha256 if sample is not None else None,
                    phash=sample.image.phash if sample is not None else None,
                    face_index=sample.crop.face_index if sample is not None and sample.crop is not None else None,
                )
                row = rows.pop(key, None)
                if row is None:
                    manifest.loose_samples[key] = written
                else:
                    s.has_row = True
                    manifest.compare(row, key, written)
        except (tarfile.TarError, OSError, EOFError) as e:
            rep.add("shard", f"{shard}: not a readable tar ({type(e).__name__}: {e})")
        manifest.loose_rows += rows.values()
    for path in manifests.values():  # manifests without a shard
        manifest.loose_rows += manifest.rows_of(path, rep).values()
    manifest.finish(rep, seen)
    return seen, sizes, per_shard


def _check_index(out: str, rep: Report, per_shard: Counter, sizes: dict[str, int]) -> None:
    index_path = FileSystems.join(out, INDEX_FILE)
    if not FileSystems.exists(index_path):
        rep.add("index", "index.json is missing")
        return
    try:
        index = json.loads(read_text(index_path))
        listed = {s["url"].rsplit("/", 1)[-1]: s for s in index["shardlist"]}
        for name in sizes:
            if name not in listed:
                rep.add("index", f"index.json does not list {name}")
        for name, entry in listed.items():
            if name not in sizes:
                rep.add("index", f"index.json lists {name}, which does not exist")
                continue
            if entry.get("nsamples") != per_shard.get(name, 0):
                rep.add("index", f"index.json says {name} has {entry.get('nsamples')} samples, it has {per_shard.get(name, 0)}")
            if "filesize" in entry and entry["filesize"] != sizes[name]:
                rep.add("index", f"index.json says {name} has {entry['filesize']} bytes, it has {sizes[name]}")
    except (KeyError, TypeError, ValueError) as e:
        rep.add("index", f"index.json is malformed ({type(e).__name__}: {e})")


def _check_stats(out: str, rep: Report, rejects: RejectSummary | None) -> None:
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
        if rejects is None:
            return
        by_reason = dict(rejects.by_reason)
        if "by_reason" in stats and stats["by_reason"] != by_reason:
            rep.add("stats", f"stats: by_reason {stats['by_reason']} but the reject lines give {dict(sorted(by_reason.items()))}")
        by_stage = {stage: dict(reasons) for stage, reasons in rejects.by_stage.items()}
        if "by_stage" in stats and stats["by_stage"] != by_stage:
            rep.add("stats", "stats: by_stage does not match the reject lines")
    except (KeyError, TypeError, ValueError) as e:
        rep.add("stats", f"stats.json is malformed ({type(e).__name__}: {e})")


def _check_leftovers(out: str, rep: Report) -> None:
    left = match_paths(tmp_dir(out) + "/**")
    if left:
        rep.add("partial", f"shards/_tmp holds {len(left)} partial file(s) from an interrupted run: finish it with "
                           f"`facecorpus run … --resume`")
    aside = half_written_files(out)
    if aside:
        rep.add("partial", f"{len(aside)} half-written file(s) from an interrupted run, e.g. {name_of(aside[0])}: "
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


def check_output(out: str) -> Report:
    """Every check above on the output folder `out`; the report lists what is wrong (empty: valid)."""
    rep = Report()
    if not folder_exists(out):
        rep.add("layout", f"{out} does not exist")
        return rep
    recipe = _recipe_of(out, rep)
    rules = rules_for(recipe) if recipe is not None else None
    seen, sizes, per_shard = _check_shards(out, rep, rules)
    _check_index(out, rep, per_shard, sizes)
    rejects = check_rejects(out, rep, seen)
    _check_stats(out, rep, rejects)
    _check_leftovers(out, rep)
    if recipe is not None:
        check_duplicates(recipe, rep, seen)
        check_holdout(recipe, rep, seen)
    return rep
