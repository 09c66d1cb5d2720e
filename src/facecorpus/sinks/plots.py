"""The dataset card's figures: PNG files in DIR/plots/, drawn with matplotlib's Agg canvas.

Each plot function takes plain data and returns PNG bytes, or None when there is nothing to draw
(e.g. pose histograms for an output without detected faces) — the card then says so in words.
Figures are built on `matplotlib.figure.Figure` with the Agg canvas directly, never through pyplot,
so no display or global backend state is touched (safe on Beam workers and in threads).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..output.layout import PLOTS_DIR  # noqa: F401 - where the card puts these figures (also read from here)

COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # no 'Software' stamp: the same data gives the same bytes across matplotlib patch releases
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def bar_chart(counts: Mapping[str, int | float], title: str, xlabel: str = "count") -> bytes | None:
    """Horizontal bars, one per key, in the mapping's order."""
    if not counts:
        return None
    labels = list(counts)
    fig = Figure(figsize=(6.4, 0.9 + 0.32 * len(labels)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    ax.barh(y, list(counts.values()), color=COLOURS[0])
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    for i, v in enumerate(counts.values()):
        ax.annotate(f"{v:g}", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    return _png(fig)


def histograms(series: Mapping[str, Sequence[float] | Mapping[float, int]], title: str, unit: str,
               bins: int = 24) -> bytes | None:
    """One histogram per named series, side by side; None if every series is empty. A series is its
    values, or value → how often (the card's summaries): drawn with weights, the same bars without
    one entry per sample (200k values took ~64 MiB in matplotlib)."""
    counted = {k: dict(vs) if isinstance(vs, Mapping) else dict(Counter(vs)) for k, vs in series.items()}
    counted = {k: {v: n for v, n in vs.items() if v is not None and n} for k, vs in counted.items()}
    if not any(counted.values()):
        return None
    fig = Figure(figsize=(3.2 * len(counted), 2.8), layout="constrained")
    for n, (name, counts) in enumerate(counted.items(), start=1):
        ax = fig.add_subplot(1, len(counted), n)
        if counts:
            ax.hist(list(counts), bins=bins, weights=list(counts.values()), color=COLOURS[(n - 1) % len(COLOURS)])
        ax.set_title(name)
        ax.set_xlabel(unit)
    fig.suptitle(title)
    return _png(fig)


def label_heatmaps(
    counts: Mapping[tuple[str, str, str], int], ages: Sequence[str], races: Sequence[str], genders: Sequence[str]
) -> bytes | None:
    """age × race heatmaps of sample counts, one panel per gender."""
    if not counts:
        return None
    fig = Figure(figsize=(1.6 + 0.55 * len(ages) * len(genders), 1.4 + 0.42 * len(races)), layout="constrained")
    vmax = max(counts.values())
    for n, g in enumerate(genders, start=1):
        ax = fig.add_subplot(1, len(genders), n)
        grid = np.array([[counts.get((a, g, r), 0) for a in ages] for r in races])
        ax.imshow(grid, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(ages)), ages, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(races)), races if n == 1 else [""] * len(races), fontsize=8)
        ax.set_title(f"gender: {g}", fontsize=9)
        for (i, j), v in np.ndenumerate(grid):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > vmax / 2 else "black")
    fig.suptitle("samples by age × race × gender (dataset labels)")
    return _png(fig)


def acceptance_chart(rates: Mapping[str, Mapping], title: str) -> bytes | None:
    """Acceptance rate per group with its 95% Wilson interval as an error bar (groups with verdicts only)."""
    rows = {k: r for k, r in rates.items() if r.get("rate") is not None}
    if not rows:
        return None
    labels = list(rows)
    rate = np.array([rows[k]["rate"] for k in labels])
    lo = np.array([rows[k]["ci95"][0] for k in labels])
    hi = np.array([rows[k]["ci95"][1] for k in labels])
    fig = Figure(figsize=(6.4, 0.9 + 0.35 * len(labels)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    ax.barh(y, rate, color=COLOURS[2])
    ax.errorbar(rate, y, xerr=[rate - lo, hi - rate], fmt="none", ecolor="black", capsize=3)
    ax.set_yticks(y, [f"{k} (n={rows[k]['judged']})" for k in labels])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accepted / judged, with 95% Wilson interval")
    ax.set_title(title)
    return _png(fig)
