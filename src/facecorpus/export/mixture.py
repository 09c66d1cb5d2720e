"""`facecorpus export OUT… --format stages --out DIR [--mixture FILE]`: Face-MLLM's three training stages
(alignment on captions, general VQA, specialised face tasks) from one or more outputs.

A mixture file (default: pipelines/face_mllm_stages.yaml) names the stages; each stage draws its
records from pools, and each pool selects what it wants by source dataset, QA category, attribute and
generator, with a `share` of the stage and an optional `cap`:

    seed: 0
    stages:
      - name: stage1_alignment
        task: caption            # one record per sample: a caption request and the sample's caption
        pools: [{datasets: [laion], share: 0.8}, {share: 0.2, cap: 50000}]
      - name: stage3_specialised
        task: qa                 # one record per QA pair
        size: 20000              # records wanted; null: as many as every pool's share allows
        pools: [{categories: [attribute_mcq], share: 0.5}, {attributes: [expression], share: 0.5}]

A unit (a sample's caption, or one QA pair) goes to the first pool of its stage that selects it, so
pools never share a record. Within a pool units are ranked by a hash of (seed, stage, output, key,
pair): the same inputs and seed always give the same records, whatever order the outputs are read in.
Without `size` a stage is as large as its shares allow (the scarcest pool sets it); with `size`, a pool
that holds fewer units than its share asks for makes the stage smaller, never another pool larger. A
pool that matches nothing is left out and the others keep their ratios between themselves.
`mixture.json` reports, per pool, what matched, what was wanted and taken, and why it fell short.
A unit may serve several stages; within a stage no two pools share one. Samples of held-out
partitions (`source.extra.held_out`) never enter a training stage.

Writes DIR/<stage>.json (LLaMA-Factory ShareGPT with an `images` list), DIR/images/<n>/<key>.jpg,
DIR/dataset_info.json (an entry per stage) and DIR/mixture.json.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import UserError
from ..records import QAPair, Sample
from ..sources.label_rows import HELD_OUT
from .conversations import conversation

#: what a caption record asks (stage 1); one is picked per sample by the seeded hash
CAPTION_QUESTIONS = (
    "Describe the face in this image.",
    "Write a short caption for this face photo.",
    "What does the person in this picture look like?",
    "Give a brief description of the person's face.",
)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pool(_Spec):
    """What a pool takes: units matching every filter given (an empty filter matches everything)."""

    name: str | None = None
    datasets: list[str] = Field(default_factory=list, description="Source datasets (source.dataset).")
    categories: list[str] = Field(default_factory=list, description="QA categories (qa stages).")
    attributes: list[str] = Field(default_factory=list, description="QA pairs about any of these attributes.")
    generators: list[str] = Field(default_factory=list, description="templates, openai, labels…")
    splits: list[str] = Field(default_factory=list, description="Source splits (held-out ones never enter).")
    share: float = Field(gt=0, le=1, description="Fraction of the stage's records.")
    cap: int | None = Field(default=None, ge=1, description="At most this many records from the pool.")

    def label(self, i: int) -> str:
        if self.name:
            return self.name
        parts = [f"{k}={','.join(v)}" for k, v in (("datasets", self.datasets), ("categories", self.categories),
                                                    ("attributes", self.attributes), ("generators", self.generators),
                                                    ("splits", self.splits)) if v]
        return f"pool{i}: " + ("; ".join(parts) or "everything")


class StageSpec(_Spec):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    task: Literal["caption", "qa"]
    size: int | None = Field(default=None, ge=1, description="Records wanted; null: the most the shares allow.")
    questions: list[str] = Field(default_factory=lambda: list(CAPTION_QUESTIONS), min_length=1,
                                 description="caption stages: what the human turn asks.")
    pools: list[Pool] = Field(min_length=1)

    @model_validator(mode="after")
    def _shares(self) -> StageSpec:
        total = sum(p.share for p in self.pools)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"stage {self.name}: pool shares add up to {total:g}, not 1")
        if self.task == "caption" and any(p.categories or p.attributes for p in self.pools):
            raise ValueError(f"stage {self.name}: caption pools select by dataset, generator or split only")
        return self


class MixtureSpec(_Spec):
    seed: int = 0
    stages: list[StageSpec] = Field(min_length=1)
    name_prefix: str = Field(default="facecorpus", pattern=r"^[A-Za-z0-9_-]+$",
                             description="dataset_info entries are <prefix>_<stage>.")

    @model_validator(mode="after")
    def _unique(self) -> MixtureSpec:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        return self


def load_mixture(path: Path | None) -> tuple[MixtureSpec, str]:
    """The mixture spec (default: the shipped Face-MLLM one) and its text; one UserError line on mistakes."""
    if path is None:
        from ..resources import data_dir

        path = data_dir("pipelines") / "face_mllm_stages.yaml"
    if not path.is_file():
        raise UserError(f"mixture file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        return MixtureSpec.model_validate(yaml.safe_load(text) or {}), text
    except yaml.YAMLError as e:
        raise UserError(f"mixture {path}: not valid YAML ({getattr(e, 'problem', e)})") from None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise UserError(f"mixture {path}: {where}: {'unknown key' if err['type'] == 'extra_forbidden' else err['msg']}") from None


@dataclass(frozen=True)
class Unit:
    """One record a stage could take: a sample's caption (qa_index None) or one of its QA pairs."""

    out: int
    key: str
    qa_index: int | None
    dataset: str
    split: str | None
    generator: str
    category: str | None
    attributes: tuple[str, ...]

    def rank(self, seed: int, stage: str) -> bytes:
        return hashlib.sha256(f"{seed}|{stage}|{self.out}|{self.key}|{self.qa_index}".encode()).digest()


def matches(pool: Pool, u: Unit) -> bool:
    return ((not pool.datasets or u.dataset in pool.datasets)
            and (not pool.categories or (u.category or "") in pool.categories)
            and (not pool.attributes or any(a in pool.attributes for a in u.attributes))
            and (not pool.generators or u.generator in pool.generators)
            and (not pool.splits or (u.split or "none") in pool.splits))


def scan_units(outs: list[str]) -> tuple[list[Unit], dict[str, int]]:
    """Every caption and QA pair of the outputs' samples, and how many samples were left out, by reason."""
    from ..output.readers import iter_output_samples

    units: list[Unit] = []
    left_out: dict[str, int] = defaultdict(int)
    for i, out in enumerate(outs):
        for key, members in iter_output_samples(out):
            if "json" not in members or "jpg" not in members:
                left_out["incomplete_sample"] += 1
                continue
            s = Sample.model_validate_json(members["json"])
            if s.source.extra.get(HELD_OUT) is True:
                left_out["held_out"] += 1
                continue
            common = dict(out=i, key=key, dataset=s.source.dataset, split=s.source.split, generator=s.provenance.generator)
            units.append(Unit(qa_index=None, category=None, attributes=(), **common))
            units += [Unit(qa_index=n, category=q.category, attributes=tuple(q.attributes), **common)
                      for n, q in enumerate(s.qa)]
    return units, dict(left_out)


def plan_stage(stage: StageSpec, units: list[Unit], seed: int) -> tuple[list[Unit], list[dict[str, Any]]]:
    """(the stage's units in record order, one report row per pool)."""
    pools: list[list[Unit]] = [[] for _ in stage.pools]
    for u in units:
        if (u.qa_index is None) != (stage.task == "caption"):
            continue
        for p, pool in enumerate(stage.pools):
            if matches(pool, u):
                pools[p].append(u)
                break
    for members in pools:
        members.sort(key=lambda u: u.rank(seed, stage.name))
    available = [min(len(m), p.cap or len(m)) for m, p in zip(pools, stage.pools, strict=True)]
    # a pool with nothing to give leaves the others' ratios between themselves (reported as empty)
    live = sum(p.share for p, a in zip(stage.pools, available, strict=True) if a)
    shares = [p.share / live if a and live else 0.0 for p, a in zip(stage.pools, available, strict=True)]
    if stage.size is not None:
        total = stage.size if live else 0
    else:
        total = math.floor(min((a / s for a, s in zip(available, shares, strict=True) if s), default=0) + 1e-9)
    chosen: list[Unit] = []
    report = []
    for p, (pool, members) in enumerate(zip(stage.pools, pools, strict=True)):
        want = round(total * shares[p])
        take = min(want, available[p])
        chosen += members[:take]
        row: dict[str, Any] = {"pool": pool.label(p), "share": pool.share, "effective_share": round(shares[p], 6),
                               "matched": len(members), "cap": pool.cap, "wanted": want, "taken": take}
        if not available[p]:
            row["empty"] = True
        elif take < want:
            row["short_by"] = "cap" if pool.cap is not None and available[p] == pool.cap else "pool exhausted"
        report.append(row)
    chosen.sort(key=lambda u: u.rank(seed, stage.name))
    return chosen, report


@dataclass
class MixtureReport:
    path: Path
    stages: dict[str, dict[str, Any]]
    dataset_info: Path
    names: dict[str, str]  # stage → its dataset_info entry


def export_stages(outs: list[str], dest: Path, mixture: Path | None = None) -> MixtureReport:
    """Write the stages of a mixture from `outs` into the folder `dest`."""
    from ..output.readers import iter_output_samples
    from .llamafactory import llamafactory_entry, write_dataset_info

    spec, text = load_mixture(mixture)
    units, left_out = scan_units(outs)
    plans = {s.name: plan_stage(s, units, spec.seed) for s in spec.stages}
    wanted: dict[tuple[int, str], list[tuple[str, Unit]]] = defaultdict(list)
    for name, (chosen, _) in plans.items():
        for u in chosen:
            wanted[(u.out, u.key)].append((name, u))
    dest.mkdir(parents=True, exist_ok=True)
    records: dict[tuple[str, Unit], dict[str, Any]] = {}
    by_name = {s.name: s for s in spec.stages}
    for i, out in enumerate(outs):
        for key, members in iter_output_samples(out):
            uses = wanted.get((i, key))
            if not uses:
                continue
            sample = Sample.model_validate_json(members["json"])
            image = f"images/{i:02d}/{key}.jpg"
            (dest / image).parent.mkdir(parents=True, exist_ok=True)
            (dest / image).write_bytes(members["jpg"])
            for name, u in uses:
                if u.qa_index is None:
                    questions = by_name[name].questions
                    pick = int.from_bytes(u.rank(spec.seed, name + "/q")[:4], "big") % len(questions)
                    pair = QAPair(category="caption", question=questions[pick], answer=sample.caption)
                else:
                    pair = sample.qa[u.qa_index]
                records[(name, u)] = {"conversations": conversation([pair], "sharegpt"), "images": [image]}
    info_path = dest / "dataset_info.json"
    stages_report: dict[str, dict[str, Any]] = {}
    for name, (chosen, report) in plans.items():
        data = [records[(name, u)] for u in chosen]
        path = dest / f"{name}.json"
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        write_dataset_info(info_path, f"{spec.name_prefix}_{name}", llamafactory_entry(path))
        stages_report[name] = {"file": path.name, "records": len(data), "pools": report}
    summary = {"seed": spec.seed, "outputs": outs, "samples_left_out": left_out, "stages": stages_report,
               "mixture": yaml.safe_load(text)}
    (dest / "mixture.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    names = {name: f"{spec.name_prefix}_{name}" for name in plans}
    return MixtureReport(path=dest, stages=stages_report, dataset_info=info_path, names=names)
