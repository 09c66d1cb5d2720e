"""`facecorpus export OUT… --format mcq-eval --out DIR`: a multiple-choice evaluation set in FaceXBench's
layout, from the held-out partitions of labelled datasets (the zero-shot attribute task's test set).

Only samples of an official test partition that a recipe asked for by name (`split: test`; they carry
`source.extra.held_out`) are read; their `attribute_mcq` pairs become questions. One JSON file per
dataset and task, shaped as FaceXBench's benchmark files:

    DIR/<dataset>_single_mcq_<task>.json   {category, sub-category, dataset, question_type: "MCQ",
                                             num_images: "single", prepend_text, postpend_text,
                                             questions: {"1": {image_paths, question_text, options,
                                                               correct_answer_option, answer, …}}}
    DIR/images/<file stem>/question_<n>.jpg
    DIR/holdout.txt      the images' hashes: a hold-out list for other recipes (validation.holdout.lists)
    DIR/README.md        the set's card: counts, letter balance, sources and their licences

Every question is checked against its sample's labels again before it is written
(`validation/label_answers.py`); one that fails is left out and counted.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..labels import Category, Vocabulary
from ..records import Sample
from ..sources.label_rows import HELD_OUT
from ..sources.licences import licence_of
from ..validation.label_answers import LabelAnswerCheck, parse_mcq

POSTPEND = "Reply with the letter of the correct option only: A, B, C or D."
#: FaceXBench's task groups for the attributes it shares with us
FACEXBENCH_CATEGORY = {"age": ("bias_fairness", "age"), "gender": ("bias_fairness", "gender"),
                       "race": ("bias_fairness", "race"), "expression": ("attributes_expression", "expression")}


@dataclass
class McqEvalReport:
    path: Path
    questions: int = 0
    files: dict[str, int] = field(default_factory=dict)
    letters: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    licences: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _task(attributes: list[str], vocab: Vocabulary) -> str:
    if len(attributes) == 1 and isinstance(vocab.get(attributes[0]), Category):
        return attributes[0]
    return "attributes"


def _prepend(task: str, vocab: Vocabulary) -> str:
    decl = vocab.get(task)
    if isinstance(decl, Category):
        return (f"This is a test of {decl.noun} recognition: look at the face in the image and decide which "
                f"option names the {decl.noun} of the person.")
    return ("This is a test of facial attribute recognition: look at the face in the image and decide which "
            "option lists only attributes the person shows.")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def export_mcq_eval(outs: list[str], dest: Path, vocab: Vocabulary | None = None) -> McqEvalReport:
    """Write the evaluation set into the folder `dest`; returns what was written and left out."""
    from ..labels import VOCABULARY
    from ..output.readers import iter_output_samples

    vocab = vocab or VOCABULARY
    check = LabelAnswerCheck(vocab)
    dest.mkdir(parents=True, exist_ok=True)
    rep = McqEvalReport(path=dest)
    files: dict[str, dict[str, Any]] = {}
    holdout: dict[str, dict[str, Any]] = {}
    held_out_samples = 0
    for out in outs:
        for key, members in iter_output_samples(out):
            if "json" not in members or "jpg" not in members:
                rep.skipped["incomplete_sample"] += 1
                continue
            sample = Sample.model_validate_json(members["json"])
            if sample.source.extra.get(HELD_OUT) is not True:
                continue
            held_out_samples += 1
            bad = {c for p in check.check(sample) for c in p.categories}
            for i, q in enumerate(sample.qa):
                if q.category != "attribute_mcq":
                    continue
                parsed = parse_mcq(q.question)
                if "attribute_mcq" in bad or parsed is None:
                    rep.skipped["failed_label_check"] += 1
                    continue
                stem, options = parsed
                task = _task(q.attributes, vocab)
                stem_name = f"{sample.source.dataset}_single_mcq_{task}"
                entry = files.get(stem_name)
                if entry is None:
                    category, sub = FACEXBENCH_CATEGORY.get(task, ("attributes_expression", "attributes"))
                    entry = files[stem_name] = {
                        "category": category, "sub-category": sub, "dataset": sample.source.dataset,
                        "question_type": "MCQ", "num_images": "single", "prepend_text": _prepend(task, vocab),
                        "postpend_text": POSTPEND, "questions": {},
                    }
                n = len(entry["questions"]) + 1
                image = f"images/{stem_name}/question_{n}.jpg"
                (dest / image).parent.mkdir(parents=True, exist_ok=True)
                (dest / image).write_bytes(members["jpg"])
                letter = q.answer_key or q.answer[:1]
                entry["questions"][str(n)] = {
                    "image_paths": [image], "question_text": stem, "options": [t for _, t in options],
                    "correct_answer_option": letter, "answer": dict(options)[letter],
                    "source_id": sample.source.id, "key": key, "split": sample.source.split, "qa_index": i,
                }
                rep.letters[letter] += 1
                rep.questions += 1
                rep.licences[sample.source.dataset].add(sample.source.licence or "not recorded")
                holdout[sample.image.sha256] = {"sha256": sample.image.sha256, "phash": sample.image.phash,
                                                "id": f"{sample.source.dataset}:{sample.source.id}"}
    if not held_out_samples:
        raise UserError(f"no held-out samples in {', '.join(outs)}: run the recipe with the test partition asked for "
                        "by name (--set sources.0.split=test) to build an evaluation set")
    if not rep.questions:
        raise UserError(f"the held-out samples in {', '.join(outs)} carry no attribute_mcq pairs "
                        "(generation.categories must include attribute_mcq)")
    for stem_name, entry in sorted(files.items()):
        _write_json(dest / f"{stem_name}.json", entry)
        rep.files[f"{stem_name}.json"] = len(entry["questions"])
    from ..validation.holdout import HEADER

    lines = [f"{HEADER} · {len(holdout)} images of the mcq-eval set", *(json.dumps(v, sort_keys=True) for v in
                                                                         sorted(holdout.values(), key=lambda v: v["id"]))]
    (dest / "holdout.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (dest / "README.md").write_text(render_card(rep, outs), encoding="utf-8")
    return rep


def render_card(rep: McqEvalReport, outs: list[str]) -> str:
    """The evaluation set's card."""
    lines = ["# Multiple-choice face attribute evaluation set", "",
             "Built by `facecorpus export --format mcq-eval` from official test partitions of labelled face datasets, "
             "which facecorpus holds out of training runs by default. Each question's answer derives from the "
             "dataset's label and was checked against it; no LLM wrote any of it.", "",
             f"- questions: {rep.questions} in {len(rep.files)} files, four options each (FaceXBench's layout)",
             f"- from: {', '.join(outs)}", "", "## Files", "", "| file | questions |", "|---|---:|"]
    lines += [f"| {name} | {n} |" for name, n in rep.files.items()]
    lines += ["", "## Right answers by letter", "", "| letter | questions | % |", "|---|---:|---:|"]
    lines += [f"| {c} | {rep.letters[c]} | {100.0 * rep.letters[c] / max(1, rep.questions):.1f} |" for c in "ABCD"]
    lines += ["", "## Sources and licences", ""]
    for dataset, ids in sorted(rep.licences.items()):
        for licence_id in sorted(ids):
            lic = licence_of(licence_id)
            terms = f"{lic.name}: {lic.terms} ({lic.url})" if lic else licence_id
            lines.append(f"- {dataset}: {terms}")
    lines += ["", "The images stay under their datasets' terms; redistribute them only where those terms allow.", "",
              "## Keeping it out of training", "",
              "`holdout.txt` lists every image's sha256 and perceptual hash. Name it in a recipe's "
              "`validation.holdout.lists` and those images (and near copies) are rejected `holdout` from any "
              "source, web crawls included.", ""]
    if rep.skipped:
        lines += ["## Left out", "", *[f"- {k}: {v}" for k, v in sorted(rep.skipped.items())], ""]
    return "\n".join(lines)
