"""The dataset card as a Hugging Face card: `huggingface_hub` parses its metadata, `datasets` reads its
configs (and loads the output folder through them); licences are computed from the sources read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from facecorpus.output.readers import read_manifest
from facecorpus.output.summaries import SUMMARY_COLUMNS, WrittenSummary
from facecorpus.sinks.card_hub import (
    hub_metadata,
    licence_groups,
    licences_section,
    personal_information_section,
)
from facecorpus.sinks.card_meta import split_front_matter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

#: everything the card held before it became a Hub card, still there
SECTIONS = ["## Counts", "## Tokens and cost", "## Label balance (dataset labels)", "## Faces", "## QA pairs",
            "## Rejects", "## Sources and licences", "## Personal and sensitive information", "## Biases",
            "## Intended uses", "## Out-of-scope uses", "## Provenance"]


def test_huggingface_hub_parses_the_card_metadata(demo_output: Path) -> None:
    from huggingface_hub import DatasetCard, DatasetCardData

    card = DatasetCard.load(demo_output / "README.md")
    assert isinstance(card.data, DatasetCardData)
    data = card.data.to_dict()
    assert data["license"] == ["cc-by-4.0", "other"]  # FairFace, and the demo folder's own declaration
    assert data["license_name"].startswith("see-facecorpus-demo-notes")
    assert data["task_categories"] == ["image-text-to-text", "visual-question-answering", "image-to-text"]
    assert data["size_categories"] == ["n<1K"] and data["pretty_name"]
    # the Hub's own list of size categories, as `datasets` ships it (the Hub's YAML check needs the network)
    from importlib.resources import files

    known = json.loads((files("datasets.utils") / "resources" / "size_categories.json").read_text())
    assert set(data["size_categories"]) <= set(known)
    assert {"faces", "facecorpus"} <= set(data["tags"])
    for section in SECTIONS:
        assert f"\n{section}\n" in card.text, section
    # the card round-trips through huggingface_hub unchanged in its metadata
    again = DatasetCard(str(card))
    assert again.data.to_dict() == data


def test_datasets_reads_the_configs_and_loads_the_output_through_them(demo_output: Path, tmp_path: Path) -> None:
    import datasets
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    configs = MetadataConfigs.from_dataset_card_data(DatasetCard.load(demo_output / "README.md").data)
    assert configs["default"]["data_files"] == [{"split": "train", "path": "shards/*.tar"}]
    ds = datasets.load_dataset(str(demo_output), cache_dir=str(tmp_path))  # README's configs, not a guess
    assert list(ds) == ["train"]
    assert len(ds["train"]) == read_manifest(str(demo_output)).num_rows
    assert {"jpg", "json", "txt", "__key__"} <= set(ds["train"].column_names)


def test_parquet_export_card_keeps_the_metadata_and_names_its_files(demo_output: Path, tmp_path: Path) -> None:
    from huggingface_hub import DatasetCard

    from facecorpus.export.writer import ExportFilter, export

    export(str(demo_output), "parquet", tmp_path / "hub", ExportFilter())
    run_meta, _ = split_front_matter((demo_output / "README.md").read_text())
    data = DatasetCard.load(tmp_path / "hub" / "README.md").data.to_dict()
    assert data["license"] == run_meta["license"] and data["task_categories"] == run_meta["task_categories"]
    paths = [f["path"] for f in data["configs"][0]["data_files"]]
    assert paths and all(p.startswith("data/") and p.endswith("-*.parquet") for p in paths)


def _columns(rows: list[dict]) -> WrittenSummary:
    """The manifest summary the card reads, from these rows (other columns empty)."""
    base = {**dict.fromkeys(SUMMARY_COLUMNS), "source_dataset": "", "n_faces": 1}
    filled = [{**base, **r} for r in rows]
    summary = WrittenSummary()
    summary.add_columns({k: [r[k] for r in filled] for k in base})
    return summary


STATS = {"written": 0, "by_generator": {"templates": 1}, "labels": {}, "run": {"recipe": "t"}}


def test_licences_follow_the_sources_actually_read() -> None:
    col = _columns([{"source_dataset": "laion", "url": "https://example.org/a.jpg"},
                    {"source_dataset": "laion", "licence": "cc-by-sa-4.0", "url": "https://example.org/b.jpg"},
                    {"source_dataset": "fairface", "licence": "CC-BY-4.0", "label_race": "white"},
                    {"source_dataset": "celeba", "licence": "celeba-research-only"},
                    {"source_dataset": "photos"}])
    groups = {(g.dataset, g.recorded): g for g in licence_groups(col)}
    assert groups[("laion", None)].declared.id == "laion-400m" and groups[("laion", None)].hub_id == "other"
    assert groups[("laion", "cc-by-sa-4.0")].hub_id == "cc-by-sa-4.0"  # as LAION's row recorded it
    assert groups[("fairface", "CC-BY-4.0")].hub_id == "cc-by-4.0"
    assert groups[("celeba", "celeba-research-only")].hub_id == "other"
    assert groups[("photos", None)].hub_id == "unknown"
    meta = hub_metadata({**STATS, "written": 5}, col, {"name": "mix"})
    assert meta["license"] == ["cc-by-4.0", "cc-by-sa-4.0", "other", "unknown"]
    assert meta["license_name"] == "mixed-source-terms" and "license_link" not in meta
    text = "\n".join(licences_section(col, STATS))
    assert "images owned by their rights holders" in text and "Non-commercial research" in text
    assert "unknown: the source declared no licence" in text
    assert "FairFace is CC BY 4.0" not in text  # no licence claimed for sources that were not read


def test_a_laion_only_run_is_not_called_cc_by() -> None:
    col = _columns([{"source_dataset": "laion"}, {"source_dataset": "laion"}])
    meta = hub_metadata({**STATS, "written": 2}, col, {})
    assert meta["license"] == "other" and meta["license_name"] == "laion-400m"
    assert meta["license_link"].startswith("https://laion.ai/")
    assert "demographic-labels" not in meta["tags"] and meta["annotations_creators"] == ["machine-generated"]


def test_personal_information_is_counted() -> None:
    col = _columns([{"label_race": "black", "race": "black", "url": "https://example.org/a.jpg"},
                    {"race": "white"}, {}])
    text = "\n".join(personal_information_section(col, {"faces": {"embedding": True}}))
    assert "| race / ethnicity label (special-category data in many jurisdictions), from the source dataset | 1 | 33.3% |" in text
    assert "| race inferred by a face model (no label) | 1 | 33.3% |" in text
    assert "| source URL of the image" in text and "**stored**" in text


@pytest.mark.parametrize("text", ["no front matter\n# x", "---\n- a list\n---\nbody"])
def test_front_matter_split_tolerates_cards_without_it(text: str) -> None:
    assert split_front_matter(text) == ({}, text)
