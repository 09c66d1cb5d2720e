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


def shipped_sources(inputs: Path, split: str | None = None) -> dict[str, dict]:
    """Each shipped recipe's source section as it is, its paths pointed at the demo inputs."""
    sources = {}
    for name in ("celeba_qa", "rafdb_qa", "utkface_qa", "affectnet_qa"):
        sources[name] = yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text(encoding="utf-8"))["sources"][0]
    sources["celeba_qa"]["root"] = str(inputs / "celeba")
    sources["rafdb_qa"]["root"] = str(inputs / "rafdb" / "basic")
    sources["utkface_qa"]["images"] = str(inputs / "utkface" / "UTKFace")
    sources["affectnet_qa"]["table"] = str(inputs / "affectnet" / "training.csv")
    sources["affectnet_qa"]["images"] = str(inputs / "affectnet" / "Manually_Annotated_Images")
    return sources


@pytest.fixture(scope="module")
def labelled_out(demo_inputs: Path, tmp_path_factory) -> Path:
    """The four labelled sources in one run: the shipped celeba_qa recipe with the source sections of
    rafdb_qa, utkface_qa and affectnet_qa added exactly as those recipes have them."""
    recipe = yaml.safe_load((REPO / "pipelines" / "celeba_qa.yaml").read_text(encoding="utf-8"))
    recipe["sources"] = list(shipped_sources(demo_inputs).values())
    path = tmp_path_factory.mktemp("labelled") / "labelled.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return run_and_validate(path, [], path.parent / "out")


@pytest.fixture(scope="module")
def eval_out(demo_inputs: Path, tmp_path_factory) -> Path:
    """CelebA's and RAF-DB's test partitions, asked for by name (the evaluation set's run)."""
    recipe = yaml.safe_load((REPO / "pipelines" / "celeba_qa.yaml").read_text(encoding="utf-8"))
    sources = shipped_sources(demo_inputs)
    recipe["sources"] = [{**sources["celeba_qa"], "split": "test"}, {**sources["rafdb_qa"], "split": "test"}]
    recipe["name"] = "labelled_test_partitions"
    path = tmp_path_factory.mktemp("eval") / "eval.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return run_and_validate(path, [], path.parent / "out")


def test_celeba_answers_match_list_attr_celeba(labelled_out: Path, demo_inputs: Path):
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

    samples = [s for s in samples_of(labelled_out) if s["source"]["dataset"] == "celeba"]
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


def test_celeba_rejects_name_their_reasons_and_the_card_its_labels(labelled_out: Path):
    rejects = [json.loads(line) for f in (labelled_out / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert sorted(r["reason"] for r in rejects if r["dataset"] == "celeba") == sorted(
        ["bad_landmarks", "bad_row", "duplicate_row", "holdout", "holdout", "missing_file", "missing_partition",
         "unknown_label", "unsafe_path"])
    card = (labelled_out / "README.md").read_text()
    assert "| wearing_lipstick |" in card and "| right letter |" in card and "Yes/no answers:" in card
    stats = json.loads((labelled_out / "stats.json").read_text())
    said = [q["answer"].split(".")[0] for s in samples_of(labelled_out) if s["source"]["dataset"] == "celeba"
            for q in s["qa"] if q["category"] == "attribute_yes_no"]
    assert said.count("Yes") == said.count("No") == 20  # 2 + 2 per CelebA sample
    yes_no = stats["label_qa"]["attribute_yes_no"]
    assert yes_no["yes"] + yes_no["no"] == sum(q.get("answer_key") in ("yes", "no") for s in samples_of(labelled_out)
                                               for q in s["qa"])
    assert set(stats["attribute_labels"]["smiling"]) <= {"true", "false"}


def test_rafdb_utkface_and_table_answers_match_their_files(labelled_out: Path, demo_inputs: Path):
    rafdb = dict(line.split() for line in (demo_inputs / "rafdb" / "basic" / "EmoLabel" / "list_patition_label.txt")
                 .read_text().splitlines() if len(line.split()) == 2)
    with (demo_inputs / "affectnet" / "training.csv").open() as f:
        affectnet = {}
        for row in csv.DictReader(f):
            affectnet.setdefault(row["subDirectory_filePath"], row)
    by_dataset: dict[str, int] = {}
    for s in samples_of(labelled_out):
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
    rejects = [json.loads(line) for f in (labelled_out / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    for r in rejects:
        if r["reason"] == "duplicate" and r["dataset"] != "celeba":
            by_dataset[r["dataset"]] = by_dataset.get(r["dataset"], 0) + 1
    by_dataset.pop("celeba")
    assert by_dataset == {"rafdb": 12, "utkface": 12, "affectnet": 10}
    licences = {s["source"]["dataset"]: s["source"]["licence"] for s in samples_of(labelled_out)}
    assert licences["rafdb"] == "raf-db-research-only" and licences["utkface"] == "utkface-non-commercial"
    assert licences["affectnet"].startswith("AffectNet academic licence")


# ------------------------------------------------------------------------------------------- mcq-eval


def test_mcq_eval_is_facexbench_layout_from_held_out_partitions_only(eval_out: Path, labelled_out: Path,
                                                                     demo_inputs: Path, tmp_path: Path):
    from facecorpus.export.mcq_eval import export_mcq_eval
    from facecorpus.validation.holdout import read_holdout_list

    rep = export_mcq_eval([str(eval_out), str(labelled_out)], tmp_path / "eval")
    files = sorted(p.name for p in (tmp_path / "eval").glob("*.json"))
    assert files == ["celeba_single_mcq_attributes.json", "rafdb_single_mcq_expression.json"]
    rafdb = dict(line.split() for line in (demo_inputs / "rafdb" / "basic" / "EmoLabel" / "list_patition_label.txt")
                 .read_text().splitlines() if len(line.split()) == 2)
    lines = (demo_inputs / "celeba" / "Anno" / "list_attr_celeba.txt").read_text().splitlines()
    celeba = {f[0]: dict(zip(lines[1].split(), f[1:], strict=False)) for f in (x.split() for x in lines[2:])}
    letters = []
    for name in files:
        data = json.loads((tmp_path / "eval" / name).read_text())
        assert {"category", "sub-category", "dataset", "question_type", "num_images", "prepend_text", "postpend_text",
                "questions"} <= set(data) and data["question_type"] == "MCQ"
        for q in data["questions"].values():
            assert len(q["options"]) == 4 and q["correct_answer_option"] in "ABCD"
            assert q["answer"] == q["options"]["ABCD".index(q["correct_answer_option"])]
            assert (tmp_path / "eval" / q["image_paths"][0]).is_file() and q["split"] == "test"
            if data["dataset"] == "rafdb":
                assert q["source_id"].startswith("test_") and q["answer"] == RAFDB[rafdb[q["source_id"]]][1]
            else:
                row = celeba[q["source_id"]]
                for option in q["options"]:
                    columns = [CELEBA_WORDS[p.strip().lower()] for p in option.split(",")]
                    there = all(row[c[1:]] == "-1" if c.startswith("-") else row[c] == "1" for c in columns)
                    assert there == (option == q["answer"])
            letters.append(q["correct_answer_option"])
    assert rep.questions == len(letters) == 6  # 2 CelebA + 4 RAF-DB test images, one MCQ each; nothing from labelled_out
    holdout = read_holdout_list(str(tmp_path / "eval" / "holdout.txt"))
    assert len(holdout) == 6 and all(sha and phash for sha, phash, _ in holdout)
    card = (tmp_path / "eval" / "README.md").read_text()
    assert "RAF-DB release agreement" in card and "CelebA agreement" in card and "| A |" in card


def test_training_exports_leave_held_out_samples_out(eval_out: Path, tmp_path: Path):
    from facecorpus.errors import UserError
    from facecorpus.export.mcq_eval import export_mcq_eval
    from facecorpus.export.writer import ExportFilter, export

    rep = export(str(eval_out), "sharegpt", tmp_path / "train.json", ExportFilter())
    assert rep.records == 0 and rep.skipped_samples == {"held_out": 6}
    with pytest.raises(UserError, match="no held-out samples"):
        export_mcq_eval([str(REPO / "no-such-output")], tmp_path / "none")


# --------------------------------------------------------------------------------------------- stages


def _stage_export(outs: list[Path], dest: Path, mixture: Path | None = None):
    from facecorpus.export.mixture import export_stages

    return export_stages([str(o) for o in outs], dest, mixture)


@pytest.fixture(scope="module")
def stages(demo_output: Path, labelled_out: Path, eval_out: Path, tmp_path_factory) -> dict:
    """Face-MLLM's three stages (the shipped mixture) from the demo run, the labelled run and the test
    partitions' run, written twice with the same seed and once with another."""
    root = tmp_path_factory.mktemp("stages")
    outs = [demo_output, labelled_out, eval_out]
    first = _stage_export(outs, root / "a")
    again = _stage_export(outs, root / "b")
    spec = yaml.safe_load((REPO / "pipelines" / "face_mllm_stages.yaml").read_text())
    spec["seed"] = 1
    (root / "seed1.yaml").write_text(yaml.safe_dump(spec))
    other = _stage_export(outs, root / "c", root / "seed1.yaml")
    return {"root": root, "first": first, "again": again, "other": other, "outs": outs}


def test_stages_are_deterministic_by_seed_and_never_hold_test_partitions(stages: dict):
    root = stages["root"]
    for name in ("stage1_alignment", "stage2_vqa", "stage3_specialised"):
        a, b = (root / "a" / f"{name}.json").read_text(), (root / "b" / f"{name}.json").read_text()
        assert a == b and json.loads(a)
    assert (root / "a" / "stage3_specialised.json").read_text() != (root / "c" / "stage3_specialised.json").read_text()
    report = json.loads((root / "a" / "mixture.json").read_text())
    assert report["samples_left_out"] == {"held_out": 6}
    images = {r["images"][0] for n in ("stage1_alignment", "stage2_vqa", "stage3_specialised")
              for r in json.loads((root / "a" / f"{n}.json").read_text())}
    assert not any(p.startswith("images/02/") for p in images)  # the third output is the test partitions'


def test_stage_pools_keep_their_shares(stages: dict):
    stage3 = stages["first"].stages["stage3_specialised"]
    pools = {p["pool"]: p for p in stage3["pools"]}
    total = stage3["records"]
    assert total > 0 and sum(p["taken"] for p in pools.values()) == total
    for p in pools.values():  # every pool matched something here, so each keeps its share (to rounding)
        assert not p.get("empty") and abs(p["taken"] - p["share"] * total) <= 1
    # the scarcest pool is taken whole and sets the stage's size
    assert any(p["taken"] == p["matched"] for p in pools.values())
    stage1 = stages["first"].stages["stage1_alignment"]
    assert stage1["records"] == sum(1 for o in stages["outs"][:2] for _ in samples_of(o))


def test_a_mixture_with_caps_sizes_and_an_empty_pool(stages: dict, labelled_out: Path):
    root = stages["root"]
    spec = {"seed": 3, "stages": [
        {"name": "mcq_only", "task": "qa", "size": 20,
         "pools": [{"categories": ["attribute_mcq"], "datasets": ["celeba"], "share": 0.5, "cap": 4},
                   {"categories": ["attribute_mcq"], "share": 0.5}]},
        {"name": "with_empty", "task": "qa",
         "pools": [{"categories": ["demographics"], "share": 0.5}, {"categories": ["attribute_yes_no"], "share": 0.5}]},
    ]}
    (root / "mix.yaml").write_text(yaml.safe_dump(spec))
    rep = _stage_export([labelled_out], root / "d", root / "mix.yaml")
    capped, rest = rep.stages["mcq_only"]["pools"]
    assert capped["taken"] == 4 and capped["short_by"] == "cap" and rest["taken"] == 10
    records = json.loads((root / "d" / "mcq_only.json").read_text())
    assert len(records) == 14 and all("Answer with the letter" in r["conversations"][0]["value"] for r in records)
    empty, yes_no = rep.stages["with_empty"]["pools"]
    assert empty["empty"] and yes_no["taken"] == yes_no["matched"] > 0


def test_mixture_mistakes_are_one_line(tmp_path: Path):
    from facecorpus.errors import UserError
    from facecorpus.export.mixture import load_mixture

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stages": [{"name": "s", "task": "qa", "pools": [{"share": 0.5}]}]}))
    with pytest.raises(UserError, match="add up to 0.5"):
        load_mixture(bad)
    bad.write_text(yaml.safe_dump({"stages": [{"name": "s", "task": "caption", "pools": [{"share": 1, "categories": ["x"]}]}]}))
    with pytest.raises(UserError, match="caption pools"):
        load_mixture(bad)


def test_llamafactory_loads_every_stage(stages: dict):
    import os
    import subprocess
    import sys

    # the shipped mixture cut to 8 records a stage: LLaMA-Factory reads them the way it reads any size
    spec = yaml.safe_load((REPO / "pipelines" / "face_mllm_stages.yaml").read_text())
    for stage in spec["stages"]:
        stage["size"] = 8
    (stages["root"] / "small.yaml").write_text(yaml.safe_dump(spec))
    folder = stages["root"] / "small"
    small = _stage_export(stages["outs"], folder, stages["root"] / "small.yaml")
    names = small.names
    jobs = [{"dataset_dir": str(folder), "name": entry, "media_dir": None} for entry in names.values()]
    (stages["root"] / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "HF_DATASETS_CACHE": str(stages["root"] / "hf-cache")}
    proc = subprocess.run([sys.executable, "-m", "tests.llamafactory_check", str(stages["root"] / "jobs.json")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = {json.loads(line.split(" ", 1)[1])["name"]: json.loads(line.split(" ", 1)[1])
               for line in proc.stdout.splitlines() if line.startswith("LLAMAFACTORY_REPORT ")}
    for stage, entry in names.items():
        r = reports[entry]
        expected = small.stages[stage]["records"]
        assert r["records"] == expected > 0 and r["errors"] == [] and r["accepted"] == expected, (stage, r)
        assert r["tokenized"] == expected and r["trained_label_tokens"] > 0
        assert all(Path(p).is_file() and str(folder) in p for p in r["images"])
