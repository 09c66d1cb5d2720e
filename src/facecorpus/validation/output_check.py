"""`facecorpus validate DIR`: every check a consumer of the output relies on.

Shards readable to the end; members grouped per key as KEY.jpg / KEY.json / KEY.txt; keys unique across
shards and without dots; every KEY.json valid against schemas/sample.schema.json (jsonschema) and the
pydantic model, its key matching the member name, KEY.txt equal to its caption; JPEGs decodable;
manifest rows ↔ shard samples; index.json ↔ shards; rejects well-formed; stats consistent
(`inputs == written + rejected`, written == samples, rejected == reject lines).
"""

from __future__ import annotations

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

from ..records import Reject, Sample
from ..resources import data_dir
from ..sinks.summary import INDEX_FILE, STATS_FILE, iter_rejects, read_manifest, read_text, shard_files

MAX_PROBLEMS_PER_KIND = 20


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
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


def _check_shard(path: str, rep: Report, validator: Any, seen: dict[str, str]) -> dict[str, str]:
    """Check one shard; returns {key: shard name} of its samples."""
    shard = path.rsplit("/", 1)[-1]
    keys: dict[str, str] = {}
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
        return keys
    for key, parts in groups.items():
        rep.samples += 1
        if key in seen:
            rep.add("key", f"key {key} appears in {seen[key]} and {shard}")
        seen[key] = shard
        keys[key] = shard
        missing = {"jpg", "json", "txt"} - set(parts)
        if missing:
            rep.add("member", f"{shard}: {key} lacks {sorted(missing)}")
            continue
        try:
            record = json.loads(parts["json"])
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            rep.add("json", f"{shard}: {key}.json is not JSON ({e})")
            continue
        errors = sorted(validator.iter_errors(record), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "(root)"
            rep.add("schema", f"{shard}: {key}.json fails the schema at {where}: {errors[0].message[:200]}")
            continue
        try:
            sample = Sample.model_validate(record)
        except ValidationError as e:
            rep.add("schema", f"{shard}: {key}.json fails the record model: {e.errors()[0]['msg']}")
            continue
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
    return keys


def check_output(out: str) -> Report:
    rep = Report()
    if not FileSystems.exists(out):
        rep.add("layout", f"{out} does not exist")
        return rep
    validator = sample_validator()
    seen: dict[str, str] = {}
    shard_of: dict[str, str] = {}
    shards = shard_files(out)
    rep.shards = len(shards)
    sizes = {}
    for path in shards:
        shard_of.update(_check_shard(path, rep, validator, seen))
        sizes[path.rsplit("/", 1)[-1]] = FileSystems.match([path])[0].metadata_list[0].size_in_bytes

    try:
        manifest = read_manifest(out)
    except Exception as e:  # noqa: BLE001
        rep.add("manifest", f"manifest/ cannot be read ({type(e).__name__}: {e})")
        manifest = None
    if manifest is not None:
        rows = manifest.select(["key", "shard"]).to_pylist()
        mkeys = Counter(r["key"] for r in rows)
        for k, n in mkeys.items():
            if n > 1:
                rep.add("manifest", f"manifest lists {k} {n} times")
        for r in rows:
            actual = shard_of.get(r["key"])
            if actual is None:
                rep.add("manifest", f"manifest row {r['key']} has no sample in the shards")
            elif f"{actual}" != r["shard"]:
                rep.add("manifest", f"manifest says {r['key']} is in {r['shard']}, it is in {actual}")
        for k, shard in shard_of.items():
            if k not in mkeys:
                rep.add("manifest", f"sample {k} in {shard} has no manifest row")

    index_path = FileSystems.join(out, INDEX_FILE)
    if not FileSystems.exists(index_path):
        rep.add("index", "index.json is missing")
    else:
        try:
            index = json.loads(read_text(index_path))
            listed = {s["url"].rsplit("/", 1)[-1]: s for s in index["shardlist"]}
            counts = Counter(shard_of.values())
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

    for path, lineno, line in iter_rejects(out):
        rep.rejects += 1
        try:
            Reject.model_validate_json(line)
        except ValidationError as e:
            rep.add("rejects", f"{path.rsplit('/', 1)[-1]} line {lineno}: not a valid reject ({e.errors()[0]['msg']})")

    stats_path = FileSystems.join(out, STATS_FILE)
    if not FileSystems.exists(stats_path):
        rep.add("stats", "stats.json is missing")
    else:
        try:
            stats = json.loads(read_text(stats_path))
            if stats["inputs"] != stats["written"] + stats["rejected"]:
                rep.add("stats", f"stats: inputs {stats['inputs']} != written {stats['written']} + rejected {stats['rejected']}")
            if stats["written"] != rep.samples:
                rep.add("stats", f"stats: written {stats['written']} but the shards hold {rep.samples} samples")
            if stats["rejected"] != rep.rejects:
                rep.add("stats", f"stats: rejected {stats['rejected']} but rejects/ holds {rep.rejects} lines")
        except (KeyError, TypeError, ValueError) as e:
            rep.add("stats", f"stats.json is malformed ({type(e).__name__}: {e})")
    return rep
