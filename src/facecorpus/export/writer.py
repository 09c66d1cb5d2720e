"""`facecorpus export DIR --format ... --out PATH`: training files for the frameworks that read them.

- `sharegpt`: LLaMA-Factory's multimodal ShareGPT (`conversations` + an `images` list), its
  `dataset_info.json` entry beside it, images under `images/` relative to that folder (LLaMA-Factory's
  `media_dir` defaults to it);
- `fairfacegpt`: the same conversations in FairFaceGPT's published layout (`image` + `image_root`),
  which LLaMA-Factory does not read;
- `llava`: LLaVA's conversation JSON; `jsonl`: one line per image with everything;
- `parquet`: a Hugging Face dataset folder (images inside the parquet files) with the run's card.

For the JSON formats PATH is the data file and images are copied byte for byte to `images/<key>.jpg`
beside it; for parquet PATH is a folder. Every file is written aside and renamed into place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..records import QAPair, Sample
from ..sources.label_rows import HELD_OUT
from .conversations import TURNS, conversation, grouped
from .llamafactory import DEFAULT_NAME, fairfacegpt_entry, llamafactory_entry, write_dataset_info

EXPORT_FORMATS = ("sharegpt", "fairfacegpt", "llava", "jsonl", "parquet")
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

    def describe(self) -> str:
        parts = [f"categories {', '.join(sorted(self.categories))}" if self.categories else "",
                 f"source splits {', '.join(sorted(self.splits))}" if self.splits else "",
                 f"review verdict {self.verdict}" if self.verdict != "any" else ""]
        return "; ".join(p for p in parts if p) or "none"


@dataclass
class ExportReport:
    path: Path
    samples: int = 0
    records: int = 0
    qa_pairs: int = 0
    skipped_samples: dict[str, int] = field(default_factory=dict)
    dataset_info: Path | None = None
    splits: dict[str, int] = field(default_factory=dict)

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
        for group in grouped(qa, turns):  # one image path per <image> token: the first human turn has it
            yield {"conversations": conversation(group, "sharegpt"), "images": [image]}
    elif fmt == "fairfacegpt":
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


def _kept_samples(out: str, flt: ExportFilter, rep: ExportReport) -> Iterator[tuple[Sample, list[QAPair], bytes]]:
    """(sample, its kept QA pairs, its image bytes) for every sample that passes the filter; counts the rest."""
    from ..output.readers import iter_output_samples

    verdict_of = review_verdicts(out) if flt.verdict != "any" else (lambda key, index: None)
    for _key, members in iter_output_samples(out):
        if "json" not in members or "jpg" not in members:
            rep.skip("incomplete_sample")
            continue
        sample = Sample.model_validate_json(members["json"])
        if sample.source.extra.get(HELD_OUT) is True:  # an official test partition: evaluation only (mcq-eval)
            rep.skip("held_out")
            continue
        if flt.splits and (sample.source.split or "none") not in flt.splits:
            rep.skip("split")
            continue
        qa = keep_qa(sample, flt, verdict_of)
        if not qa:
            rep.skip("no_qa_left")
            continue
        rep.samples += 1
        rep.qa_pairs += len(qa)
        yield sample, qa, members["jpg"]


def _check_destination(fmt: str, dest: Path) -> None:
    if fmt == "parquet":
        if dest.suffix in (".json", ".jsonl", ".parquet") or dest.is_file():
            raise UserError(f"--out {dest}: a parquet export is a folder (data/*.parquet and README.md go inside)")
        return
    want_suffix = ".jsonl" if fmt == "jsonl" else ".json"
    if dest.suffix != want_suffix:
        raise UserError(f"--out {dest}: a {fmt} export is one {want_suffix} file (images go beside it)")


def _export_files(out: str, fmt: str, dest: Path, flt: ExportFilter, turns: str, rep: ExportReport) -> None:
    """The JSON formats: one data file, images copied beside it."""
    folder = dest.parent
    (folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("w", encoding="utf-8") as lines:
        for sample, qa, jpg in _kept_samples(out, flt, rep):
            image = f"{IMAGES_DIR}/{sample.key}.jpg"
            (folder / image).write_bytes(jpg)
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


def _export_parquet(out: str, dest: Path, flt: ExportFilter, rep: ExportReport) -> None:
    from .hub import write_export_card
    from .parquet import ParquetDataset

    dataset = ParquetDataset(dest)
    for sample, qa, jpg in _kept_samples(out, flt, rep):
        dataset.add(sample, qa, jpg)
        rep.records += 1
    rep.splits = dataset.close()
    write_export_card(out, dest, rep.splits, rep, flt)


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
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    # FairFaceGPT trained on one QA pair per conversation; LLaVA data is multi-turn per image
    turns = turns or ("qa" if fmt in ("sharegpt", "fairfacegpt") else "sample")
    if turns not in TURNS:
        raise UserError(f"--turns {turns!r}: choose one of {', '.join(TURNS)}")
    if fmt == "parquet" and turns != "sample":
        raise UserError("--turns qa: a parquet export has one row per image (its QA pairs in `qa` and `messages`)")
    _check_destination(fmt, dest)
    if "://" not in out:
        out = str(Path(out).resolve())  # Beam's glob of a relative local folder matches nothing
    rep = ExportReport(path=dest)
    if fmt == "parquet":
        _export_parquet(out, dest, flt, rep)
        return rep
    _export_files(out, fmt, dest, flt, turns, rep)
    folder = dest.parent
    if fmt == "sharegpt":
        rep.dataset_info = folder / "dataset_info.json"
        write_dataset_info(rep.dataset_info, name or DEFAULT_NAME, llamafactory_entry(dest))
    elif fmt == "fairfacegpt":
        rep.dataset_info = folder / "dataset_info.json"
        write_dataset_info(rep.dataset_info, name or DEFAULT_NAME,
                           fairfacegpt_entry(dest, image_root or str(folder.resolve())))
    return rep
