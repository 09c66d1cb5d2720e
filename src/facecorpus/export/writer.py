"""`facecorpus export DIR --format sharegpt|llava|jsonl --out PATH`: training files with images beside them.

PATH is the data file (`.json` for sharegpt and llava, `.jsonl` for jsonl); images are copied, byte
for byte, to `images/<key>.jpg` next to it and referenced by that relative path. The sharegpt export
also writes (or updates) `dataset_info.json` beside it with the entry LLaMA-Factory needs, shaped
exactly like FairFaceGPT's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..records import QAPair, Sample
from .conversations import TURNS, conversation, grouped

EXPORT_FORMATS = ("sharegpt", "llava", "jsonl")
VERDICT_FILTERS = ("any", "accepted", "not-rejected")
IMAGES_DIR = "images"


@dataclass
class ExportFilter:
    """Which QA pairs go out: categories, source splits, and the reviewers' consensus verdict."""

    categories: frozenset[str] = frozenset()
    splits: frozenset[str] = frozenset()
    verdict: str = "any"

    def __post_init__(self) -> None:
        if self.verdict not in VERDICT_FILTERS:
            raise UserError(f"--verdict {self.verdict!r}: choose one of {', '.join(VERDICT_FILTERS)}")


@dataclass
class ExportReport:
    path: Path
    samples: int = 0
    records: int = 0
    qa_pairs: int = 0
    skipped_samples: dict[str, int] = field(default_factory=dict)
    dataset_info: Path | None = None

    def skip(self, why: str) -> None:
        self.skipped_samples[why] = self.skipped_samples.get(why, 0) + 1


def review_verdicts(out: str) -> Callable[[str, int], str | None]:
    """(key, qa index) → the reviewers' consensus verdict on that QA pair (the rule of review --summary).

    Each reviewer's verdict on a QA pair is their own for that pair, else their whole-item verdict.
    """
    from ..review.summary import consensus
    from ..review.verdicts import reviewer_states

    # reviews are written next to local outputs only
    states = list(reviewer_states(out)[0].values()) if "://" not in out else []
    if not states:
        raise UserError(f"--verdict filters by review, but {out} has no reviews (DIR/reviews/*.jsonl): run facecorpus review first")

    def verdict_of(key: str, index: int) -> str | None:
        return consensus(v for st in states if (v := st.qa_verdict(key, index)) is not None)

    return verdict_of


def keep_qa(sample: Sample, flt: ExportFilter, verdict_of: Callable[[str, int], str | None]) -> list[QAPair]:
    """The sample's QA pairs that pass the filter, in their order."""
    kept = []
    for i, q in enumerate(sample.qa):
        if flt.categories and q.category not in flt.categories:
            continue
        v = verdict_of(sample.key, i)
        if flt.verdict == "accepted" and v != "accept":
            continue
        if flt.verdict == "not-rejected" and v == "reject":
            continue
        kept.append(q)
    return kept


def _records(fmt: str, sample: Sample, qa: list[QAPair], image: str, turns: str) -> Iterable[dict[str, Any]]:
    if fmt == "sharegpt":
        for group in grouped(qa, turns):
            yield {"conversations": conversation(group, "sharegpt"), "image": image}
    elif fmt == "llava":
        for n, group in enumerate(grouped(qa, turns)):
            yield {"id": sample.key if turns == "sample" else f"{sample.key}_{n}", "image": image,
                   "conversations": conversation(group, "llava")}
    else:
        yield {
            "key": sample.key,
            "image": image,
            "split": sample.source.split,
            "source": {"dataset": sample.source.dataset, "id": sample.source.id, "licence": sample.source.licence},
            "labels": {k: a.value for k, a in sample.attributes.items() if a.source == "label"},
            "caption": sample.caption,
            "qa": [q.model_dump() for q in qa],
            "messages": conversation(qa, "messages"),
        }


def dataset_info_entry(data_file: Path, image_root: str) -> dict[str, Any]:
    """The LLaMA-Factory dataset_info.json entry, in FairFaceGPT's shape."""
    return {
        "formatting": "sharegpt",
        "file_name": data_file.name,
        "columns": {"messages": "conversations", "image": "image"},
        "split": "train",
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "assistant"},
        "image_root": image_root,
    }


def write_dataset_info(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Add or replace one entry of a dataset_info.json, keeping the others (e.g. LLaMA-Factory's own)."""
    info: dict[str, Any] = {}
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"{path} exists but is not valid JSON ({e.msg} at line {e.lineno}); fix or remove it") from e
    info[name] = entry
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export(
    out: str,
    fmt: str,
    dest: Path,
    flt: ExportFilter,
    *,
    turns: str | None = None,
    name: str | None = None,
    image_root: str | None = None,
) -> ExportReport:
    """Write the export; returns what was written and what was skipped, by reason."""
    from ..loader import iter_output_samples

    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    # FairFaceGPT trained on one QA pair per conversation; LLaVA data is multi-turn per image
    turns = turns or ("qa" if fmt == "sharegpt" else "sample")
    if turns not in TURNS:
        raise UserError(f"--turns {turns!r}: choose one of {', '.join(TURNS)}")
    want_suffix = ".jsonl" if fmt == "jsonl" else ".json"
    if dest.suffix != want_suffix:
        raise UserError(f"--out {dest}: a {fmt} export is one {want_suffix} file (images go beside it)")
    folder = dest.parent
    (folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    verdict_of = review_verdicts(out) if flt.verdict != "any" else (lambda key, index: None)
    rep = ExportReport(path=dest)
    records: list[dict[str, Any]] = []
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("w", encoding="utf-8") as lines:
        for key, members in iter_output_samples(out):
            if "json" not in members or "jpg" not in members:
                rep.skip("incomplete_sample")
                continue
            sample = Sample.model_validate_json(members["json"])
            if flt.splits and (sample.source.split or "none") not in flt.splits:
                rep.skip("split")
                continue
            qa = keep_qa(sample, flt, verdict_of)
            if not qa:
                rep.skip("no_qa_left")
                continue
            image = f"{IMAGES_DIR}/{key}.jpg"
            (folder / image).write_bytes(members["jpg"])
            rep.samples += 1
            rep.qa_pairs += len(qa)
            for rec in _records(fmt, sample, qa, image, turns):
                rep.records += 1
                if fmt == "jsonl":
                    lines.write(json.dumps(rec, ensure_ascii=False) + "\n")
                else:
                    records.append(rec)
        if fmt != "jsonl":
            json.dump(records, lines, ensure_ascii=False, indent=1)
            lines.write("\n")
    os.replace(tmp, dest)  # a reader never sees a half-written export
    if fmt == "sharegpt":
        rep.dataset_info = folder / "dataset_info.json"
        write_dataset_info(rep.dataset_info, name or "facecorpus_dataset",
                           dataset_info_entry(dest, image_root or str(folder.resolve())))
    return rep
