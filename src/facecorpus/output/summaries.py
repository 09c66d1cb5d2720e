"""What stats.json, index.json and the card say about an output, accumulated in bounded memory.

`WrittenSummary` takes manifest rows a column batch at a time; `RejectSummary` takes reject lines one
at a time. Both hold only counters — by value, never by sample: label and category counts, shard
sizes, and for the card's figures the answer lengths (integer characters) and head-pose angles
(0.1° bins) as value → count tables, from which medians and percentiles are exact (pose: to 0.1°)
and the card's histograms are drawn with weights.
So memory depends on how many distinct values there are, not on how many samples: 200k rows and 1M
reject lines fit in the same few MiB as 10k (benchmarks/finalize.py). Both merge (`merge`), so Beam
combiners or several readers can build them in parts. `summarize_written` / `summarize_rejects` read
them from files on any Beam filesystem, streamed (output/readers.py); sinks/finalize.py writes the end
files from them, and stats.json's `validation` section is counted here only (`validation_section`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..storage import iter_lines
from ..validation.config import JUNK_CHECKS
from .annotation_agreement import agreement_from_counts
from .readers import iter_manifest_columns

#: manifest columns the summaries read (the rest stay on disk)
SUMMARY_COLUMNS = (
    "shard", "source_dataset", "generator", "n_faces", "n_qa", "categories", "answer_chars", "label_age",
    "label_gender", "label_race", "expression", "pose_yaw", "pose_pitch", "pose_roll", "flags",
    "prompt_tokens", "completion_tokens", "cost_usd", "prompt_set", "labels_json", "answer_keys",
    "annotation_pairs", "licence", "llm_model", "url", "age", "gender", "race",
)
POSE_BIN = 0.1  # degrees


def _key(value: Any) -> str:
    return "unknown" if value is None else str(value)


def percentile(counts: Counter, p: float) -> float:
    """Nearest-rank percentile of the values counted in `counts` (value → how often)."""
    total = sum(counts.values())
    if not total:
        raise ValueError("no values")
    rank = max(0, min(total - 1, round(p / 100 * (total - 1))))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen > rank:
            return value
    return max(counts)


@dataclass
class WrittenSummary:
    """Counts over manifest rows (what was written)."""

    written: int = 0
    per_shard: Counter = field(default_factory=Counter)
    by_source: Counter = field(default_factory=Counter)
    licences: Counter = field(default_factory=Counter)  # (dataset, licence as recorded, None kept) → samples
    llm_models: Counter = field(default_factory=Counter)
    labelled: Counter = field(default_factory=Counter)  # age/gender/race → samples with a dataset label
    inferred: Counter = field(default_factory=Counter)  # age/gender/race → samples a face model gave it, unlabelled
    with_url: int = 0
    by_generator: Counter = field(default_factory=Counter)
    labels: dict[str, Counter] = field(default_factory=lambda: {"age": Counter(), "gender": Counter(), "race": Counter()})
    label_combos: Counter = field(default_factory=Counter)  # (age, gender, race) of labelled samples
    faces_per_sample: Counter = field(default_factory=Counter)
    qa_pairs: int = 0
    qa_by_category: Counter = field(default_factory=Counter)
    answer_chars: dict[str, Counter] = field(default_factory=dict)  # category → length → n
    expressions: Counter = field(default_factory=Counter)
    pose: dict[str, Counter] = field(default_factory=lambda: {"yaw": Counter(), "pitch": Counter(), "roll": Counter()})
    flagged_conflicts: Counter = field(default_factory=Counter)  # attribute → n (flags label_conflict:ATTR)
    junk_flagged: Counter = field(default_factory=Counter)  # (junk check, category) → n (flags CHECK:CATEGORY)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    prompt_sets: set[str] = field(default_factory=set)
    #: dataset labels other than age/gender/race: attribute → value → samples
    attribute_labels: dict[str, Counter] = field(default_factory=dict)
    #: label-derived QA (MCQ letters, yes/no): category → short answer → pairs
    label_qa: dict[str, Counter] = field(default_factory=dict)
    #: LLM annotation vs label / face model comparisons (sinks/agreement.py entries) → samples
    annotation_pairs: Counter = field(default_factory=Counter)

    def add_columns(self, col: dict[str, list]) -> None:
        """Add a batch of rows given as columns (pyarrow's `to_pydict()` of SUMMARY_COLUMNS)."""
        n = len(col["shard"])
        self.written += n
        self.per_shard.update(col["shard"])
        self.by_source.update(_key(v) for v in col["source_dataset"])
        self.licences.update(zip(col["source_dataset"], col["licence"], strict=True))
        self.llm_models.update(m for m in col["llm_model"] if m)
        self.with_url += sum(1 for u in col["url"] if u)
        self.by_generator.update(_key(v) for v in col["generator"])
        ages, genders, races = col["label_age"], col["label_gender"], col["label_race"]
        for attr, values in (("age", ages), ("gender", genders), ("race", races)):
            self.labels[attr].update(_key(v) for v in values)
            self.labelled[attr] += sum(1 for v in values if v)
            self.inferred[attr] += sum(1 for lab, v in zip(values, col[attr], strict=True) if v and not lab)
        self.label_combos.update((a or "unknown", g or "unknown", r or "unknown")
                                 for a, g, r in zip(ages, genders, races, strict=True) if a or g or r)
        self.faces_per_sample.update(col["n_faces"])
        self.qa_pairs += sum(v or 0 for v in col["n_qa"])
        for cats, chars in zip(col["categories"], col["answer_chars"], strict=True):
            self.qa_by_category.update(cats or [])
            for c, length in zip(cats or [], chars or [], strict=False):
                self.answer_chars.setdefault(c, Counter())[length] += 1
        self.expressions.update(e for e in col["expression"] if e)
        for angle in ("yaw", "pitch", "roll"):
            self.pose[angle].update(round(round(v / POSE_BIN) * POSE_BIN, 1) for v in col[f"pose_{angle}"]
                                    if v is not None and v == v)
        for row in col["flags"]:
            self.add_flags(row)
        self.prompt_tokens += sum(v or 0 for v in col["prompt_tokens"])
        self.completion_tokens += sum(v or 0 for v in col["completion_tokens"])
        self.cost_usd += sum(v or 0.0 for v in col["cost_usd"])
        self.prompt_sets.update(v for v in col["prompt_set"] if v)
        for text in col["labels_json"]:
            for name, value in (json.loads(text) if text else {}).items():
                if name not in ("age", "gender", "race"):
                    shown = str(value).lower() if isinstance(value, bool) else str(value)
                    self.attribute_labels.setdefault(name, Counter())[shown] += 1
        for keys in col["answer_keys"]:
            for entry in keys or []:
                category, _, key = entry.partition("=")
                if category in ("attribute_mcq", "attribute_yes_no"):
                    self.label_qa.setdefault(category, Counter())[key] += 1
        self.annotation_pairs.update(entry for pairs in col["annotation_pairs"] for entry in pairs or [])

    def add_flags(self, flags: list[str] | None) -> None:
        """Count one sample's flags: label conflicts per attribute, junk-check flags per check and category."""
        for f in flags or []:
            if f.startswith("label_conflict:"):
                self.flagged_conflicts[f.split(":", 1)[1]] += 1
            check, _, category = f.partition(":")
            if check in JUNK_CHECKS and category:
                self.junk_flagged[(check, category)] += 1

    def merge(self, other: WrittenSummary) -> WrittenSummary:
        """Add `other`'s counts into this one; returns self."""
        for name in ("written", "qa_pairs", "prompt_tokens", "completion_tokens", "cost_usd", "with_url"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("per_shard", "by_source", "licences", "llm_models", "labelled", "inferred", "by_generator", "label_combos", "faces_per_sample", "qa_by_category",
                     "expressions", "flagged_conflicts", "junk_flagged", "annotation_pairs"):
            getattr(self, name).update(getattr(other, name))
        for mine, theirs in ((self.labels, other.labels), (self.pose, other.pose), (self.answer_chars, other.answer_chars),
                             (self.attribute_labels, other.attribute_labels), (self.label_qa, other.label_qa)):
            for k, counts in theirs.items():
                mine.setdefault(k, Counter()).update(counts)
        self.prompt_sets |= other.prompt_sets
        return self


@dataclass
class RejectSummary:
    """Counts over reject lines."""

    rejected: int = 0
    by_stage: dict[str, Counter] = field(default_factory=dict)
    retryable: int = 0
    retryable_by_reason: Counter = field(default_factory=Counter)
    by_category: dict[str, Counter] = field(default_factory=lambda: {"refusal": Counter(), "label_conflict": Counter()})
    unreadable: int = 0  # lines that are not JSON objects (`facecorpus validate` reports them)
    junk_rejected: Counter = field(default_factory=Counter)  # (junk check, category) → rejects of stage validate

    def add_line(self, line: str) -> None:
        """Add one reject line (JSON); blank lines are not rejects."""
        if not line.strip():
            return
        self.rejected += 1
        try:
            r = json.loads(line)
            stage, reason = str(r["stage"]), str(r["reason"])
        except (ValueError, KeyError, TypeError):
            self.unreadable += 1
            return
        self.by_stage.setdefault(stage, Counter())[reason] += 1
        if r.get("retryable"):
            self.retryable += 1
            self.retryable_by_reason[reason] += 1
        if reason in self.by_category:
            self.by_category[reason].update(r.get("categories") or ["caption"])
        if stage == "validate" and reason in JUNK_CHECKS:
            self.junk_rejected.update((reason, c) for c in r.get("categories") or ["caption"])

    @property
    def by_reason(self) -> Counter:
        total: Counter = Counter()
        for reasons in self.by_stage.values():
            total.update(reasons)
        return total

    def merge(self, other: RejectSummary) -> RejectSummary:
        self.rejected += other.rejected
        self.retryable += other.retryable
        self.unreadable += other.unreadable
        self.retryable_by_reason.update(other.retryable_by_reason)
        self.junk_rejected.update(other.junk_rejected)
        for mine, theirs in ((self.by_stage, other.by_stage), (self.by_category, other.by_category)):
            for k, counts in theirs.items():
                mine.setdefault(k, Counter()).update(counts)
        return self


def _sorted(c: Counter) -> dict[str, int]:
    return dict(sorted((str(k), v) for k, v in c.items()))


def _by_check(counts: Counter) -> dict[str, dict[str, int]]:
    """{junk check: {category: n}} in JUNK_CHECKS order, checks without any left out."""
    by: dict[str, Counter] = {}
    for (check, category), n in counts.items():
        by.setdefault(check, Counter())[category] += n
    return {k: _sorted(by[k]) for k in JUNK_CHECKS if k in by}


def licence_table(counts: Counter) -> dict[str, dict[str, int]]:
    """{dataset: {licence as recorded on its samples: samples}}, most common first (a web source may hold many)."""
    by: dict[str, Counter] = {}
    for (dataset, licence), n in counts.items():
        by.setdefault(dataset or "unknown", Counter())[licence or "unknown"] += n
    return {d: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for d, c in sorted(by.items())}


def validation_section(written: WrittenSummary, rejects: RejectSummary) -> dict[str, Any]:
    """stats.json's `validation`: refusals and label conflicts per QA category ('caption' when the caption
    was the culprit), flagged label conflicts per attribute, the junk checks' rejects and flags per
    check and category (`text_checks`), duplicates and hold-out matches."""
    reasons = rejects.by_reason
    return {
        "refusals_by_category": _sorted(rejects.by_category["refusal"]),
        "label_conflicts_rejected_by_category": _sorted(rejects.by_category["label_conflict"]),
        "label_conflicts_flagged_by_attribute": _sorted(written.flagged_conflicts),
        "text_checks": {"rejected": _by_check(rejects.junk_rejected), "flagged": _by_check(written.junk_flagged)},
        "duplicates": reasons.get("duplicate", 0),
        "holdout": reasons.get("holdout", 0),
    }


def validation_counts(rejects: Iterable[Any], flags: Iterable[list[str] | None]) -> dict[str, Any]:
    """`validation_section` of rejects (reject lines, or `records.Reject`s) and the written samples'
    flags (manifest column `flags`): the same counting as stats.json's."""
    summary = RejectSummary()
    for r in rejects:
        summary.add_line(r if isinstance(r, str) else r.model_dump_json())
    written = WrittenSummary()
    for row in flags:
        written.add_flags(row)
    return validation_section(written, summary)


def stats_from(written: WrittenSummary, rejects: RejectSummary, inputs: int | None, run: dict[str, Any],
               llm: dict[str, Any] | None = None) -> dict[str, Any]:
    """stats.json content from the two summaries and the run's input count (None: not counted)."""
    reasons = rejects.by_reason
    stats: dict[str, Any] = {
        "inputs": inputs if inputs is not None else written.written + rejects.rejected,
        "inputs_counted_by": "run" if inputs is not None else "outputs",
        "written": written.written,
        "rejected": rejects.rejected,
        "by_stage": {k: _sorted(v) for k, v in sorted(rejects.by_stage.items())},
        "by_reason": _sorted(reasons),
        "retryable_rejects": rejects.retryable,
        "retryable_by_reason": _sorted(rejects.retryable_by_reason),
        "shards": len(written.per_shard),
        "qa_pairs": written.qa_pairs,
        "qa_by_category": _sorted(written.qa_by_category),
        "by_source": _sorted(written.by_source),
        "licences": licence_table(written.licences),
        "by_generator": _sorted(written.by_generator),
        "labels": {attr: _sorted(c) for attr, c in written.labels.items()},
        "attribute_labels": {a: _sorted(c) for a, c in sorted(written.attribute_labels.items())},
        "label_qa": {c: _sorted(v) for c, v in sorted(written.label_qa.items())},
        "annotation_agreement": agreement_from_counts(written.annotation_pairs),
        "faces_per_sample": _sorted(written.faces_per_sample),
        "llm": llm or {
            "requests": 0,
            "cache_hits": 0,
            "prompt_tokens": int(written.prompt_tokens),
            "completion_tokens": int(written.completion_tokens),
            "cost_usd": round(float(written.cost_usd), 6),
        },
        "validation": validation_section(written, rejects),
        "run": run,
    }
    # proven only against a count taken apart from the outputs; inputs counted from the outputs prove nothing
    # (None: not proven, the card and `facecorpus finalize` say so)
    stats["invariant_ok"] = stats["inputs"] == written.written + rejects.rejected if inputs is not None else None
    return stats


def summarize_written(manifests: list[str]) -> WrittenSummary:
    summary = WrittenSummary()
    for col in iter_manifest_columns(manifests, SUMMARY_COLUMNS):
        summary.add_columns(col)
    return summary


def summarize_rejects(reject_files: list[str]) -> RejectSummary:
    summary = RejectSummary()
    for path in reject_files:
        for line in iter_lines(path):
            summary.add_line(line)
    return summary
