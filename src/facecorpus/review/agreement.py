"""The statistics a review summary needs: Wilson score intervals and Cohen's kappa."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

#: two-sided 95% normal quantile
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes/n; (0, 1) when n is 0.

    Used instead of the normal (Wald) interval because review samples are small and rates near 0 or 1,
    where Wald's interval collapses to zero width or leaves [0, 1].
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa between two raters' labels of the same units (same order).

    None when it is undefined: no units, or chance agreement is 1 (both raters used one and the same
    label throughout, so agreement says nothing about reliability).
    """
    if len(a) != len(b):
        raise ValueError("both raters must label the same units")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca.keys() | cb.keys()) / (n * n)
    if math.isclose(expected, 1.0):
        return None
    return (observed - expected) / (1 - expected)
