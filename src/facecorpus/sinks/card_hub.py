"""The parts of the dataset card a Hugging Face Hub card needs: its YAML metadata, and the sections on
licences, personal and sensitive information, biases, and uses — computed from what the output holds.

Inputs are plain values (the stats dict, the manifest's summary — counts, never one value per sample,
output/summaries.py — and the recipe), so the card can be written wherever the output package lives;
nothing here reads or writes files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from ..sources.licences import DATASET_TERMS, Licence, licence_of
from .card_meta import size_category

if TYPE_CHECKING:
    from ..output.summaries import WrittenSummary

SHARDS_GLOB = "shards/*.tar"
#: Hub licence ids a source may record as such (SPDX ids, lower-cased, as the Hub spells them)
HUB_LICENCES = frozenset({
    "apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0",
    "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0",
    "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0", "odc-by", "odbl", "pddl", "openrail", "unknown", "other",
})
LABELS = ("age", "gender", "race")


@dataclass(frozen=True)
class LicenceGroup:
    """Samples of one source dataset that record the same licence."""

    dataset: str
    recorded: str | None
    samples: int
    declared: Licence | None  # what the recorded id stands for, or the dataset's own terms

    @property
    def hub_id(self) -> str:
        if self.declared is not None and self.recorded in (None, self.declared.id):
            return self.declared.hub
        if self.recorded is None:
            return "unknown"
        lowered = self.recorded.strip().lower()
        return lowered if lowered in HUB_LICENCES else "other"


def licence_groups(written: WrittenSummary) -> list[LicenceGroup]:
    """(dataset, recorded licence) groups of the written samples, most samples first."""
    groups = []
    for (dataset, recorded), n in sorted(written.licences.items(), key=lambda kv: (-kv[1], str(kv[0]))):
        declared = licence_of(recorded) or DATASET_TERMS.get(dataset)
        groups.append(LicenceGroup(dataset, recorded, n, declared))
    return groups


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def hub_metadata(stats: dict[str, Any], written: WrittenSummary, recipe: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML front matter: what the Hub shows and filters by, and where the data files are."""
    groups = licence_groups(written)
    ids = sorted({g.hub_id for g in groups}) or ["unknown"]
    meta: dict[str, Any] = {
        "pretty_name": recipe.get("description") or recipe.get("name") or stats.get("run", {}).get("recipe", "facecorpus output"),
        "license": ids[0] if len(ids) == 1 else ids,
    }
    others = {g.declared.id if g.declared else g.recorded: g for g in groups if g.hub_id == "other"}
    if len(others) == 1:
        ((name, g),) = others.items()
        meta["license_name"] = _slug(name or "other")
        if g.declared is not None and g.declared.url:
            meta["license_link"] = g.declared.url
    elif others:
        meta["license_name"] = "mixed-source-terms"
    labelled = any(written.labelled[a] for a in LABELS)
    meta.update({
        "language": ["en"],
        "task_categories": ["image-text-to-text", "visual-question-answering", "image-to-text"],
        "annotations_creators": ["machine-generated", *(["found"] if labelled else [])],
        "language_creators": ["machine-generated"],
        "size_categories": [size_category(stats["written"])],
        "source_datasets": sorted({g.dataset for g in groups}),
        "tags": ["faces", "facecorpus", "webdataset", "multimodal", "synthetic-text",
                 *(["demographic-labels"] if labelled else [])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": SHARDS_GLOB}]}],
    })
    return meta


def _commercial(lic: Licence) -> str:
    return {True: "allowed", False: "not allowed", None: "not stated"}[lic.commercial]


def _terms(lic: Licence) -> str:
    where = f" <{lic.url}>" if lic.url else ""
    return f"{lic.name} — {lic.terms} Commercial use: {_commercial(lic)}.{where}"


#: licences listed per source dataset; a web source may record many (the rest are in the manifest)
_SHOWN_PER_SOURCE = 5


def licences_section(written: WrittenSummary, stats: dict[str, Any]) -> list[str]:
    """Each source dataset read, its samples, and the terms they are under: a declared licence in full
    (name, terms, commercial use, where published), a web source's dataset-level terms beside what its
    rows recorded, anything else as recorded, and a warning where nothing was declared."""
    lines = ["## Sources and licences", "", "Computed from the samples written:", ""]
    by_dataset: dict[str, list[LicenceGroup]] = {}
    for g in licence_groups(written):
        by_dataset.setdefault(g.dataset, []).append(g)
    for dataset, groups in sorted(by_dataset.items()):
        n = sum(g.samples for g in groups)
        lines.append(f"- {dataset}: {n} samples")
        for g in groups[:_SHOWN_PER_SOURCE]:
            share = "" if g.samples == n else f" ({g.samples} samples)"
            if g.declared is not None and g.recorded == g.declared.id:
                lines.append(f"  - licence: {_terms(g.declared)}{share}")
            elif g.declared is not None:  # a web source: its rows' own licence, and the dataset's terms
                recorded = f"`{g.recorded}` as the row recorded it (not checked)" if g.recorded else "none recorded per image"
                lines.append(f"  - licence: {recorded}{share}; the dataset's own terms: {_terms(g.declared)}")
            elif g.recorded:
                lines.append(f"  - licence: {g.recorded}{share} (as the source recorded it; not a licence facecorpus "
                             "knows: check it)")
            else:
                lines.append(f"  - licence: unknown: the source declared no licence{share}. Set `licence:` on the "
                             "source in the recipe, and do not publish these images before you know their terms")
        if len(groups) > _SHOWN_PER_SOURCE:
            lines.append(f"  - … {len(groups) - _SHOWN_PER_SOURCE} other licences (see the manifest's `licence` column)")
    models = written.llm_models
    generators = ", ".join(f"{k} ({v})" for k, v in stats["by_generator"].items()) or "-"
    lines += ["", "Each sample's `KEY.json` carries its source licence (`source.licence`); the manifest has it as the "
              "`licence` column.", "",
              f"Generated text (captions, QA pairs): generators {generators}"
              + (f"; LLMs {', '.join(f'{m} ({n})' for m, n in models.most_common())}" if models else "")
              + ". Text written by a hosted model is also subject to its provider's terms of use.", ""]
    return lines


def _share(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}%" if total else "-"


def personal_information_section(written: WrittenSummary, recipe: dict[str, Any]) -> list[str]:
    """What in this output identifies or describes real people, counted."""
    n = written.written
    faces = sum(int(k) * v for k, v in written.faces_per_sample.items() if k is not None)
    lines = ["## Personal and sensitive information", "",
             f"This output holds {n} images with {faces} detected faces. Face images are personal data of the "
             "people shown, and become biometric data when processed to identify them.", ""]
    lines += ["| what | samples | share |", "|---|---:|---:|"]
    for attr, what in (("race", "race / ethnicity label (special-category data in many jurisdictions)"),
                       ("gender", "gender label"), ("age", "age label")):
        labelled, inferred = written.labelled[attr], written.inferred[attr]
        lines.append(f"| {what}, from the source dataset | {labelled} | {_share(labelled, n)} |")
        if inferred:
            lines.append(f"| {attr} inferred by a face model (no label) | {inferred} | {_share(inferred, n)} |")
    urls = written.with_url
    lines.append(f"| source URL of the image (the page or person it came from may be found) | {urls} | {_share(urls, n)} |")
    embedding = bool((recipe.get("faces") or {}).get("embedding"))
    lines += ["", f"- Face embeddings (biometric templates that can match a person across photos): "
              f"{'**stored** in each face record (`faces.embedding: true`)' if embedding else 'not stored'}.",
              "- Web sources keep the image's alt-text as untrusted `source.text`; it may name people.",
              "- Labels describe how annotators or models saw a face; they are not the person's own "
              "statement of their age, gender or ethnicity.",
              "- To remove a person: delete their samples (keys via `source.id` / `source.url` in the "
              "manifest) from the shards, then `facecorpus stats DIR --write`.", ""]
    return lines


#: the label vocabularies of datasets the card names when they are among the sources
VOCABULARIES = {
    "fairface": "FairFace: 7 race groups, 2 genders, 9 age bins",
    "utkface": "UTKFace: 5 race groups, 2 genders, age in years",
    "celeba": "CelebA: 40 binary attributes, no age or race",
    "rafdb": "RAF-DB: 7 expressions, 3 race groups, 2 genders (+ unsure), 5 age bins",
}


def biases_section(stats: dict[str, Any]) -> list[str]:
    """How balanced the labels are (tables above), summarised as shares, and where bias comes from."""
    w = stats["written"]
    lines = ["## Biases", "",
             "Label balance is tabled under *Label balance*; per attribute, over the labelled samples:", "",
             "| label | groups | largest group | smallest group | largest / smallest | unlabelled |",
             "|---|---:|---|---|---:|---:|"]
    for attr, dist in stats["labels"].items():
        known = {k: v for k, v in dist.items() if k != "unknown" and v}
        unknown = dist.get("unknown", 0)
        if not known:
            lines.append(f"| {attr} | 0 | - | - | - | {_share(unknown, w)} |")
            continue
        total = sum(known.values())
        (big, nb), (small, ns) = max(known.items(), key=lambda kv: kv[1]), min(known.items(), key=lambda kv: kv[1])
        lines.append(f"| {attr} | {len(known)} | {big} ({_share(nb, total)}) | {small} ({_share(ns, total)}) | "
                     f"{nb / ns:.1f} | {_share(unknown, w)} |")
    named = [v for k, v in VOCABULARIES.items() if k in stats.get("by_source", {})]
    lines += ["",
              "- The label vocabularies are the source datasets'"
              + (f" ({'; '.join(named)})" if named else "")
              + ": fixed taxonomies that do not describe everyone.",
              "- Rejects (no face found, too small, duplicates) are not spread evenly over groups; face "
              "detectors and attribute models miss and misjudge some groups more than others.",
              "- Generated text carries the biases of the model or templates that wrote it; demographic "
              "answers restate the labels rather than see them.", ""]
    return lines


USES = [
    "## Intended uses", "",
    "- Training and evaluating multimodal models to describe faces: expression, pose, lighting, image "
    "quality, visible attributes, with the labels' uncertainty.",
    "- Research on the fairness of such models, using the label balance above.", "",
    "## Out-of-scope uses", "",
    "- Identifying, recognising, verifying or tracking people, or linking a face to a name or to other "
    "photos of the same person.",
    "- Inferring the race, ethnicity, gender or age of real individuals to make decisions about them "
    "(hiring, credit, policing, access, surveillance).",
    "- Any use the source datasets' terms exclude (see *Sources and licences*).", "",
]


def recipe_dict(recipe_yaml: str) -> dict[str, Any]:
    """The recipe as a dict for the card ({} when the recorded text does not parse)."""
    try:
        data = yaml.safe_load(recipe_yaml)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}
