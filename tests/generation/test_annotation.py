"""Attribute re-annotation by the LLM, on Beam's FnApiRunner against the loopback fault server (a real
HTTP server speaking the OpenAI API to the real openai client; it stands in for a vision LLM, which
cannot run offline here). The server answers each image with values that agree with CelebA's labels
for most attributes and not for the rest, decided by a hash of the image, so the agreement the card
reports can be checked here against the dataset's own label file, computed with this file's own code."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from facecorpus.errors import UserError
from facecorpus.generation.annotation import annotated_values
from facecorpus.labels import ANNOTATED, VOCABULARY, Flag
from facecorpus.output.check import check_output
from facecorpus.pipeline import run_recipe
from facecorpus.preflight import preflight
from facecorpus.recipe import validate_recipe
from tests.support.llm_fault_server import FaultServer


def _image_of(body: dict[str, Any]):  # noqa: ANN202 - a PIL image
    from PIL import Image

    for part in body["messages"][1]["content"]:
        if part.get("type") == "image_url":
            return Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"].split(",", 1)[1])))
    raise AssertionError("the annotation request carries no image")


def _phash(img) -> int:  # noqa: ANN001
    from facecorpus.image_check import perceptual_hash

    return int(perceptual_hash(img.convert("RGB")), 16)


class Annotator:
    """The scripted model: for each attribute, the truth (from a table the test fills with CelebA's
    labels, keyed by image) when a hash says so (about 3 in 4), else a wrong value; one confidence
    outside [0, 1] per answer, which the stage must drop."""

    def __init__(self) -> None:
        self.truth: dict[int, dict[str, Any]] = {}  # the source image's pHash → attribute → its label
        self.sent: dict[int, dict[str, Any]] = {}
        self.texts: list[str] = []

    def __call__(self, body: dict[str, Any]) -> str | None:
        rf = body.get("response_format") or {}
        if (rf.get("json_schema") or {}).get("name") != "FaceAttributes":
            return None
        self.texts.append(json.dumps([m["content"] if isinstance(m["content"], str) else
                                      [p for p in m["content"] if p.get("type") == "text"] for m in body["messages"]]))
        seen = _phash(_image_of(body))  # the image it is shown, matched to its source image (nearest pHash)
        sha = min(self.truth, key=lambda h: bin(h ^ seen).count("1"))
        truth = self.truth[sha]
        answer = {}
        for name in ANNOTATED:
            decl = VOCABULARY[name]
            h = int(hashlib.sha256(f"{sha}|{name}".encode()).hexdigest()[:8], 16)
            values = [True, False] if isinstance(decl, Flag) else list(decl.values)
            right = truth.get(name, values[h % len(values)])
            value = right if h % 4 else next(v for v in values if v != right)
            answer[name] = {"value": value, "confidence": 0.9}
        answer["bald"]["confidence"] = 1.5
        self.sent[sha] = answer
        return json.dumps(answer)


@pytest.fixture(scope="module")
def annotated(demo_inputs: Path, tmp_path_factory) -> dict[str, Any]:
    """The CelebA demo layout, annotated by the scripted model, QA from labels and annotations."""
    lines = (demo_inputs / "celeba" / "Anno" / "list_attr_celeba.txt").read_text().splitlines()
    header = lines[1].split()
    raw = {f[0]: dict(zip(header, f[1:], strict=False)) for f in (x.split() for x in lines[2:]) if len(f) == 41}
    annotator = Annotator()
    out = tmp_path_factory.mktemp("annotated") / "out"
    with FaultServer(answer=annotator, modalities=["text", "image"], model="fake-vision") as srv:
        data = {
            "name": "annotated",
            "sources": [{"type": "celeba", "root": str(demo_inputs / "celeba")}],
            "generation": {"generator": "labels", "categories": ["attribute_open", "attribute_yes_no", "attribute_mcq"],
                           "labels": {"from_models": True, "min_confidence": 0.5},
                           "annotation": {"enabled": True},
                           "cache": {"dir": str(out.parent / "cache")},
                           "openai": {"base_url": srv.base_url, "api_key_env": None, "model": "fake-vision"}},
            "validation": {"dedup": {"near": False}},
        }
        recipe = validate_recipe(data, "test", demo_inputs)
        columns = {c.lower(): c for c in header} | {"five_o_clock_shadow": "5_o_Clock_Shadow"}
        with zipfile.ZipFile(demo_inputs / "celeba" / "Img" / "img_align_celeba.zip") as zf:
            for name in zf.namelist():
                image = name.rsplit("/", 1)[-1]
                if image not in raw:
                    continue
                row = raw[image]
                truth: dict[str, Any] = {"gender": "male" if row["Male"] == "1" else "female",
                                         "beard": row["No_Beard"] == "-1"}
                truth |= {a: row[columns[a]] == "1" for a in ANNOTATED if a in columns and a not in truth}
                annotator.truth[_phash(Image.open(io.BytesIO(zf.read(name))))] = truth
        run_recipe(recipe, str(out))
        requests = len(srv.chat_requests())
    return {"out": out, "raw": raw, "annotator": annotator, "requests": requests}


def _samples(out: Path) -> list[dict[str, Any]]:
    found = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            found += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    return found


def test_every_sample_is_annotated_with_provenance_and_validates(annotated: dict[str, Any]):
    out = annotated["out"]
    report = check_output(str(out))
    assert report.ok, report.problems[:5]
    samples = _samples(out)
    assert len(samples) == 10 and annotated["requests"] == 10  # one request per sample
    for s in samples:
        ann = s["annotations"]
        assert "bald" not in ann  # its confidence 1.5 was outside [0, 1]: dropped
        assert set(ann) == set(ANNOTATED) - {"bald"}
        assert all(v["source"] == "model:fake-vision" and v["confidence"] == 0.9 for v in ann.values())
        prov = s["provenance"]["annotation"]
        assert prov["llm_model"] == "fake-vision" and prov["prompt_set"] == "attributes" and len(prov["prompt_sha256"]) == 64
        # labels win in `attributes`; what CelebA does not label comes from the model
        assert s["attributes"]["smiling"]["source"] == "label"
        assert s["attributes"]["head_pose"]["source"] == "model:fake-vision"
        disagreeing = {c["attribute"] for c in s["attribute_conflicts"]}
        assert disagreeing == {n for n, v in ann.items() if n in s["attributes"] and s["attributes"][n]["source"] == "label"
                               and s["attributes"][n]["value"] != v["value"]}


def test_the_prompt_shows_the_image_and_nothing_else_of_the_sample(annotated: dict[str, Any]):
    # every request's text is the same (system and user turns): no label, estimate or alt-text of a
    # sample can reach the model, only its image
    texts = annotated["annotator"].texts
    assert len(texts) == 10 and len(set(texts)) == 1
    assert "0-2, 3-9" in texts[0] and "true when the person is smiling" in texts[0]


def _kappa(a: list[str], b: list[str]) -> float | None:
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    values = set(a) | set(b)
    pe = sum((a.count(v) / n) * (b.count(v) / n) for v in values)
    return None if abs(pe - 1) < 1e-12 else (po - pe) / (1 - pe)


def test_agreement_with_the_labels_is_what_the_label_file_gives(annotated: dict[str, Any]):
    out, raw = annotated["out"], annotated["raw"]
    stats = json.loads((out / "stats.json").read_text())["annotation_agreement"]
    samples = _samples(out)
    for attr, column in (("smiling", "Smiling"), ("eyeglasses", "Eyeglasses"), ("young", "Young"), ("gender", "Male")):
        llm = [str(s["annotations"][attr]["value"]).lower() for s in samples]
        if attr == "gender":
            truth = ["male" if raw[s["source"]["id"]][column] == "1" else "female" for s in samples]
        else:
            truth = ["true" if raw[s["source"]["id"]][column] == "1" else "false" for s in samples]
        row = stats[attr]["label"]
        assert row["n"] == len(samples) and row["agree"] == sum(x == y for x, y in zip(llm, truth, strict=True))
        expected = _kappa(llm, truth)
        assert (row["kappa"] is None) == (expected is None)
        if expected is not None:
            assert row["kappa"] == pytest.approx(expected, abs=1e-4)
    card = (out / "README.md").read_text()
    assert "## LLM attribute annotations: agreement" in card and "| smiling | dataset labels | 10 |" in card


def test_qa_from_annotations_is_checked_against_them(annotated: dict[str, Any]):
    samples = _samples(annotated["out"])
    about = {a for s in samples for q in s["qa"] for a in q["attributes"]}
    assert {"head_pose", "glasses", "occlusion"} & about  # asked from the model's values (from_models)
    for s in samples:
        for q in s["qa"]:
            if q["category"] == "attribute_mcq" and q["attributes"] == ["head_pose"]:
                options = dict(re.findall(r"^([A-D])\. (.+)$", q["question"], re.M))
                chosen = options[q["answer"][0]]
                assert chosen == VOCABULARY["head_pose"].options[s["attributes"]["head_pose"]["value"]]


def test_values_outside_the_vocabulary_or_unsure_are_left_out():
    data = {"smiling": {"value": True, "confidence": 0.3}, "gender": {"value": "other", "confidence": 0.9},
            "age": {"value": "30-39", "confidence": 0.8}, "eyeglasses": {"value": "yes", "confidence": 0.9}}
    values, dropped = annotated_values(data, "m", min_confidence=0.5)
    assert set(values) == {"age"} and values["age"].source == "model:m"
    assert dropped == len(ANNOTATED) - 1


def test_an_endpoint_that_reads_no_images_is_refused_before_the_run(demo_inputs: Path):
    with FaultServer(modalities=["text"]) as srv:
        data = {"name": "t", "sources": [{"type": "celeba", "root": str(demo_inputs / "celeba")}],
                "generation": {"generator": "labels", "annotation": {"enabled": True},
                               "openai": {"base_url": srv.base_url, "api_key_env": None}}}
        with pytest.raises(UserError, match="needs an endpoint that reads images"):
            preflight(validate_recipe(data, "test", demo_inputs))
