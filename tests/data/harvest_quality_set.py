"""Harvest real answers of the embedded local model for the labelled quality set (tests/data/quality_set.jsonl).

Runs the demo recipe (`pipelines/demo.yaml`: the demo inputs, portable face models, the embedded llama.cpp
server with SmolLM2-135M-Instruct Q4_1) once per variant below through `facecorpus run`, with the text
checks switched off so that every answer the model wrote reaches the shards, and prints one JSON line per
record (caption, answers, provenance). Its distinct texts were then labelled by hand (good, or the junk
kinds they show) and stored in quality_set.jsonl; this script is how the unlabelled records were made.
An LLM response cache (`$FACECORPUS_LLM_CACHE`) that still holds the answers makes a re-run reproduce them.

    .venv/bin/python tests/data/harvest_quality_set.py OUT_DIR > harvested.jsonl

Needs `facecorpus models pull portable smollm2`. Heavy (a llama.cpp server per variant): run it alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

#: (name, --set overrides): the three shipped prompt sets, two temperatures
VARIANTS: list[tuple[str, list[str]]] = [
    ("compact-t0.3", ["generation.prompt_set=compact", "generation.openai.temperature=0.3"]),
    ("compact-all8-t0.7", ["generation.prompt_set=compact", "generation.openai.temperature=0.7",
                           "generation.openai.seed=1",
                           "generation.categories=[demographics,facial_structure,skin_texture,expression,"
                           "lighting_quality,pose,forensic,detail]"]),
    ("structured-t0.3", ["generation.prompt_set=structured", "generation.openai.temperature=0.3",
                         "generation.categories=[demographics,expression,pose,lighting_quality,facial_structure]"]),
    ("fairfacegpt-t0.3", ["generation.prompt_set=fairfacegpt", "generation.openai.temperature=0.3",
                          "generation.openai.on_category_failure=skip", "generation.openai.max_tokens=120",
                          "generation.categories=[demographics,expression,pose,detail]"]),
]

#: every record check that could drop a text before it is seen is off or as loose as it goes
LOOSE = ["validation.min_answer_chars=1", "validation.min_caption_chars=1", "validation.refusals='off'",
         "validation.label_conflict='off'", "validation.language=null", "validation.source_copy='off'",
         "validation.junk='off'",
         # execution only (the texts do not change): the embedded server has two slots; more in flight only queue
         "generation.openai.concurrency=2", "generation.openai.timeout_s=600"]


def records(out: Path) -> list[dict]:
    found = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    f = tf.extractfile(m)
                    assert f is not None
                    found.append(json.load(f))
    return found


def main(work: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    exe = root / ".venv" / "bin" / "facecorpus"
    inputs = work / "demo-input"
    if not inputs.is_dir():
        subprocess.run([str(exe), "demo", "--out", str(work / "demo")], check=True, stdout=subprocess.DEVNULL)
    recipe = inputs / "demo.yaml"
    recipe.write_text((root / "pipelines" / "demo.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    for name, sets in VARIANTS:
        out = work / name
        if not (out / "stats.json").is_file():
            cmd = [str(exe), "run", str(recipe), "--out", str(out)]
            for s in sets + LOOSE:
                cmd += ["--set", s]
            subprocess.run(cmd, check=True, stdout=sys.stderr)
        for rec in sorted(records(out), key=lambda r: r["key"]):
            prov = rec["provenance"]
            print(json.dumps({
                "sample": f"{name}/{rec['key']}", "caption": rec["caption"],
                "answers": {q["category"]: q["answer"] for q in rec["qa"]},
                "caption_from": "detail" if prov["prompt_set"] == "fairfacegpt" else None,
                "origin": f"{prov['llm_model']} via the embedded llama.cpp server, prompt set "
                          f"{prov['prompt_set']} v{prov['prompt_version']}, variant {name}, input {rec['key']}",
            }, ensure_ascii=False))

if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
