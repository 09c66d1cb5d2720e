"""The shipped labelled-dataset recipes on the demo's inputs (real faces in each dataset's real layout),
each run as a user runs it — `facecorpus run pipelines/<name>.yaml --set <its paths> --out …`, then
`facecorpus validate` — on Beam's FnApiRunner. Every multiple-choice and yes/no answer in those outputs
is checked against the label in the dataset's own files, read here with this file's own parsing and
tables (not the vocabulary's, not the generator's); a question none of this file's readings knows fails
the test, so "every" means every."""

from __future__ import annotations

import csv
import json
import re
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.support.helpers import REPO

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
AFFECTNET = {"0": ("neutral", "Neutral"), "1": ("happy", "Happy"), "2": ("sad", "Sad"), "3": ("surprised", "Surprised"),
             "4": ("afraid", "Fearful"), "5": ("disgusted", "Disgusted"), "6": ("angry", "Angry"),
             "7": ("contemptuous", "Contemptuous")}
#: UTKFace's race codes (its README) as the groups a question names; a group that only overlaps the code
#: (UTKFace's coarse Asian vs East/Southeast Asian, Others vs Latino/Middle Eastern) must never be asked
UTK_RACE = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}
UTK_OVERLAPS = {"2": {"East Asian", "Southeast Asian"}, "4": {"Latino or Hispanic", "Middle Eastern"}}
#: how each shipped recipe is pointed at the demo's inputs (the --set lines its comment and the docs give)
RECIPE_INPUTS = {
    "celeba_qa": ["sources.0.root={in}/celeba"],
    "rafdb_qa": ["sources.0.root={in}/rafdb/basic"],
    "utkface_qa": ["sources.0.images={in}/utkface/UTKFace"],
    "affectnet_qa": ["sources.0.table={in}/affectnet/training.csv",
                     "sources.0.images={in}/affectnet/Manually_Annotated_Images"],
}


def samples_of(out: Path) -> list[dict]:
    found = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            found += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    return found


def rejects_of(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "rejects").glob("*.jsonl")) for line in f.read_text().splitlines()]


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


def age_range(text: str) -> tuple[int, int]:
    """(low, high) years from '20-29 years', '30 to 39 years old', '70 years or older'."""
    if m := re.search(r"(\d+)(?:-| to )(\d+) years", text):
        return int(m.group(1)), int(m.group(2))
    m = re.search(r"(\d+) years or older", text)
    assert m, text
    return int(m.group(1)), 10_000


def cli(args: list[str]) -> int:
    """`facecorpus ARGS` in this process, as the console script runs it (main()); its exit code."""
    from facecorpus.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["facecorpus", *args])
        try:
            main()
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 1
    return 0


def run_and_validate(recipe_path: Path, overrides: list[str], out: Path) -> Path:
    sets = [arg for line in overrides for arg in ("--set", line)]
    assert cli(["run", str(recipe_path), "--out", str(out), *sets]) == 0, f"facecorpus run {recipe_path} {sets} failed"
    assert cli(["validate", str(out)]) == 0, f"facecorpus validate {out} failed"
    return out


@pytest.fixture(scope="module")
def recipe_outs(demo_inputs: Path, tmp_path_factory) -> dict[str, Path]:
    """Each shipped labelled recipe, exactly as shipped, run on the demo's inputs and validated."""
    root = tmp_path_factory.mktemp("labelled")
    return {name: run_and_validate(REPO / "pipelines" / f"{name}.yaml", [s.format(**{"in": demo_inputs}) for s in sets],
                                   root / name)
            for name, sets in RECIPE_INPUTS.items()}


@pytest.fixture(scope="module")
def eval_out(demo_inputs: Path, tmp_path_factory) -> Path:
    """CelebA's and RAF-DB's test partitions, asked for by name (the evaluation set's run): the
    celeba_qa recipe with the source sections of celeba_qa and rafdb_qa, both `split: test`."""
    recipe = yaml.safe_load((REPO / "pipelines" / "celeba_qa.yaml").read_text(encoding="utf-8"))
    rafdb = yaml.safe_load((REPO / "pipelines" / "rafdb_qa.yaml").read_text(encoding="utf-8"))["sources"][0]
    recipe["sources"] = [{**recipe["sources"][0], "root": str(demo_inputs / "celeba"), "split": "test"},
                         {**rafdb, "root": str(demo_inputs / "rafdb" / "basic"), "split": "test"}]
    recipe["name"] = "labelled_test_partitions"
    path = tmp_path_factory.mktemp("eval") / "eval.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return run_and_validate(path, [], path.parent / "out")


#: what each recipe's run rejects, reason by reason (the demo inputs' bad rows; see demo_labelled.py)
EXPECTED_REJECTS = {
    "celeba_qa": ["bad_landmarks", "bad_row", "duplicate_row", "holdout", "holdout", "missing_file",
                  "missing_partition", "unknown_label", "unsafe_path"],
    "rafdb_qa": ["bad_row", "bad_row", "duplicate_row", "holdout", "holdout", "holdout", "holdout", "missing_file",
                 "unknown_label", "unsafe_path"],
    "utkface_qa": ["bad_file_name", "unknown_label", "unknown_label", "unknown_label"],
    "affectnet_qa": ["bad_row", "duplicate_row", "holdout", "holdout", "missing_file", "missing_label",
                     "unknown_label", "unsafe_path"],
}
LICENCES = {"celeba_qa": "celeba-research-only", "rafdb_qa": "raf-db-research-only", "utkface_qa": "utkface-non-commercial",
            "affectnet_qa": "AffectNet academic licence"}

CARD_LICENCES = {"celeba_qa": "CelebA agreement (non-commercial research) — Non-commercial research",
                 "rafdb_qa": "RAF-DB release agreement (research) — Non-commercial research",
                 "utkface_qa": "UTKFace terms (non-commercial research) — Non-commercial research",
                 "affectnet_qa": "AffectNet academic licence: non-commercial research use"}


def test_each_shipped_recipe_writes_its_samples_rejects_licence_and_balanced_answers(recipe_outs: dict[str, Path]):
    written = {}
    for name, out in recipe_outs.items():
        samples = samples_of(out)
        written[name] = len(samples)
        assert sorted(r["reason"] for r in rejects_of(out)) == EXPECTED_REJECTS[name], name
        assert all(s["source"]["licence"].startswith(LICENCES[name]) for s in samples), name
        assert all(s["provenance"]["generator"] == "labels" for s in samples)
        stats = json.loads((out / "stats.json").read_text())
        yes_no = Counter(said_yes(q) for s in samples for q in s["qa"] if q["category"] == "attribute_yes_no")
        assert yes_no[True] == yes_no[False] > 0, (name, yes_no)  # as many yes as no: the labels allow it here
        assert stats["label_qa"]["attribute_yes_no"] == {"yes": yes_no[True], "no": yes_no[False]}, name
        letters = Counter(q["answer"][0] for s in samples for q in s["qa"] if q["category"] == "attribute_mcq")
        assert stats["label_qa"]["attribute_mcq"] == dict(letters), name
        assert len(letters) >= 3, (name, letters)  # a right letter that never moves would show here
        card = (out / "README.md").read_text()
        assert f"  - licence: {CARD_LICENCES[name]}" in card, name  # the terms in the card, not just an id
        assert "| right letter |" in card and "Yes/no answers:" in card
    assert written == {"celeba_qa": 10, "rafdb_qa": 12, "utkface_qa": 12, "affectnet_qa": 10}
    celeba = json.loads((recipe_outs["celeba_qa"] / "stats.json").read_text())
    assert "| wearing_lipstick |" in (recipe_outs["celeba_qa"] / "README.md").read_text()
    assert set(celeba["attribute_labels"]["smiling"]) <= {"true", "false"}
    assert celeba["licences"] == {"celeba": {"celeba-research-only": 10}}


def test_celeba_answers_match_list_attr_celeba(recipe_outs: dict[str, Path], demo_inputs: Path):
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

    samples = samples_of(recipe_outs["celeba_qa"])
    assert sorted(s["source"]["id"] for s in samples) == [f"{i:06d}.jpg" for i in range(1, 11)]
    checked = Counter()
    for s in samples:
        image = s["source"]["id"]
        assert s["faces"] and s["faces"][0]["detector"] == "given:celeba"
        for q in s["qa"]:
            if q["category"] == "attribute_mcq":
                assert q["question"].startswith("Which set of features"), q
                chosen, options = mcq(q)
                for text in options.values():
                    all_there = all(present(part.strip(), image) for part in text.split(","))
                    assert all_there == (text == chosen), (image, text)
            elif q["category"] == "attribute_yes_no":
                if q["question"].startswith("Does the person appear to be"):  # gender
                    asked = q["question"].removeprefix("Does the person appear to be ").rstrip("?")
                    assert asked in ("male", "female"), q
                    assert said_yes(q) == ((raw[image]["Male"] == "1") == (asked == "male"))
                else:
                    m = re.match(r"^(?:Does|Is) (?:the person|the image|the person's mouth) (?:have|wearing|look)? ?(.+)\?$",
                                 q["question"])
                    assert m, q
                    assert said_yes(q) == present(m.group(1), image), q
            elif q["category"] == "attribute_list":
                items = re.split(r", | or ", q["question"].split(": ", 1)[1].rstrip("?"))
                there = [i for i in items if present(i, image)]
                if there:
                    assert all(i in q["answer"].lower() for i in there)
                    assert not any(i in q["answer"].lower() for i in items if i not in there)
                else:
                    assert q["answer"] == "None of them can be seen."
            checked[q["category"]] += 1
    assert checked["attribute_mcq"] >= 10 and checked["attribute_yes_no"] == 40 and checked["attribute_list"] >= 10


def test_rafdb_utkface_and_table_answers_match_their_files(recipe_outs: dict[str, Path], demo_inputs: Path):
    rafdb = dict(line.split() for line in (demo_inputs / "rafdb" / "basic" / "EmoLabel" / "list_patition_label.txt")
                 .read_text().splitlines() if len(line.split()) == 2)
    with (demo_inputs / "affectnet" / "training.csv").open() as f:
        affectnet = {}
        for row in csv.DictReader(f):
            affectnet.setdefault(row["subDirectory_filePath"], row)
    checked = Counter()
    for name in ("rafdb_qa", "utkface_qa", "affectnet_qa"):
        for s in samples_of(recipe_outs[name]):
            sid = s["source"]["id"]
            for q in s["qa"]:
                if q["category"] not in ("attribute_mcq", "attribute_yes_no"):
                    continue
                question = q["question"].split("\n")[0]
                if name == "rafdb_qa":
                    adjective, option = RAFDB[rafdb[sid]]
                    if q["category"] == "attribute_mcq":
                        assert question == "Which facial expression does the person in the image show?", q
                        assert mcq(q)[0] == option
                    else:
                        asked = re.fullmatch(r"Does the person look (\w+)\?", question)
                        assert asked and asked.group(1) in {a for a, _ in RAFDB.values()}, q
                        assert said_yes(q) == (asked.group(1) == adjective)
                elif name == "utkface_qa":
                    age, gender, race = sid.split("_")[:3]
                    if q["category"] == "attribute_mcq" and question.startswith("Which age range"):
                        lo, hi = age_range(mcq(q)[0])
                        assert lo <= int(age) <= hi
                    elif q["category"] == "attribute_mcq" and question.startswith("Which ethnic group"):
                        chosen, options = mcq(q)
                        assert chosen == UTK_RACE[race]
                        assert not set(options.values()) & UTK_OVERLAPS.get(race, set()), q
                    elif q["category"] == "attribute_yes_no" and question in ("Does the person appear to be male?",
                                                                            "Does the person appear to be female?"):
                        asked = question.rsplit(" ", 1)[1].rstrip("?")
                        assert said_yes(q) == (asked == ("male" if gender == "0" else "female"))
                    elif q["category"] == "attribute_yes_no" and question.endswith("years old?"):
                        lo, hi = age_range(question)
                        assert said_yes(q) == (lo <= int(age) <= hi), q
                    elif q["category"] == "attribute_yes_no" and question.endswith("ethnicity?"):
                        group = re.fullmatch(r"Does the person appear to be of (.+) ethnicity\?", question).group(1)
                        assert group not in UTK_OVERLAPS.get(race, set()) and race != "4", q  # never asked
                        assert said_yes(q) == (group == UTK_RACE[race]), q
                    else:
                        pytest.fail(f"a UTKFace question this test cannot check: {q}")
                else:
                    adjective, option = AFFECTNET[affectnet[sid]["expression"]]
                    if q["category"] == "attribute_mcq":
                        assert question == "Which facial expression does the person in the image show?", q
                        assert mcq(q)[0] == option
                    elif question == "Is the person wearing a face mask?":
                        assert said_yes(q) == (affectnet[sid]["face_mask"] == "1")
                    else:
                        asked = re.fullmatch(r"Does the person look (\w+)\?", question)
                        assert asked and asked.group(1) in {a for a, _ in AFFECTNET.values()}, q
                        assert said_yes(q) == (asked.group(1) == adjective)
                checked[name, q["category"]] += 1
    assert checked == {("rafdb_qa", "attribute_mcq"): 12, ("rafdb_qa", "attribute_yes_no"): 12,
                       ("utkface_qa", "attribute_mcq"): 24, ("utkface_qa", "attribute_yes_no"): 24,
                       ("affectnet_qa", "attribute_mcq"): 10, ("affectnet_qa", "attribute_yes_no"): 18}


# ------------------------------------------------------------------------------------------- mcq-eval


def test_mcq_eval_is_facexbench_layout_from_held_out_partitions_only(eval_out: Path, recipe_outs: dict[str, Path],
                                                                     demo_inputs: Path, tmp_path: Path):
    from facecorpus.export.mcq_eval import export_mcq_eval
    from facecorpus.validation.holdout import read_holdout_list

    rep = export_mcq_eval([str(eval_out), *(str(o) for o in recipe_outs.values())], tmp_path / "eval")
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
    assert rep.questions == len(letters) == 6  # 2 CelebA + 4 RAF-DB test images, one MCQ each; nothing from the training runs
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
def stages(demo_output: Path, recipe_outs: dict[str, Path], eval_out: Path, tmp_path_factory) -> dict:
    """Face-MLLM's three stages (the shipped mixture) from the demo run, the four labelled runs and the
    test partitions' run, written twice with the same seed and once with another."""
    root = tmp_path_factory.mktemp("stages")
    outs = [demo_output, *recipe_outs.values(), eval_out]
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
    last = f"images/{len(stages['outs']) - 1:02d}/"
    assert any(p.startswith("images/01/") for p in images)
    assert not any(p.startswith(last) for p in images)  # the last output is the test partitions'


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
    assert stage1["records"] == sum(1 for o in stages["outs"][:-1] for _ in samples_of(o))


def test_a_mixture_with_caps_sizes_and_an_empty_pool(stages: dict, recipe_outs: dict[str, Path]):
    root = stages["root"]
    spec = {"seed": 3, "stages": [
        {"name": "mcq_only", "task": "qa", "size": 20,
         "pools": [{"categories": ["attribute_mcq"], "datasets": ["celeba"], "share": 0.5, "cap": 4},
                   {"categories": ["attribute_mcq"], "share": 0.5}]},
        {"name": "with_empty", "task": "qa",
         "pools": [{"categories": ["demographics"], "share": 0.5}, {"categories": ["attribute_yes_no"], "share": 0.5}]},
    ]}
    (root / "mix.yaml").write_text(yaml.safe_dump(spec))
    rep = _stage_export(list(recipe_outs.values()), root / "d", root / "mix.yaml")
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
    proc = subprocess.run([sys.executable, "-m", "tests.support.llamafactory_check", str(stages["root"] / "jobs.json")],
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
