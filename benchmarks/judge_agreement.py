"""What the embedded model's judging is worth: the LLM judge (generation/judge.py, prompt set `judge`)
on the embedded llama.cpp server, scoring texts of the labelled quality set (tests/data/quality_set.jsonl)
whose good/junk label a person gave; agreement of its verdict (low = any criterion below min_score)
with that label, beside the baselines "always junk" and "always good".

Each labelled answer is judged as a one-answer sample under a plain, correct caption, with no known
facts (the set's texts carry none), so the verdict is about that answer alone. The request is the one
the judge stage sends (render_judgement: its prompt, its strict json_schema), at temperature 0.

    .venv/bin/python benchmarks/judge_agreement.py [--per-class 15] [--categories demographics,expression,pose]

Needs `facecorpus models pull smollm2`. Prints per item and the table; state `uptime` beside it.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from facecorpus.generation.judge import low_criteria, read_verdict, render_judgement
from facecorpus.generation.judging import validator_for
from facecorpus.generation.local_server import local_llm_server
from facecorpus.prompting.promptset import load_prompt_set
from facecorpus.prompting.render import ImageOptions

SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "quality_set.jsonl"
CAPTION = "A close-up photograph of a person's face."
QUESTIONS = {"demographics": "What are the apparent age, gender and ethnicity of the person?",
             "expression": "What expression does the face show?", "pose": "How is the head turned?"}


def pick(per_class: int, categories: list[str], seed: int) -> list[dict]:
    rows = [r for r in map(json.loads, SET.read_text().splitlines()) if r.get("category") in categories]
    rng = random.Random(seed)
    good = [r for r in rows if not r["junk"]]
    junk = [r for r in rows if r["junk"]]
    return rng.sample(good, min(per_class, len(good))) + rng.sample(junk, min(per_class, len(junk)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=15)
    ap.add_argument("--categories", default="demographics,expression,pose")
    ap.add_argument("--min-score", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    items = pick(a.per_class, a.categories.split(","), a.seed)
    judge_set = load_prompt_set("judge")
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "failed": 0}
    t0 = time.monotonic()
    with local_llm_server() as srv:
        for r in items:
            sample = SimpleNamespace(attributes={}, caption=CAPTION, qa=[SimpleNamespace(
                category=r["category"], question=QUESTIONS.get(r["category"], "Describe the face."), answer=r["text"])])
            prompt = render_judgement(judge_set, sample, None, ImageOptions(send=False))  # type: ignore[arg-type]
            req = prompt.requests[0]
            body = {"model": "smollm2", "messages": req.messages, "response_format": req.response_format,
                    "max_tokens": 500, "temperature": 0.0, "seed": 0}
            post = urllib.request.Request(srv.base_url + "/chat/completions", json.dumps(body).encode(),
                                          {"Content-Type": "application/json"})
            try:
                answer = json.loads(urllib.request.urlopen(post, timeout=1800).read())  # noqa: S310 - loopback
                data = json.loads(answer["choices"][0]["message"]["content"])
                validator_for(req.response_format)(data)
            except Exception as e:  # noqa: BLE001 - a failed verdict is counted, not fatal
                counts["failed"] += 1
                print(f"FAILED {r['category']:12} {r['text'][:60]!r}: {e}")
                continue
            scores, _ = read_verdict(data)
            low = bool(low_criteria(scores, a.min_score))
            junk = bool(r["junk"])
            counts[("tp" if low else "fn") if junk else ("fp" if low else "tn")] += 1
            print(f"{'junk' if junk else 'good'} -> {'low ' if low else 'pass'} {scores} {r['text'][:70]!r}")
    n = counts["tp"] + counts["fp"] + counts["tn"] + counts["fn"]
    junk_n = counts["tp"] + counts["fn"]
    agree = (counts["tp"] + counts["tn"]) / n if n else 0.0
    print(f"\n{n} judged ({counts['failed']} failed) in {time.monotonic() - t0:.0f} s")
    print(f"agreement with the labels {agree:.2f}  (always junk {junk_n / n:.2f}, always good {1 - junk_n / n:.2f})")
    print(f"junk caught (recall) {counts['tp']}/{junk_n}; good passed {counts['tn']}/{n - junk_n}; "
          f"precision of 'low' {counts['tp'] / max(1, counts['tp'] + counts['fp']):.2f}")


if __name__ == "__main__":
    main()
