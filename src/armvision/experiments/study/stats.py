"""Statistics of the study: mean, std, Welch's t-test (Welch–Satterthwaite degrees of freedom, two-sided p-value),
the 95 % confidence interval of a difference of means, and the verdict rule fixed before the run.

The Student t distribution is computed here from the regularised incomplete beta function (a continued fraction,
Numerical Recipes' `betacf` / Lentz), so the study needs no scipy; tests/study checks it against scipy when present.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

ALPHA = 0.05
MIN_SEEDS = 5  # a verdict is drawn only from comparisons with at least this many seeds on each side
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive at this scale"


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x={x} is outside [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability P(|T| >= |t|) of Student's t with df degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_ppf(q: float, df: float) -> float:
    """The q-quantile (0.5 < q < 1) of Student's t, by bisection on t_sf2."""
    if not 0.5 < q < 1.0:
        raise ValueError(f"t_ppf: q={q} must be in (0.5, 1)")
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > 2 * (1 - q):
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_sf2(mid, df) > 2 * (1 - q) else (lo, mid)
    return (lo + hi) / 2


@dataclass
class Welch:
    """Welch's test of mean(a) - mean(b)."""

    diff: float
    t: float
    df: float
    p: float
    ci_low: float
    ci_high: float


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Welch:
    """Welch's unequal-variance t-test of mean(a) - mean(b), with the `level` confidence interval of the difference.
    Needs two values on each side; equal constant samples give p = 1 (or 0 if their means differ)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's test needs at least 2 values per side, got {len(a)} and {len(b)}")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff, se2 = statistics.mean(a) - statistics.mean(b), va + vb
    if se2 == 0.0:
        p = 1.0 if diff == 0 else 0.0
        return Welch(diff, math.copysign(math.inf, diff) if diff else 0.0, math.nan, p, diff, diff)
    df = se2 ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = diff / math.sqrt(se2)
    half = t_ppf(0.5 + level / 2, df) * math.sqrt(se2)
    return Welch(diff, t, df, t_sf2(t, df), diff - half, diff + half)


def verdict(w: Optional[Welch], direction: int, n_a: int, n_b: int) -> str:
    """The rule fixed before the run. direction +1: the paper says A > B; -1: A < B; 0: about equal.
    p < 0.05 in the paper's direction: supported; p < 0.05 against it (or, for "about equal", either way):
    contradicted; otherwise inconclusive at this scale. Fewer than MIN_SEEDS seeds a side: no verdict."""
    if w is None or min(n_a, n_b) < MIN_SEEDS:
        return f"no verdict (fewer than {MIN_SEEDS} seeds)"
    if w.p >= ALPHA:
        return INCONCLUSIVE
    if direction == 0:
        return CONTRADICTED
    return SUPPORTED if w.diff * direction > 0 else CONTRADICTED


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """"mean ± std" ("n/a" for none, the value alone for one)."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
