"""What a reviewer sees, in which order: filtering, seeded stratified sampling, flagged-first.

The queue is built from the manifest (samples) or the reject lines (rejects), never from the shards,
so sampling a large output is cheap; only the chosen samples' records and images are then read from
their shards. The same arguments and the same output always give the same queue, which is what lets a
reviewer close the terminal and resume later.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..records import Reject, Sample

#: friendly field names → manifest columns (any manifest column name also works as is)
SAMPLE_FIELD_ALIASES: dict[str, str] = {
    "labels.age": "label_age",
    "labels.gender": "label_gender",
    "labels.race": "label_race",
    "attributes.age": "age",
    "attributes.gender": "gender",
    "attributes.race": "race",
    "qa.category": "categories",
    "category": "categories",
    "source.dataset": "source_dataset",
    "source.split": "split",
    "provenance.generator": "generator",
    "faces": "n_faces",
}
REJECT_FIELDS = ("stage", "reason", "dataset", "retryable")


@dataclass(frozen=True)
class QueueOptions:
    """How to choose and order the items to review (stored in the log so a session can resume)."""

    sample: int | None = None
    seed: int = 0
    stratify: tuple[str, ...] = ()
    flagged_first: bool = False
    categories: tuple[str, ...] = ()
    where: tuple[str, ...] = ()
    rejects: bool = False
    reasons: tuple[str, ...] = ()

    def to_args(self) -> dict[str, Any]:
        return {
            "sample": self.sample, "seed": self.seed, "stratify": list(self.stratify),
            "flagged_first": self.flagged_first, "categories": list(self.categories), "where": list(self.where),
            "rejects": self.rejects, "reasons": list(self.reasons),
        }

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> QueueOptions:
        return cls(
            sample=args.get("sample"), seed=int(args.get("seed", 0)), stratify=tuple(args.get("stratify", ())),
            flagged_first=bool(args.get("flagged_first")), categories=tuple(args.get("categories", ())),
            where=tuple(args.get("where", ())), rejects=bool(args.get("rejects")), reasons=tuple(args.get("reasons", ())),
        )


@dataclass
class Candidate:
    """One reviewable thing before it is loaded: its id, the flat fields to filter/stratify on, its shard."""

    id: str
    fields: dict[str, Any]
    shard: str | None = None
    reject: Reject | None = None
    flagged: bool = False


@dataclass
class ReviewItem:
    """One loaded item: a sample with its image, or a reject."""

    id: str
    sample: Sample | None = None
    jpeg: bytes | None = None
    reject: Reject | None = None
    #: indexes into sample.qa that this review covers (all, or those of the chosen categories)
    qa_indexes: list[int] = field(default_factory=list)

    @property
    def is_reject(self) -> bool:
        return self.reject is not None


def reject_id(line: str) -> str:
    """Stable id of a reject line (the same line always gets the same id)."""
    return "reject:" + hashlib.sha256(line.strip().encode("utf-8")).hexdigest()[:16]


#: flags that describe how a sample was made and need no human eye: 'skipped:<category>' (a category
#: had no supporting facts), 'llm_text_only' (the endpoint read no image; true of a whole run)
INFORMATIONAL_FLAGS = ("skipped:", "llm_text_only")


def _pipeline_flagged(row: dict[str, Any]) -> bool:
    return bool(row.get("n_conflicts")) or any(not f.startswith(INFORMATIONAL_FLAGS) for f in row.get("flags") or [])


def sample_candidates(out: str) -> list[Candidate]:
    from ..output.readers import read_manifest

    rows = read_manifest(out).to_pylist()
    return [Candidate(id=r["key"], fields=r, shard=r["shard"], flagged=_pipeline_flagged(r)) for r in rows]


def reject_candidates(out: str) -> list[Candidate]:
    from ..output.readers import iter_rejects

    cands = []
    for path, n, line in iter_rejects(out):
        try:
            rej = Reject.model_validate_json(line)
        except ValueError as e:
            raise UserError(f"{path}:{n} is not a valid reject line ({e.__class__.__name__}); run facecorpus validate") from e
        cands.append(Candidate(id=reject_id(line), fields=rej.model_dump(mode="json"), reject=rej))
    return cands


def field_values(c: Candidate, name: str, rejects: bool) -> list[str]:
    """The values of a field for one candidate, as strings; list fields give several, missing gives 'unknown'."""
    column = name if rejects else SAMPLE_FIELD_ALIASES.get(name, name)
    if column not in c.fields:
        known = REJECT_FIELDS if rejects else sorted({*SAMPLE_FIELD_ALIASES, *c.fields})
        raise UserError(f"unknown field {name!r}; known fields: {', '.join(known)}")
    value = c.fields[column]
    values = value if isinstance(value, list) else [value]
    return ["unknown" if v is None else str(v) for v in values] or ["none"]


def _parse_where(expr: str) -> tuple[str, str]:
    if "=" not in expr:
        raise UserError(f"--where {expr!r}: write FIELD=VALUE, e.g. labels.race=white")
    name, value = expr.split("=", 1)
    return name.strip(), value.strip()


def filter_candidates(cands: list[Candidate], opts: QueueOptions) -> list[Candidate]:
    conds = [_parse_where(w) for w in opts.where]
    if opts.rejects and opts.reasons:
        conds.append(("reason", "|".join(opts.reasons)))
    if not opts.rejects and opts.categories:
        conds.append(("qa.category", "|".join(opts.categories)))
    if opts.rejects and opts.categories:
        raise UserError("--category applies to samples; to review rejects filter with --reason or --where stage=…")
    if not opts.rejects and opts.reasons:
        raise UserError("--reason applies to rejects: add --rejects")
    kept = []
    for c in cands:
        # a condition VALUE may list alternatives separated by '|'
        if all(set(v.split("|")) & set(field_values(c, f, opts.rejects)) for f, v in conds):
            kept.append(c)
    return kept


def choose(cands: list[Candidate], opts: QueueOptions, reviewer_flagged: set[str] = frozenset()) -> list[Candidate]:
    """Seeded order and sample of the candidates.

    Stratified sampling draws round-robin across strata (one item per stratum per round, in a seeded
    order) so small groups are represented as well as large ones — what a reviewer checking quality per
    group needs; an item in several strata (list fields such as qa.category) is drawn at most once.
    """
    rng = random.Random(opts.seed)
    ordered = sorted(cands, key=lambda c: c.id)
    rng.shuffle(ordered)
    n = len(ordered) if opts.sample is None else max(0, opts.sample)
    if opts.stratify:
        strata: dict[tuple[str, ...], list[Candidate]] = defaultdict(list)
        for c in ordered:
            per_field = [field_values(c, f, opts.rejects) for f in opts.stratify]
            for combo in itertools.product(*per_field):
                strata[combo].append(c)
        names = sorted(strata)
        rng.shuffle(names)
        picked: list[Candidate] = []
        seen: set[str] = set()
        cursors = dict.fromkeys(names, 0)
        while len(picked) < n and any(cursors[s] < len(strata[s]) for s in names):
            for s in names:
                bucket = strata[s]
                while cursors[s] < len(bucket) and bucket[cursors[s]].id in seen:
                    cursors[s] += 1
                if cursors[s] < len(bucket) and len(picked) < n:
                    picked.append(bucket[cursors[s]])
                    seen.add(bucket[cursors[s]].id)
                    cursors[s] += 1
        chosen = picked
    else:
        chosen = ordered[:n]
    if opts.flagged_first:
        chosen = sorted(chosen, key=lambda c: not (c.flagged or c.id in reviewer_flagged))
    return chosen


def build_queue(out: str, opts: QueueOptions, reviewer_flagged: set[str] = frozenset()) -> list[Candidate]:
    """The ordered candidates a session reviews; a UserError when nothing matches."""
    cands = reject_candidates(out) if opts.rejects else sample_candidates(out)
    what = "rejects" if opts.rejects else "samples"
    if not cands:
        raise UserError(f"{out} has no {what} to review")
    kept = filter_candidates(cands, opts)
    if not kept:
        raise UserError(f"no {what} in {out} match the filters")
    return choose(kept, opts, reviewer_flagged)


def load_items(out: str, chosen: Sequence[Candidate], categories: Iterable[str] = ()) -> list[ReviewItem]:
    """Read the chosen samples (record + image) from their shards; rejects need no reading."""
    from ..output.readers import iter_output_samples

    cats = set(categories)
    wanted = {c.id for c in chosen if c.reject is None}
    shards = {c.shard for c in chosen if c.reject is None and c.shard}
    members = dict(iter_output_samples(out, wanted, shards)) if wanted else {}
    items = []
    for c in chosen:
        if c.reject is not None:
            items.append(ReviewItem(id=c.id, reject=c.reject))
            continue
        m = members.get(c.id, {})
        if "json" not in m:
            raise UserError(f"sample {c.id} is in the manifest but not in shards/{c.shard}; run facecorpus validate {out}")
        sample = Sample.model_validate(json.loads(m["json"]))
        idx = [i for i, q in enumerate(sample.qa) if not cats or q.category in cats]
        items.append(ReviewItem(id=c.id, sample=sample, jpeg=m.get("jpg"), qa_indexes=idx))
    return items


def local_dir(out: str) -> Path:
    """The output folder as a local path; reviews are written beside the data, so it must be local."""
    if "://" in out:
        raise UserError(f"review works on a local output folder; copy {out} locally first (e.g. gsutil -m cp -r)")
    p = Path(out)
    if not p.is_dir():
        raise UserError(f"{out} is not a folder")
    return p
