"""Exact reproduction of FairFaceGPT's requests: a user's own prompt folder (label_style fairfacegpt, raw
labels, the person word), max_tokens and temperature null, the source JPEG's own bytes, no re-asks —
and every request body a real run sends is byte for byte the one openai-python's `create()` sends for
the call FairFaceGPT's script makes (same messages, no other parameter).

The prompt texts here are test-only stand-ins: the mechanism is what is proven, not FairFaceGPT's
wording (which facecorpus does not ship; docs/generation.md shows where a user puts it).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import yaml
from openai import OpenAI

from facecorpus.prompting.phrases import fairfacegpt_person
from tests.support.helpers import write_recipe
from tests.support.inprocess_cli import cli_in_process
from tests.support.llm_fault_server import FaultServer

MODEL = "gpt-4o-2024-11-20"
SYSTEM = "TEST SYSTEM PROMPT. Describe faces for a test; this is not FairFaceGPT's text."
#: the topic words per category, as the script names its aspects
TOPICS = {"demographics": "demographic attributes", "facial_structure": "facial structure",
          "skin_texture": "skin texture", "expression": "expression and emotion",
          "lighting_quality": "lighting and image quality", "pose": "face pose",
          "forensic": "forensic considerations", "detail": "detail"}
INSTRUCTION_J2 = ("Test: a {{ person }} with {{ labels.race }} ethnicity and {{ labels.age }} years old. "
                  "{% if category == 'detail' %}Describe this image.{% else %}Test request about the {{ topic }} "
                  "only, the {{ topic }} as seen.{% endif %}")
QUESTION_J2 = "{% if category == 'detail' %}Describe this image.{% else %}Describe the {{ topic }}.{% endif %}"


def their_instruction(gender: str, age: str, race: str, topic: str) -> str:
    """The same test text, built the way the script builds its prompt: from the raw CSV labels."""
    word = "man" if gender == "Male" else "woman"
    if age == "3-9":
        word = "boy" if word == "man" else "girl"
    head = f"Test: a {word} with {race} ethnicity and {age} years old. "
    return head + ("Describe this image." if topic == "detail" else f"Test request about the {topic} only, the {topic} as seen.")


def prompt_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    files = {"system.j2": SYSTEM, "instruction.j2": INSTRUCTION_J2, "question.j2": QUESTION_J2}
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    manifest = {"sets": {"my_fairfacegpt": {
        "version": "1", "mode": "per_category", "label_style": "fairfacegpt", "caption_from": "detail",
        "templates": {name.removesuffix(".j2"): {"file": name, "sha256": hashlib.sha256(text.encode()).hexdigest()}
                      for name, text in files.items()},
        "topics": TOPICS}}}
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return root


@pytest.mark.parametrize(("gender", "age", "word"), [
    ("male", "0-2", "man"), ("female", "0-2", "woman"), ("male", "3-9", "boy"), ("female", "3-9", "girl"),
    ("male", "10-19", "man"), ("female", "70+", "woman"), (None, "30-39", "woman"),
])
def test_fairfacegpt_label_style_maps_gender_as_the_script_did(gender, age, word) -> None:
    assert fairfacegpt_person(gender, age) == word


@pytest.fixture(scope="module")
def exact_run(demo_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("exact")
    ff = demo_inputs / "fairface"
    with FaultServer(model=MODEL) as srv:
        recipe = write_recipe(tmp / "exact.yaml", {
            "name": "fairfacegpt-exact",
            "sources": [{"type": "fairface", "images": str(ff / "fairface-img-margin025-trainval.zip"),
                         "labels": [str(ff / "fairface_label_val.csv")], "split": "val", "limit": 8}],
            "faces": {"backend": "none"},
            "generation": {
                "generator": "openai", "prompts_dir": str(prompt_folder(tmp / "prompts")),
                "prompt_set": "my_fairfacegpt", "categories": list(TOPICS),
                "openai": {"base_url": srv.base_url, "model": MODEL, "api_key_env": "FACECORPUS_TEST_KEY",
                           "temperature": None, "max_tokens": None, "reask": False,
                           "image": {"send": "always", "reencode": False}},
                "cache": {"enabled": False},
            },
            # The fault server answers every category with the same canned sentence, which the junk
            # checks rightly reject (repeated_answer); this test is about request bodies, not text.
            "validation": {"label_conflict": "flag", "junk": "off"},
            "runner": {"runner": "FnApiRunner"},
        })
        proc = cli_in_process("run", str(recipe), "--out", str(tmp / "out"), env={"FACECORPUS_TEST_KEY": "test-key"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        ours = [r.raw for r in srv.chat_requests()]
        srv.requests.clear()
        # the script's call, made with openai-python against the same server, for every labelled FairFace row
        client = OpenAI(base_url=srv.base_url, api_key="test-key", max_retries=0)
        with zipfile.ZipFile(ff / "fairface-img-margin025-trainval.zip") as z:
            names = set(z.namelist())
            rows = list(csv.DictReader(io.StringIO((ff / "fairface_label_val.csv").read_text(encoding="utf-8-sig"))))
            for row in rows:
                if row.get("file") not in names or not z.read(row["file"]):
                    continue
                image = base64.b64encode(z.read(row["file"])).decode("utf-8")
                for topic in TOPICS.values():
                    text = their_instruction(row["gender"], row["age"], row["race"], topic)
                    try:
                        client.chat.completions.create(model=MODEL, messages=[
                            {"role": "system", "content": SYSTEM},
                            {"role": "user", "content": [{"type": "text", "text": text},
                                                         {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{image}"}}]},
                        ])
                    except Exception:  # noqa: BLE001 - only the request body matters here
                        pass
        theirs = [r.raw for r in srv.chat_requests()]
    return {"ours": ours, "theirs": theirs, "out": tmp / "out", "zip": ff / "fairface-img-margin025-trainval.zip"}


def test_every_request_body_is_byte_identical_to_the_scripts(exact_run: dict) -> None:
    ours, theirs = exact_run["ours"], set(exact_run["theirs"])
    stats = json.loads((exact_run["out"] / "stats.json").read_text())
    reached = stats["written"] + sum(n for (stage, reasons) in stats["by_stage"].items()
                                     if stage in ("generate", "validate") for n in reasons.values())
    assert reached >= 5 and len(ours) == 8 * reached  # eight requests per image, no re-ask
    missing = [b for b in ours if b not in theirs]
    assert not missing, missing[0][:600]
    body = json.loads(ours[0])
    assert list(body) == ["model", "messages"]  # no max_tokens, temperature, seed: none was sent
    image = body["messages"][1]["content"][1]["image_url"]["url"]
    assert image.startswith("data:image/jpeg;base64,") and "detail" not in body["messages"][1]["content"][1]["image_url"]


def test_raw_labels_reach_the_templates(exact_run: dict) -> None:
    texts = {json.loads(b)["messages"][1]["content"][0]["text"] for b in exact_run["ours"]}
    assert any("Latino_Hispanic ethnicity and more than 70 years old" in t for t in texts)  # as FairFace writes them


def test_requests_carry_the_files_bytes_and_shards_the_checked_image(exact_run: dict) -> None:
    from facecorpus.output.readers import iter_output_samples

    def url(data: bytes) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(data).decode()

    sent = {json.loads(b)["messages"][1]["content"][1]["image_url"]["url"] for b in exact_run["ours"]}
    with zipfile.ZipFile(exact_run["zip"]) as z:
        files = {url(z.read(n)) for n in z.namelist() if n.endswith(".jpg")}
    assert sent <= files  # every image went as the zip member's own bytes
    stored = {url(members["jpg"]) for _key, members in iter_output_samples(str(exact_run["out"]))}
    assert stored and stored - sent  # the shards hold the image stage's JPEG (metadata stripped or re-encoded)
