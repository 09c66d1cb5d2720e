"""The dataset card (DIR/README.md) and its figures (DIR/plots/*.png), from what is on disk.

Written at the end of every run and by `facecorpus stats DIR --write`, so it also picks up reviews
(DIR/reviews/) made after the run. Every figure has its numbers in a table next to it. The card is a
Hugging Face dataset card: YAML metadata first (card_hub.hub_metadata), then the sections.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from apache_beam.io.filesystems import FileSystems

from ..output.layout import CARD_FILE, PLOTS_DIR, manifest_files
from ..output.summaries import WrittenSummary, percentile
from ..storage import match_paths, write_text
from .card_hub import (
    USES,
    biases_section,
    hub_metadata,
    licences_section,
    personal_information_section,
    recipe_dict,
)
from .card_meta import join_front_matter

AGE_ORDER = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+", "unknown")


def _table(counts: dict[str, int], total: int, header: str) -> list[str]:
    lines = [f"| {header} | count | % |", "|---|---:|---:|"]
    for k, v in counts.items():
        lines.append(f"| {k} | {v} | {100.0 * v / total:.1f} |" if total else f"| {k} | {v} | - |")
    return lines


class _Figures:
    """Writes figures under DIR/plots and remembers them, so stale ones from an earlier card are removed.

    With `enabled` False (`output.card.plots: false`) nothing is drawn (matplotlib is not even
    imported: it was about a tenth of a small run's CPU) and the card keeps its tables."""

    def __init__(self, out: str, enabled: bool = True) -> None:
        self.out = out
        self.enabled = enabled
        self.written: set[str] = set()

    def add(self, name: str, draw: Callable[[Any], bytes | None], alt: str) -> list[str]:
        """Card lines linking the figure `draw(plots)` returns, or nothing when there was nothing to draw."""
        if not self.enabled:
            return []
        from . import plots

        png = draw(plots)
        if png is None:
            return []
        path = FileSystems.join(self.out, PLOTS_DIR, f"{name}.png")
        with FileSystems.create(path) as f:
            f.write(png)
        self.written.add(path.rsplit("/", 1)[-1])
        return [f"![{alt}]({PLOTS_DIR}/{name}.png)", ""]

    def remove_stale(self) -> None:
        stale = [p for p in match_paths(FileSystems.join(self.out, PLOTS_DIR, "*.png")) if p.rsplit("/", 1)[-1] not in self.written]
        if stale:
            FileSystems.delete(stale)


def _age_key(a: str) -> int:
    return AGE_ORDER.index(a) if a in AGE_ORDER else len(AGE_ORDER)


def _label_section(written: WrittenSummary, stats: dict[str, Any], figs: _Figures) -> list[str]:
    w = stats["written"]
    lines = ["## Label balance (dataset labels)", ""]
    for attr, dist in stats["labels"].items():
        lines += [*_table(dist, w, attr), ""]
    combos = written.label_combos
    if not combos:
        return [*lines, "No sample carries dataset labels.", ""]
    lines += ["### age × gender × race", "", "| age | gender | race | count | % of labelled |", "|---|---|---|---:|---:|"]
    total = sum(combos.values())
    for (a, g, r), n in sorted(combos.items(), key=lambda kv: (_age_key(kv[0][0]), kv[0][1], kv[0][2])):
        lines.append(f"| {a} | {g} | {r} | {n} | {100.0 * n / total:.1f} |")
    lines.append("")
    ages = sorted({k[0] for k in combos}, key=_age_key)
    genders = sorted({k[1] for k in combos})
    races = sorted({k[2] for k in combos})
    lines += figs.add("labels_age_gender_race", lambda plots: plots.label_heatmaps(combos, ages, races, genders), "age × race × gender")
    return lines


def _attribute_labels_section(stats: dict[str, Any]) -> list[str]:
    """Every other dataset label: flags (present / absent) in one table, categories and numbers one each."""
    labels = stats.get("attribute_labels") or {}
    if not labels:
        return []
    lines = ["### Other dataset labels", ""]
    flags = {a: d for a, d in labels.items() if set(d) <= {"true", "false"}}
    if flags:
        lines += ["| attribute | present | absent | % present |", "|---|---:|---:|---:|"]
        for a, d in flags.items():
            yes, no = d.get("true", 0), d.get("false", 0)
            lines.append(f"| {a} | {yes} | {no} | {100.0 * yes / max(1, yes + no):.1f} |")
        lines.append("")
    for a, d in labels.items():
        if a in flags:
            continue
        if a == "age_years":
            years = Counter({int(float(k)): n for k, n in d.items()})  # value counts: no list of every sample
            lines += [f"- {a}: {sum(years.values())} labelled, median {percentile(years, 50):g}, "
                      f"range {min(years)}-{max(years)}", ""]
            continue
        lines += [*_table(d, sum(d.values()), a), ""]
    return lines


def _label_qa_section(stats: dict[str, Any]) -> list[str]:
    """Balance of label-derived answers: the right MCQ letter and yes/no, which should be even."""
    qa = stats.get("label_qa") or {}
    if not qa:
        return []
    lines = ["### Answers derived from labels", "",
             "Every answer below was checked against its sample's labels (`validation/label_answers.py`).", ""]
    letters = qa.get("attribute_mcq")
    if letters:
        n = sum(letters.values())
        chi2 = sum((letters.get(c, 0) - n / 4) ** 2 / (n / 4) for c in "ABCD")
        lines += ["| right letter | questions | % |", "|---|---:|---:|"]
        lines += [f"| {c} | {letters.get(c, 0)} | {100.0 * letters.get(c, 0) / n:.1f} |" for c in "ABCD"]
        lines += ["", f"Chi-square against even letters: {chi2:.2f} (3 degrees of freedom; above 11.34 would be "
                      "uneven at 1%).", ""]
    yes_no = qa.get("attribute_yes_no")
    if yes_no:
        n = sum(yes_no.values())
        lines += [f"Yes/no answers: {yes_no.get('yes', 0)} yes, {yes_no.get('no', 0)} no "
                  f"({100.0 * yes_no.get('yes', 0) / n:.1f}% yes).", ""]
    return lines


def _annotation_section(stats: dict[str, Any]) -> list[str]:
    """How often the LLM's attribute annotations agree with dataset labels and face-model estimates."""
    table = stats.get("annotation_agreement") or {}
    if not table:
        return []
    lines = ["## LLM attribute annotations: agreement", "",
             "The LLM saw only the image. Agreement with the dataset's labels and with what the face models "
             "measured on the primary face (head pose: frontal under 20° of yaw, profile over 60°); kappa is "
             "Cohen's, '-' where it is undefined (one value throughout).", "",
             "| attribute | compared with | samples | agree | rate | kappa |", "|---|---|---:|---:|---:|---:|"]
    for name, kinds in table.items():
        for kind, r in kinds.items():
            kappa = "-" if r["kappa"] is None else f"{r['kappa']:.3f}"
            who = "dataset labels" if kind == "label" else "face models"
            lines.append(f"| {name} | {who} | {r['n']} | {r['agree']} | {100.0 * r['rate']:.1f}% | {kappa} |")
    return [*lines, ""]


def _judge_section(stats: dict[str, Any]) -> list[str]:
    """The LLM judge's verdicts (generation/judge.py): how many passed, the low criteria, mean scores, cost."""
    j = (stats.get("llm") or {}).get("judge")
    if not j:
        return []
    low_by, means = j.get("low_by", {}), j.get("mean_score", {})
    lines = ["## LLM judge", "",
             f"{j.get('judged', 0)} samples were scored (1 to 5 per criterion): {j.get('passed', 0)} passed, "
             f"{j.get('low', 0)} scored low on at least one criterion, {j.get('failed', 0)} got no verdict. "
             f"The judge made {j.get('requests', 0)} requests ({j.get('cache_hits', 0)} cache hits), "
             f"{j.get('prompt_tokens', 0) + j.get('completion_tokens', 0)} tokens, "
             f"${j.get('cost_usd', 0.0):.4f} (included in the totals above).", "",
             "| criterion | mean score | low |", "|---|---:|---:|"]
    for c in means:
        lines.append(f"| {c} | {means[c]:.2f} | {low_by.get(c, 0)} |")
    return [*lines, ""]


def _faces_section(written: WrittenSummary, figs: _Figures) -> list[str]:
    n = written.written
    faces_table = {str(k): v for k, v in sorted(written.faces_per_sample.items())}
    lines = ["## Faces", "", *_table(faces_table, n, "faces per image"), ""]
    lines += figs.add("faces_per_image", lambda plots: plots.bar_chart(faces_table, "faces per image", "images"), "faces per image")
    if not any(written.pose.values()):
        lines += ["No head pose was measured in this output (no primary face with pose).", ""]
    else:
        lines += ["### Head pose", "", "| angle | n | median ° | p10 ° | p90 ° |", "|---|---:|---:|---:|---:|"]
        for name, counts in written.pose.items():
            if counts:
                lines.append(f"| {name} | {sum(counts.values())} | {percentile(counts, 50):.1f} | "
                             f"{percentile(counts, 10):.1f} | {percentile(counts, 90):.1f} |")
        lines += ["", *figs.add("pose", lambda plots: plots.histograms(written.pose, "head pose of the primary face", "degrees"),
                                "head pose histograms")]
    expressions = written.expressions
    if expressions:
        dist = dict(expressions.most_common())
        lines += ["### Expression", "", *_table(dist, sum(dist.values()), "expression"), ""]
        lines += figs.add("expression", lambda plots: plots.bar_chart(dist, "expression of the primary face", "faces"), "expressions")
    else:
        lines += ["No facial expression was measured in this output.", ""]
    return lines


def _qa_section(written: WrittenSummary, stats: dict[str, Any], figs: _Figures) -> list[str]:
    lines = ["## QA pairs", "", *_table(stats["qa_by_category"], stats["qa_pairs"], "category"), ""]
    lines += figs.add("qa_per_category", lambda plots: plots.bar_chart(stats["qa_by_category"], "QA pairs per category", "QA pairs"), "QA pairs per category")
    lengths = {c: counts for c, counts in written.answer_chars.items() if counts}
    if lengths:
        lines += ["### Answer length (characters)", "", "| category | n | median | p10 | p90 | max |", "|---|---:|---:|---:|---:|---:|"]
        for c, counts in sorted(lengths.items()):
            lines.append(f"| {c} | {sum(counts.values())} | {percentile(counts, 50):.0f} | {percentile(counts, 10)} | "
                         f"{percentile(counts, 90)} | {max(counts)} |")
        lines.append("")
        everything: Counter = Counter()
        for counts in lengths.values():
            everything.update(counts)
        lines += figs.add("answer_length", lambda plots: plots.histograms({"all categories": everything}, "answer length", "characters"), "answer length")
    return lines


def _tokens_section(stats: dict[str, Any]) -> list[str]:
    llm, w = stats["llm"], stats["written"]
    tokens = llm.get("prompt_tokens", 0) + llm.get("completion_tokens", 0)
    per = f"{tokens / w:.0f} tokens and ${llm.get('cost_usd', 0.0) / w:.5f} per written sample" if w else "-"
    return [
        "## Tokens and cost",
        "",
        "| requests | cache hits | prompt tokens | completion tokens | cost (USD) |",
        "|---:|---:|---:|---:|---:|",
        f"| {llm.get('requests', 0)} | {llm.get('cache_hits', 0)} | {llm.get('prompt_tokens', 0)} | "
        f"{llm.get('completion_tokens', 0)} | {llm.get('cost_usd', 0.0):.4f} |",
        "",
        f"That is {per}; generators: {', '.join(f'{k} ({v})' for k, v in stats['by_generator'].items()) or '-'}.",
        "",
    ] + ([f"{llm['attempts']} HTTP requests were sent in all (retries included); {llm['unanswered']} of them were "
          "in flight when a run was killed: the endpoint received them, their tokens and cost are unknown and not "
          "counted above.", ""] if llm.get("unanswered") else [])


def _rejects_section(stats: dict[str, Any], figs: _Figures) -> list[str]:
    if not stats["rejected"]:
        return ["## Rejects", "", "No input was rejected.", ""]
    lines = ["## Rejects", "", "| stage | reason | count | % of rejects |", "|---|---|---:|---:|"]
    flat: dict[str, int] = {}
    for stage, reasons in stats["by_stage"].items():
        for reason, n in reasons.items():
            lines.append(f"| {stage} | {reason} | {n} | {100.0 * n / stats['rejected']:.1f} |")
            flat[f"{stage}: {reason}"] = n
    lines.append("")
    lines += figs.add("rejects", lambda plots: plots.bar_chart(flat, "rejects by stage and reason", "inputs"), "rejects by stage and reason")
    return lines


def _text_checks_section(stats: dict[str, Any]) -> list[str]:
    """The junk checks' rejects and flags per check and category (stats.json validation.text_checks)."""
    checks = (stats.get("validation") or {}).get("text_checks") or {}
    rows = [(what, check, cat, n) for what in ("rejected", "flagged")
            for check, by_cat in (checks.get(what) or {}).items() for cat, n in by_cat.items()]
    if not rows:
        return []
    lines = ["## Text checks", "",
             "Samples rejected or flagged by the junk checks (docs/trust.md), per text they fired on; a sample "
             "whose caption and answer both fired counts under both.", "",
             "| check | text | rejected | flagged |", "|---|---|---:|---:|"]
    cells: dict[tuple[str, str], dict[str, int]] = {}
    for what, check, cat, n in rows:
        cells.setdefault((check, cat), {})[what] = n
    for (check, cat), c in cells.items():
        lines.append(f"| {check} | {cat} | {c.get('rejected', 0)} | {c.get('flagged', 0)} |")
    return [*lines, ""]


def _review_section(out: str, figs: _Figures) -> list[str]:
    if "://" in out or not FileSystems.exists(FileSystems.join(out, "reviews")):
        return []
    from ..review.summary import LABEL_ATTRIBUTES, review_summary

    s = review_summary(out)
    if not s["units_reviewed"]:
        return []
    lines = ["## Review", "", f"Reviewers: {', '.join(s['reviewers'])}; {s['units_reviewed']} units judged "
             "(a QA pair, or a reject). Acceptance = accepted / (accepted + rejected), 95% Wilson interval; "
             "a unit rejected by any reviewer counts as rejected.", ""]
    for title, key in [("category", "category"), *[(f"label {a}", f"label_{a}") for a in LABEL_ATTRIBUTES], ("reject (stage/reason: rejection confirmed)", "rejects_by_reason")]:
        table = s[key]
        if not table:
            continue
        lines += [f"| {title} | judged | accepted | rejected | flagged | acceptance | 95% CI |", "|---|---:|---:|---:|---:|---:|---|"]
        for k, r in table.items():
            rate = "-" if r["rate"] is None else f"{100 * r['rate']:.1f}%"
            ci = "-" if r["ci95"] is None else f"{100 * r['ci95'][0]:.1f}–{100 * r['ci95'][1]:.1f}%"
            lines.append(f"| {k} | {r['judged']} | {r['accepted']} | {r['rejected']} | {r['flagged']} | {rate} | {ci} |")
        lines.append("")
    lines += figs.add("review_acceptance", lambda plots: plots.acceptance_chart(s["category"], "review acceptance per category"), "review acceptance per category")
    for p in s["agreement"]:
        k = "undefined" if p["kappa"] is None else f"{p['kappa']:.3f}"
        lines.append(f"- agreement {p['reviewers'][0]} × {p['reviewers'][1]}: Cohen's kappa {k} over {p['units']} units")
    return [*lines, ""]


def render_card(out: str, stats: dict[str, Any], recipe_yaml: str, plots: bool = True,
                written: WrittenSummary | None = None) -> str:
    """README.md text for the output; writes the figures it links under DIR/plots/ (none with `plots` False).
    `written`: the manifest's summary when the caller has it (else it is read here, streaming)."""
    run = stats.get("run", {})
    w = stats["written"]
    if written is None:
        from ..output.summaries import summarize_written

        written = summarize_written(manifest_files(out))
    recipe = recipe_dict(recipe_yaml)
    figs = _Figures(out, enabled=plots)
    lines = [
        f"# {run.get('recipe', 'facecorpus output')}",
        "",
        f"Built by facecorpus {run.get('pipeline_version', '?')} on {run.get('finished_at', '?')}.",
        "",
        "## Counts",
        "",
        f"- inputs: {stats['inputs']} · written: {w} · rejected: {stats['rejected']} "
        f"(inputs == written + rejected: {_invariant_word(stats['invariant_ok'])})",
        f"- shards: {stats['shards']} · QA pairs: {stats['qa_pairs']}",
        "",
        *([] if plots else ["Figures are off for this output (`output.card.plots: false`); the tables hold every number.", ""]),
        *_tokens_section(stats),
        *_label_section(written, stats, figs),
        *_attribute_labels_section(stats),
        *_label_qa_section(stats),
        *_annotation_section(stats),
        *_judge_section(stats),
        *_faces_section(written, figs),
        *_qa_section(written, stats, figs),
        *_rejects_section(stats, figs),
        *_text_checks_section(stats),
        *_review_section(out, figs),
        *licences_section(written, stats),
        *personal_information_section(written, recipe),
        *biases_section(stats),
        *USES,
        "## Provenance",
        "",
        f"- recipe sha256: `{run.get('recipe_sha256', '?')}`",
        f"- prompt sets: {', '.join(run.get('prompt_sets', [])) or '-'}",
        "",
        "```yaml",
        recipe_yaml.rstrip(),
        "```",
        "",
    ]
    figs.remove_stale()
    return join_front_matter(hub_metadata(stats, written, recipe), "\n".join(lines))


def write_card_files(out: str, stats: dict[str, Any], recipe_yaml: str, plots: bool = True,
                     written: WrittenSummary | None = None) -> None:
    """Write DIR/README.md and (with `plots`) DIR/plots/*.png."""
    write_text(FileSystems.join(out, CARD_FILE), render_card(out, stats, recipe_yaml, plots, written))


def _invariant_word(ok: bool | None) -> str:
    """yes / NO, or what a count taken from the outputs themselves is: no proof at all."""
    if ok is None:
        return "not proven: inputs were counted from the outputs (`facecorpus finalize OUT --inputs N`)"
    return "yes" if ok else "NO"
