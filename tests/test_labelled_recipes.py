"""The shipped labelled-dataset recipes on the demo's inputs (real faces in each dataset's real layout),
on Beam's FnApiRunner: every run passes `facecorpus validate`, and every multiple-choice and yes/no
answer matches the label in the dataset's own files, read here with this file's own parsing and
tables (not the vocabulary's, not the generator's)."""

from __future__ import annotations

import csv
import json
import re
import tarfile
from pathlib import Path

import pytest
import yaml

from facecorpus.pipeline import run_recipe
from facecorpus.recipe import load_recipe
from facecorpus.validation.output_check import check_output

from .conftest import REPO

#: CelebA columns by the words the questions use (from CelebA's attribute names)
CELEBA_WORDS = {
    "a five o'clock shadow": "5_o_Clock_Shadow", "arched eyebrows": "Arched_Eyebrows", "bags under the eyes": "Bags_Under_Eyes",
    "bald": "Bald", "a bald head": "Bald", "bangs": "Bangs", "big lips": "Big_Lips", "a big nose": "Big_Nose",
    "black hair": "Black_Hair", "blond hair": "Blond_Hair", "blurry": "Blurry", "brown hair": "Brown_Hair",
    "bushy eyebrows": "Bushy_Eyebrows", "chubby": "Chubby", "a double chin": "Double_Chin", "eyeglasses": "Eyeglasses",
    "a goatee": "Goatee", "gray hair": "Gray_Hair", "heavy makeup": "Heavy_Makeup", "high cheekbones": "High_Cheekbones",
    "slightly open": "Mouth_Slightly_Open", "a slightly open mouth": "Mouth_Slightly_Open", "a mustache": "Mustache",
    "narrow eyes": "Narrow_Eyes", "an oval face": "Oval_Face", "pale skin": "Pale_Skin", "a pointy nose": "Pointy_Nose",
    "a receding hairline": "Receding_Hairline", "rosy cheeks": "Rosy_Cheeks", "sideburns": "Sideburns",
    "smiling": "Smiling", "a smile": "Smiling", "straight hair": "Straight_Hair", "wavy hair": "Wavy_Hair",
    "earrings": "Wearing_Earrings", "a hat": "Wearing_Hat", "lipstick": "Wearing_Lipstick", "a necklace": "Wearing_Necklace",
    "a necktie": "Wearing_Necktie", "young": "Young", "a beard": "-No_Beard", "attractive": "Attractive",
}
#: RAF-DB's label numbers and AffectNet's codes as the adjectives and options an expression question uses
RAFDB = {"1": ("surprised", "Surprised"), "2": ("afraid", "Fearful"), "3": ("disgusted", "Disgusted"),
         "4": ("happy", "Happy"), "5": ("sad", "Sad"), "6": ("angry", "Angry"), "7": ("neutral", "Neutral")}
AFFECTNET = {"0": "Neutral", "1": "Happy", "2": "Sad", "3": "Surprised", "4": "Fearful", "5": "Disgusted", "6": "Angry",
             "7": "Contemptuous"}
UTK_RACE = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian"}


def samples_of(out: Path) -> list[dict]:
    found = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            found += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    return found


def mcq(q: dict) -> tuple[str, dict[str, str]]:
    """(chosen option text, {letter: option}) read from the question and answer text."""
    options = dict(re.findall(r"^([A-D])\. (.+)$", q["question"], re.M))
    assert sorted(options) == list("ABCD"), q["question"]
    letter = re.match(r"^([A-D])\. ", q["answer"]).group(1)
    assert q["answer"] == f"{letter}. {options[letter]}"
    return options[letter], options


def said_yes(q: dict) -> bool:
    assert q["answer"].startswith(("Yes. ", "No. ")), q["answer"]
    return q["answer"].startswith("Yes")


def run_and_validate(recipe_path: Path, overrides: list[str], out: Path) -> Path:
    recipe = load_recipe(recipe_path, overrides)
    run_recipe(recipe, str(out), [], recipe_yaml=recipe_path.read_text(encoding="utf-8"))
    report = check_output(str(out))
    assert report.ok, report.problems[:10]
    return out


@pytest.fixture(scope="module")
def celeba_out(demo_inputs: Path, tmp_path_factory) -> Path:
    return run_and_validate(REPO / "pipelines" / "celeba_qa.yaml", [f"sources.0.root={demo_inputs / 'celeba'}"],
                            tmp_path_factory.mktemp("celeba") / "out")


@pytest.fixture(scope="module")
def three_out(demo_inputs: Path, tmp_path_factory) -> Path:
    """RAF-DB, UTKFace and the AffectNet-style table in one run: each source section exactly as its
    shipped recipe has it (paths pointed at the demo inputs), the union of their categories."""
    sections = {}
    for name in ("rafdb_qa", "utkface_qa", "affectnet_qa"):
        sections[name] = yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text(encoding="utf-8"))
    sources = [sections["rafdb_qa"]["sources"][0], sections["utkface_qa"]["sources"][0], sections["affectnet_qa"]["sources"][0]]
    sources[0]["root"] = str(demo_inputs / "rafdb" / "basic")
    sources[1]["images"] = str(demo_inputs / "utkface" / "UTKFace")
    sources[2]["table"] = str(demo_inputs / "affectnet" / "training.csv")
    sources[2]["images"] = str(demo_inputs / "affectnet" / "Manually_Annotated_Images")
    recipe = {**sections["affectnet_qa"], "name": "three_labelled", "sources": sources}
    path = tmp_path_factory.mktemp("three") / "three.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return run_and_validate(path, [], path.parent / "out")


def test_celeba_recipe_answers_match_list_attr_celeba(celeba_out: Path, demo_inputs: Path):
    lines = (demo_inputs / "celeba" / "Anno" / "list_attr_celeba.txt").read_text().splitlines()
    header = lines[1].split()
    raw = {}
    for line in lines[2:]:
        fields = line.split()
        raw.setdefault(fields[0], dict(zip(header, fields[1:], strict=False)))

    def present(words: str, image: str) -> bool:
        column = CELEBA_WORDS[words.lower()]
        if column.startswith("-"):
            return raw[image][column[1:]] == "-1"
        return raw[image][column] == "1"

    samples = samples_of(celeba_out)
    assert sorted(s["source"]["id"] for s in samples) == [f"{i:06d}.jpg" for i in range(1, 11)]
    checked = {"mcq": 0, "yes_no": 0, "list": 0}
    for s in samples:
        image = s["source"]["id"]
        assert s["source"]["licence"] == "celeba-research-only"
        assert s["faces"] and s["faces"][0]["detector"] == "given:celeba"
        for q in s["qa"]:
            if q["category"] == "attribute_mcq":
                chosen, options = mcq(q)
                for text in options.values():
                    all_there = all(present(part.strip(), image) for part in text.split(","))
                    assert all_there == (text == chosen), (image, text)
                checked["mcq"] += 1
            elif q["category"] == "attribute_yes_no":
                m = re.match(r"^(?:Does|Is) (?:the person|the image|the person's mouth) (?:have|wearing|look)? ?(.+)\?$", q["question"])
                if q["question"].startswith("Does the person appear to be"):  # gender
                    asked = q["question"].removeprefix("Does the person appear to be ").rstrip("?")
                    assert said_yes(q) == ((raw[image]["Male"] == "1") == (asked == "male"))
                else:
                    assert said_yes(q) == present(m.group(1), image), q
                checked["yes_no"] += 1
            elif q["category"] == "attribute_list":
                items = re.split(r", | or ", q["question"].split(": ", 1)[1].rstrip("?"))
                there = [i for i in items if present(i, image)]
                if there:
                    assert all(i in q["answer"].lower() for i in there)
                    assert not any(i in q["answer"].lower() for i in items if i not in there)
                else:
                    assert q["answer"] == "None of them can be seen."
                checked["list"] += 1
    assert checked["mcq"] >= 10 and checked["yes_no"] >= 40 and checked["list"] >= 10


def test_celeba_rejects_name_their_reasons_and_the_card_its_labels(celeba_out: Path):
    rejects = [json.loads(line) for f in (celeba_out / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert sorted(r["reason"] for r in rejects) == sorted(
        ["bad_landmarks", "bad_row", "duplicate_row", "holdout", "holdout", "missing_file", "missing_partition",
         "unknown_label", "unsafe_path"])
    card = (celeba_out / "README.md").read_text()
    assert "| wearing_lipstick |" in card and "Right answers" not in card or "right letter" in card
    stats = json.loads((celeba_out / "stats.json").read_text())
    assert stats["label_qa"]["attribute_yes_no"]["yes"] == stats["label_qa"]["attribute_yes_no"]["no"]
    assert set(stats["attribute_labels"]["smiling"]) <= {"true", "false"}


def test_rafdb_utkface_and_table_answers_match_their_files(three_out: Path, demo_inputs: Path):
    rafdb = dict(line.split() for line in (demo_inputs / "rafdb" / "basic" / "EmoLabel" / "list_patition_label.txt")
                 .read_text().splitlines() if len(line.split()) == 2)
    with (demo_inputs / "affectnet" / "training.csv").open() as f:
        affectnet = {}
        for row in csv.DictReader(f):
            affectnet.setdefault(row["subDirectory_filePath"], row)
    by_dataset: dict[str, int] = {}
    for s in samples_of(three_out):
        ds, sid = s["source"]["dataset"], s["source"]["id"]
        by_dataset[ds] = by_dataset.get(ds, 0) + 1
        for q in s["qa"]:
            if ds == "rafdb" and q["category"] == "attribute_mcq":
                assert mcq(q)[0] == RAFDB[rafdb[sid]][1]
            if ds == "rafdb" and q["category"] == "attribute_yes_no":
                asked = q["question"].removeprefix("Does the person look ").rstrip("?")
                assert said_yes(q) == (asked == RAFDB[rafdb[sid]][0])
            if ds == "utkface":
                age, gender, race = sid.split("_")[:3]
                if q["category"] == "attribute_mcq" and q["question"].startswith("Which age range"):
                    chosen = mcq(q)[0]
                    lo, hi = (int(x) for x in re.findall(r"\d+", chosen)) if "-" in chosen else (int(chosen[:2]), 200)
                    assert lo <= int(age) <= hi
                if q["category"] == "attribute_mcq" and q["question"].startswith("Which ethnic group"):
                    assert mcq(q)[0] == UTK_RACE[race]
                if q["category"] == "attribute_yes_no" and q["question"].endswith(("male?", "female?")):
                    asked = q["question"].rsplit(" ", 1)[1].rstrip("?")
                    assert said_yes(q) == (asked == ("male" if gender == "0" else "female"))
                if q["category"] == "attribute_open" and "in years" in q["question"]:
                    assert q["answer"] == f"The person appears to be about {int(age)} years old."
            if ds == "affectnet" and q["category"] == "attribute_mcq":
                assert mcq(q)[0] == AFFECTNET[affectnet[sid]["expression"]]
            if ds == "affectnet" and q["category"] == "attribute_yes_no" and "face mask" in q["question"]:
                assert said_yes(q) == (affectnet[sid]["face_mask"] == "1")
    # the three sets share faces: a near copy across datasets is removed (dedup), never silently
    rejects = [json.loads(line) for f in (three_out / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    for r in rejects:
        if r["reason"] == "duplicate":
            by_dataset[r["dataset"]] = by_dataset.get(r["dataset"], 0) + 1
    assert by_dataset == {"rafdb": 12, "utkface": 12, "affectnet": 10}
    licences = {s["source"]["dataset"]: s["source"]["licence"] for s in samples_of(three_out)}
    assert licences["rafdb"] == "raf-db-research-only" and licences["utkface"] == "utkface-non-commercial"
    assert licences["affectnet"].startswith("AffectNet academic licence")
