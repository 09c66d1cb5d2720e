"""Validation + dedup vs plain pydantic `Sample.model_validate`, on the same records, in one process → the ratio.

Records: labelled FairFace-style samples of augmented real photos, eight categories each, answers of
LLM length (~270 characters, three sentences of their own per category; the generator's answers are usually 300-1,500). Plain: `model_validate`
of each record's JSON dict. Ours: the same, then every record rule (`check_record`: refusals,
bounds, categories, duplicate questions, charset, language, loops, label consistency) and the dedup
logic per record (exact by sha256, near by pHash bands with pairwise checks inside buckets — the very
functions the Beam transforms call, run here without Beam's shuffle). A last line times the Beam
transforms themselves (FnApiRunner, light records) for scale.
Figures: the first round (whole run) and the best later round (steady state) of each side, interleaved.
Run: .venv/bin/python benchmarks/validation.py [N] [ROUNDS]
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _photos import augmented_jpegs  # noqa: E402

from facecorpus.image_check import decode_image  # noqa: E402
from facecorpus.image_config import ImageConfig  # noqa: E402
from facecorpus.records import (  # noqa: E402
    DEFAULT_CATEGORIES,
    AttributeValue,
    Provenance,
    QAPair,
    Sample,
    SourceInfo,
)
from facecorpus.validation.config import ValidationConfig  # noqa: E402
from facecorpus.validation.dedup import (  # noqa: E402
    _bucket_entries,
    _exact_losers,
    _near_losers,
    _neighbours_in_bucket,
)
from facecorpus.validation.record_checks import RecordRules, check_record, verdict  # noqa: E402

#: three sentences per category: answers of one record must not repeat each other (junk check repeated_answer)
SENTENCES = {
    "demographics": ["The overall build and hairline fit that estimate, though age is hard to judge from one photo.",
                     "Greying at the temples is absent, and the skin around the eyes is still firm.",
                     "The hairstyle is short and neat, cut close at the sides with more length on top."],
    "facial_structure": ["The face outline is oval, with a defined jawline and a balanced distance between the eyes.",
                         "Cheekbones sit high and the chin is narrow, giving the lower face a tapered look.",
                         "The nose is straight with a rounded tip, and the lips are of medium fullness."],
    "skin_texture": ["The skin shows fine texture around the nose and forehead, with no visible blemishes or scars.",
                     "A light sheen on the forehead suggests oily skin in the T-zone under the lights.",
                     "Small pores are visible on the cheeks; there are no deep wrinkles on the brow."],
    "expression": ["The mouth is closed and the corners are neutral, giving a calm, attentive expression.",
                   "The eyebrows are relaxed and level, with no tension between them.",
                   "The gaze is steady and direct, which reads as composed rather than cheerful."],
    "lighting_quality": ["The face is lit from the upper left, leaving a soft shadow along the right cheek and jaw.",
                         "Highlights on the nose bridge are gentle, so the light source is diffused.",
                         "The background is darker than the face, which separates the subject well."],
    "pose": ["The head is turned a little to the image's right and tilted down by a few degrees.",
             "Both ears are partly hidden, consistent with a near-frontal view.",
             "The shoulders are square to the camera while the chin points slightly away."],
    "forensic": ["For forensic use, the resolution is sufficient for comparison but the compression is visible.",
                 "Distinctive marks that would help identification are not visible at this size.",
                 "The inter-pupil distance spans enough pixels for landmark-based measurements."],
    "detail": ["Image quality is good: the focus is sharp on the eyes and the background is out of focus.",
               "Colour balance is slightly warm, and no filters or retouching are apparent.",
               "Overall, a clear portrait that suits training on attributes and fine facial cues."],
}
LABELS = [("male", "50-59", "white", "The man appears to be in his fifties, of White ethnicity."),
          ("female", "20-29", "east_asian", "The woman appears to be in her twenties, of East Asian descent."),
          ("male", "30-39", "black", "He looks to be in his thirties and presents as a Black man."),
          ("female", "60-69", "latino_hispanic", "She appears to be in her sixties, Latino or Hispanic.")]


def make_records(n: int) -> list[dict]:
    prov = Provenance(generator="openai", llm_model="bench", prompt_set="fairfacegpt", prompt_version="1",
                      prompt_sha256="0" * 64, pipeline_version="bench", recipe="bench", recipe_sha256="0" * 64,
                      created_at=datetime(2026, 1, 1, tzinfo=UTC))
    out = []
    for i, (name, data) in enumerate(augmented_jpegs(n)):
        info = decode_image(data, ImageConfig()).info
        gender, age, race, demo = LABELS[i % len(LABELS)]
        qa = []
        for cat in DEFAULT_CATEGORIES:
            own = SENTENCES[cat]
            body = " ".join(own[(i + k) % len(own)] for k in range(len(own)))
            answer = f"{demo} {body}" if cat == "demographics" else body
            qa.append(QAPair(category=cat, question=f"Describe the {cat.replace('_', ' ')} of the image.", answer=answer))
        sample = Sample(
            key=name.split(".")[0], source=SourceInfo(dataset="bench", id=name), image=info,
            attributes={a: AttributeValue(value=v, source="label", confidence=1.0)
                        for a, v in (("gender", gender), ("age", age), ("race", race))},
            caption="A close portrait of a person's calm face with short hair, lit from the upper left.", qa=qa, provenance=prov,
        )
        out.append(sample.model_dump(mode="json"))
    return out


def plain(records: list[dict]) -> None:
    for d in records:
        Sample.model_validate(d)


def dedup_in_process(light: list[tuple[str, str, str]], d: int) -> int:
    """The dedup logic of the Beam transforms, grouped with dicts instead of a shuffle; returns losers."""
    by_sha: dict[str, list[str]] = defaultdict(list)
    by_phash: dict[str, list[str]] = defaultdict(list)
    for key, sha, ph in light:
        by_sha[sha].append(key)
        by_phash[ph].append(key)
    losers = {k for group in by_sha.items() for k, _ in _exact_losers(group)}
    buckets: dict[str, list] = defaultdict(list)
    for ph, keys in by_phash.items():
        for b, entry in _bucket_entries((ph, min(keys)), d):
            buckets[b].append(entry)
    neighbours: dict[str, list] = defaultdict(list)
    for bucket in buckets.items():
        for ph, nb in _neighbours_in_bucket(bucket, d):
            neighbours[ph].append(nb)
    for ph, keys in by_phash.items():
        losers |= {k for k, _ in _near_losers((ph, {"members": keys, "neighbours": neighbours.get(ph, [])}))}
    return len(losers)


def ours(records: list[dict], rules: RecordRules, split: dict[str, float]) -> int:
    t = time.perf_counter()
    light = []
    for d in records:
        s = Sample.model_validate(d)
        bad, _ = verdict(check_record(s, rules), rules)
        assert bad is None, bad
        light.append((s.key, s.image.sha256, s.image.phash))
    t_rules = time.perf_counter()
    losers = dedup_in_process(light, rules.config.dedup.max_distance)
    split["rules"] = min(split.get("rules", float("inf")), t_rules - t)
    split["dedup"] = min(split.get("dedup", float("inf")), time.perf_counter() - t_rules)
    return losers


def beam_dedup(light: list[tuple[str, str, str]], d: int) -> float:
    import apache_beam as beam

    from facecorpus.validation.dedup import ExactDuplicates, NearDuplicates

    t = time.perf_counter()
    with beam.Pipeline(runner="FnApiRunner") as p:
        rows = p | beam.Create(light)
        _ = ((rows | "E" >> ExactDuplicates(), rows | "N" >> NearDuplicates(d)) | beam.Flatten() | beam.combiners.Count.Globally())
    return time.perf_counter() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    load = [os.getloadavg()[0]]
    records = make_records(n)
    rules = RecordRules(ValidationConfig(), tuple(DEFAULT_CATEGORIES), frozenset({"templates"}))
    times: dict[str, list[float]] = {"plain": [], "ours": []}
    losers = 0
    split: dict[str, float] = {}
    for _ in range(rounds):  # interleaved: the machine is shared
        t = time.perf_counter()
        plain(records)
        times["plain"].append(time.perf_counter() - t)
        t = time.perf_counter()
        losers = ours(records, rules, split)
        times["ours"].append(time.perf_counter() - t)
    first = {k: n / v[0] for k, v in times.items()}  # whole run: the first round (cold caches, first calls)
    rate = {k: n / min(v[1:] or v) for k, v in times.items()}  # steady state: the best later round
    chars = sum(len(q["answer"]) for r in records for q in r["qa"]) / n
    light = [(r["key"], r["image"]["sha256"], r["image"]["phash"]) for r in records]
    beam_s = beam_dedup(light, rules.config.dedup.max_distance)
    load.append(os.getloadavg()[0])
    print(f"records: {n} (8 QA pairs, {chars:.0f} answer characters each); near duplicates among them: {losers}; "
          f"{rounds} rounds; load average {load[0]:.1f} → {load[1]:.1f}")
    print(f"plain model_validate           : whole run {first['plain']:9.0f} records/s, steady {rate['plain']:9.0f}")
    print(f"validate + record rules + dedup: whole run {first['ours']:9.0f} records/s, steady {rate['ours']:9.0f}")
    print(f"  of which model_validate + record rules: {n / split['rules']:9.0f} records/s; dedup: {n / split['dedup']:9.0f} records/s (best)")
    print(f"overhead ratio (plain rate / ours): whole run {first['plain'] / first['ours']:.1f}x, steady {rate['plain'] / rate['ours']:.1f}x")
    print(f"for scale: the dedup Beam transforms on FnApiRunner: {n / beam_s:.0f} records/s ({beam_s:.1f} s, "
          f"mostly runner start-up at this size)")


if __name__ == "__main__":
    main()
