"""The junk checks' precision and recall on the labelled set (tests/data/quality_set.jsonl, made by
tests/data/harvest_quality_set.py and labelled by hand; the table is in docs/trust.md §1b), each held
above a floor. The floors sit a little under the figures measured when the set was made, so that a
change that makes a check worse on real model output fails here."""

from __future__ import annotations

import pytest

from facecorpus.validation.config import JUNK_CHECKS
from tests.support.quality_set import load_set, measure

#: (precision on its own kind, precision against any junk, recall) per check, on the whole set
FLOORS: dict[str, tuple[float, float, float]] = {
    "markup": (0.95, 0.99, 0.95),
    "prompt_echo": (0.95, 0.99, 0.90),
    "meta_talk": (0.85, 0.99, 0.90),
    "degenerate_text": (0.90, 0.99, 0.90),
    "repeated_answer": (0.80, 0.80, 0.90),
    "off_topic": (0.90, 0.99, 0.90),
    "caption_not_about_face": (0.95, 0.99, 0.90),
    "any": (0.99, 0.99, 0.90),
}


@pytest.fixture(scope="module")
def figures():
    return measure()


def test_the_set_is_what_its_docstring_says():
    texts, samples = load_set()
    assert len(texts) >= 500 and len(samples) >= 50
    good = [t for t in texts if not t["junk"]]
    assert len(good) >= 200 and len(texts) - len(good) >= 250
    kinds = {k for t in texts for k in t["junk"]}
    assert kinds <= set(JUNK_CHECKS) | {"other"} and kinds >= set(JUNK_CHECKS) - {"repeated_answer"}
    assert all(t["origin"] and t["part"] in ("tuning", "held-out") for t in [*texts, *samples])
    assert any("SmolLM2-135M" in t["origin"] for t in texts) and any("templates generator" in t["origin"] for t in texts)
    assert {t["category"] for t in texts} >= {"caption", "demographics", "expression", "pose", "lighting_quality"}


@pytest.mark.parametrize("check", list(FLOORS))
def test_each_check_stays_above_its_floor(figures, check: str):
    f = figures[check]
    p_kind, p_junk, recall = FLOORS[check]
    assert f.fired > 0 and f.labelled > 0
    assert f.precision >= p_kind, (f.precision, f.wrongly[:5])
    assert f.precision_junk >= p_junk, f.wrongly[:5]
    assert f.recall >= recall, (f.recall, f.missed[:5])


def test_no_good_text_is_rejected_and_held_out_junk_is_caught():
    """The part labelled after the checks were tuned (structured prompt set outputs, answers written
    later) is caught as well as the tuning part."""
    held = measure(part="held-out")
    assert held["any"].wrongly == [] and measure()["any"].wrongly == []
    assert held["any"].recall >= 0.9, held["any"].missed
