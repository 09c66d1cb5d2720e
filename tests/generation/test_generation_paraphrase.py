"""The LLM paraphrase of label questions (generation.paraphrase): the question only, each rewording
checked to keep its options and meaning.

The check is tested on hand-written rewordings, good and bad; the stage on Beam's FnApiRunner with the
shipped rafdb_qa recipe on the demo's RAF-DB layout against the loopback fault server (a real HTTP
server speaking the OpenAI API to the real openai client; it stands in for the LLM — no model that
follows such instructions runs offline here in test time). The scripted model rewords some questions
well and spoils others in known ways; the output must hold exactly the good rewordings, the originals
where they were spoiled, the options unchanged, and answers that still match RAF-DB's label file (read
with this file's own table)."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from facecorpus.generation.paraphrase import check_paraphrase
from facecorpus.records import QAPair
from tests.support.helpers import REPO
from tests.support.llm_fault_server import FaultServer

RAFDB_OPTION = {"1": "Surprised", "2": "Fearful", "3": "Disgusted", "4": "Happy", "5": "Sad", "6": "Angry", "7": "Neutral"}
RAFDB_ADJECTIVE = {"1": "surprised", "2": "afraid", "3": "disgusted", "4": "happy", "5": "sad", "6": "angry", "7": "neutral"}

YES_NO = QAPair(category="attribute_yes_no", question="Does the person look happy?", answer="No. The person looks sad.",
                attributes=["expression"], options=["happy"], answer_key="no")
MCQ = QAPair(category="attribute_mcq", question="Which facial expression does the person in the image show?\nA. Sad\n"
             "B. Happy\nC. Angry\nD. Neutral\nAnswer with the letter of the correct option.", answer="B. Happy",
             attributes=["expression"], options=["Sad", "Happy", "Angry", "Neutral"], answer_key="B")
OPEN = QAPair(category="attribute_open", question="What facial expression does the person in the image show?",
              answer="The person looks happy.", attributes=["expression"], answer_key="happy")
AGE = QAPair(category="attribute_yes_no", question="Does the person appear to be 30 to 39 years old?",
             answer="Yes. The person appears to be 30 to 39 years old.", attributes=["age"], options=["30-39"],
             answer_key="yes")
MASK = QAPair(category="attribute_yes_no", question="Is the person wearing eyeglasses?",
              answer="No. The person is not wearing eyeglasses.", attributes=["eyeglasses"], answer_key="no")


@pytest.mark.parametrize("q,candidate", [
    (YES_NO, "Would you say the person looks happy?"),
    (YES_NO, "Looking at the photo, does the person seem happy?"),
    (MCQ, "What expression can be seen on the person's face?"),
    (OPEN, "How would you describe the expression on this person's face?"),
    (AGE, "Is the person somewhere between 30 and 39 years of age?"),
    (MASK, "Does the person have eyeglasses on?"),
])
def test_good_rewordings_are_kept(q: QAPair, candidate: str):
    assert check_paraphrase(q, candidate) is None


@pytest.mark.parametrize("q,candidate,reason,says", [
    (YES_NO, "Does the person look a certain way?", "paraphrase_meaning", "asked value is gone"),
    (YES_NO, "Does the person look happy or sad?", "paraphrase_meaning", "another value"),
    (YES_NO, "Does the person not look happy?", "paraphrase_meaning", "negation"),
    (YES_NO, "Doesn't the person look happy?", "paraphrase_meaning", "negation"),
    (YES_NO, "How happy does the person look?", "paraphrase_meaning", "no longer asks for yes or no"),
    (MCQ, "Does the person look sad, happy or angry?", "paraphrase_options", "option 'Sad'"),
    (MCQ, "Which expression is shown, A. Sad or B. Happy?", "paraphrase_options", "option letters"),
    (MCQ, "Is the expression on the face a pleasant one?", "paraphrase_meaning", "became a yes/no"),
    (MCQ, "Which expression does the person not show?", "paraphrase_meaning", "negation"),
    (OPEN, "Is the person surprised?", "paraphrase_meaning", "became a yes/no"),
    (OPEN, "What expression, happy or not, does the person show?", "paraphrase_meaning", "negation"),
    (OPEN, "What expression does the person show, for example surprise?", "paraphrase_meaning", "another value"),
    (AGE, "Does the person appear to be 40 to 49 years old?", "paraphrase_meaning", "numbers"),
    (MASK, "Does the person wear anything on the face?", "paraphrase_meaning", "asked value is gone"),
    (YES_NO, "Here is a paraphrase: does the person look happy?", "paraphrase_format", "talk about the task"),
    (YES_NO, "Does the person look **happy**?", "paraphrase_format", "markup"),
    (YES_NO, "Does the person look happy? Yes.", "paraphrase_format", "one question mark"),
    (YES_NO, "Does the person look happy?\nOr sad?", "paraphrase_format", "one-line"),
    (YES_NO, "Does the person look happy?", "paraphrase_format", "unchanged"),
    (YES_NO, "", "paraphrase_format", "one-line"),
    (YES_NO, "Happy?", "paraphrase_format", "characters"),
])
def test_spoilt_rewordings_are_refused_with_their_reason(q: QAPair, candidate: str, reason: str, says: str):
    found = check_paraphrase(q, candidate)
    assert found is not None and found[0] == reason and says in found[1], found


def test_a_paraphrase_needs_the_labels_generator():
    from pydantic import ValidationError

    from facecorpus.generation.config import GenerationConfig

    with pytest.raises(ValidationError, match="needs generator: labels"):
        GenerationConfig.model_validate({"generator": "templates", "paraphrase": {"enabled": True}})
    with pytest.raises(ValidationError, match="read back"):
        GenerationConfig.model_validate({"generator": "labels", "paraphrase": {"enabled": True,
                                                                               "categories": ["attribute_list"]}})


# ------------------------------------------------------------------------------------ the stage, in a run


def reworded(n: int, stem: str) -> tuple[str, bool]:
    """The scripted model's rewording of question n of a request, and whether it should be kept: the
    first question is reworded well, the second spoilt (negation, or an option letter), the third
    reworded well."""
    if n == 2:
        if stem.startswith("Does"):
            return stem.replace("Does the person look", "Does the person not look"), False
        return stem.rstrip("?") + " A. Happy?", False
    if stem.startswith("Does the person look"):
        return "Looking at the photo, " + stem[0].lower() + stem[1:], True
    if stem.startswith("Which facial expression"):
        return "Which expression can be seen on this person's face?", True
    return "In a word, " + stem[0].lower() + stem[1:], True


class Rewording:
    """The scripted model: rewords the numbered stems of a paraphrase request (see `reworded`)."""

    def __init__(self) -> None:
        self.sent: list[str] = []  # every request's user text
        self.kept: dict[str, str] = {}  # rewording → the stem it replaces
        self.spoilt: dict[str, str] = {}

    def __call__(self, body: dict[str, Any]) -> str | None:
        rf = body.get("response_format") or {}
        if (rf.get("json_schema") or {}).get("name") != "ParaphrasedQuestions":
            return None
        user = body["messages"][1]["content"]
        assert isinstance(user, str)  # text only: no image part
        self.sent.append(user)
        answer = {}
        for n, stem in enumerate(re.findall(r"^q\d+: (.+)$", user, re.M), 1):
            text, good = reworded(n, stem)
            (self.kept if good else self.spoilt)[text] = stem
            answer[f"q{n}"] = text
        return json.dumps(answer)


@pytest.fixture(scope="module")
def paraphrased(demo_inputs: Path, tmp_path_factory) -> dict[str, Any]:
    from facecorpus.output.check import check_output
    from facecorpus.pipeline import run_recipe
    from facecorpus.recipe import validate_recipe

    model = Rewording()
    out = tmp_path_factory.mktemp("paraphrased") / "out"
    data = yaml.safe_load((REPO / "pipelines" / "rafdb_qa.yaml").read_text(encoding="utf-8"))
    data["sources"][0]["root"] = str(demo_inputs / "rafdb" / "basic")
    with FaultServer(answer=model, model="fake-writer") as srv:
        data["generation"] |= {"paraphrase": {"enabled": True}, "cache": {"dir": str(out.parent / "cache")},
                               "openai": {"base_url": srv.base_url, "api_key_env": None, "model": "fake-writer"}}
        run_recipe(validate_recipe(data, "test", demo_inputs), str(out))
        requests = len(srv.chat_requests())
    report = check_output(str(out))
    assert report.ok, report.problems[:5]
    samples = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            samples += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    return {"out": out, "model": model, "samples": samples, "requests": requests}


def test_good_rewordings_replace_the_question_and_spoilt_ones_leave_it(paraphrased: dict[str, Any]):
    model, samples = paraphrased["model"], paraphrased["samples"]
    # one request per sample with its three questions; samples asking the same three share one answer
    # through the response cache
    assert len(samples) == 12 and paraphrased["requests"] == len(model.sent) == len(set(model.sent)) < 12
    for sent in model.sent:  # the question only: no options, no instruction, no answer goes to the model
        assert "A. " not in sent and "Answer with the letter" not in sent and "The person looks" not in sent
    stems_out = [q["question"].split("\nA. ")[0] for s in samples for q in s["qa"]]
    kept = [t for t in stems_out if t in model.kept]
    assert len(kept) == 24  # two of three per sample
    assert not any(t in model.spoilt for t in stems_out)
    originals = [t for t in stems_out if t not in model.kept]
    assert len(originals) == 12 and set(originals) == set(model.spoilt.values())  # spoilt: the question stays
    for s in samples:
        assert "paraphrased:2" in s["flags"]
        prov = s["provenance"]["paraphrase"]
        assert prov["llm_model"] == "fake-writer" and prov["prompt_set"] == "paraphrase" and len(prov["prompt_sha256"]) == 64


def test_options_and_answers_still_match_the_label_file(paraphrased: dict[str, Any], demo_inputs: Path):
    rafdb = dict(line.split() for line in (demo_inputs / "rafdb" / "basic" / "EmoLabel" / "list_patition_label.txt")
                 .read_text().splitlines() if len(line.split()) == 2)
    checked = 0
    for s in paraphrased["samples"]:
        label = rafdb[s["source"]["id"]]
        for q in s["qa"]:
            if q["category"] == "attribute_mcq":
                lines = q["question"].splitlines()
                assert lines[-1] == "Answer with the letter of the correct option." and len(lines) == 6
                options = dict(re.findall(r"^([A-D])\. (.+)$", q["question"], re.M))
                assert q["answer"] == f"{q['answer'][0]}. {options[q['answer'][0]]}"
                assert options[q["answer"][0]] == RAFDB_OPTION[label]
                checked += 1
            elif q["category"] == "attribute_yes_no":
                asked = re.search(r"look (\w+)\?$", q["question"]).group(1)
                assert q["answer"].startswith("Yes" if asked == RAFDB_ADJECTIVE[label] else "No")
                checked += 1
    assert checked == 24


def test_in_batch_mode_the_rewordings_go_through_the_batch_api(demo_inputs: Path, tmp_path: Path):
    """`generation.mode: batch`: the paraphrase's first-round requests are uploaded as a Batch API file
    (none goes to chat/completions), and the answers it brings back reword the questions as online."""
    from facecorpus.pipeline import run_recipe
    from facecorpus.recipe import validate_recipe

    model = Rewording()
    data = yaml.safe_load((REPO / "pipelines" / "rafdb_qa.yaml").read_text(encoding="utf-8"))
    data["sources"][0] |= {"root": str(demo_inputs / "rafdb" / "basic"), "limit": 2}
    with FaultServer(answer=model, model="fake-writer") as srv:
        data["generation"] |= {
            "paraphrase": {"enabled": True}, "cache": {"dir": str(tmp_path / "cache")}, "mode": "batch",
            "batch": {"poll_initial_s": 0.05, "poll_max_s": 0.1},
            "openai": {"base_url": srv.base_url, "api_key_env": None, "model": "fake-writer", "preflight": False}}
        stats = run_recipe(validate_recipe(data, "test", demo_inputs), str(tmp_path / "out")).stats
        lines = [json.loads(x) for f in srv.files.values() if f["meta"]["purpose"] == "batch"
                 for x in f["content"].splitlines()]
        online = len(srv.chat_requests())
    assert stats["written"] == 2 and len(srv.batches) == 1
    assert lines and all(line["body"]["response_format"]["json_schema"]["name"] == "ParaphrasedQuestions" for line in lines)
    assert online == 0 and stats["llm"]["batch_requests"] == len(lines)
    samples = []
    for shard in sorted((tmp_path / "out" / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            samples += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    assert all("paraphrased:2" in s["flags"] for s in samples)
