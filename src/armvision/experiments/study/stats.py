"""Statistics of the study: mean, std, the paired t-test (cells that share a seed share the labelled subset, the
initialisation seed and the data order) and Welch's t-test (Welch–Satterthwaite degrees of freedom) for unmatched
seeds, each with a two-sided p-value and the 95 % confidence interval of the difference; two one-sided tests (TOST)
for "about equal" claims; Holm's step-down correction across the claims; the smallest effect a test could detect;
and the verdict rule fixed before the run.

The Student t distribution is computed here from the regularised incomplete beta function (a continued fraction,
Numerical Recipes' `betacf` / Lentz), so the study needs no scipy; tests/study checks it against scipy when present.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

ALPHA = 0.05  # family-wise error rate over the primary comparisons (Holm)
MIN_SEEDS = 5  # a verdict is drawn only from comparisons with at least this many seeds on each side
MARGIN = 1.0  # top-1 points: an "about equal" claim is supported when A - B is shown to lie within +- MARGIN
POWER = 0.8  # the power of the "detectable" column
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
class TTest:
    """A t-test of mean(a) - mean(b): `kind` "paired" (n pairs, df n - 1) or "welch"."""

    diff: float
    t: float
    df: float
    p: float  # two-sided
    ci_low: float
    ci_high: float
    se: float = math.nan
    kind: str = "welch"


Welch = TTest  # the name the study used before paired tests


def _test(diff: float, se: float, df: float, level: float, kind: str) -> TTest:
    if se == 0.0:  # constant differences: no spread to test against
        p = 1.0 if diff == 0 else 0.0
        return TTest(diff, math.copysign(math.inf, diff) if diff else 0.0, df, p, diff, diff, 0.0, kind)
    t = diff / se
    half = t_ppf(0.5 + level / 2, df) * se
    return TTest(diff, t, df, t_sf2(t, df), diff - half, diff + half, se, kind)


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> TTest:
    """Welch's unequal-variance t-test of mean(a) - mean(b), with the `level` confidence interval of the difference.
    Needs two values on each side; equal constant samples give p = 1 (or 0 if their means differ)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's test needs at least 2 values per side, got {len(a)} and {len(b)}")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff, se2 = statistics.mean(a) - statistics.mean(b), va + vb
    df = se2 ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se2 else math.nan
    return _test(diff, math.sqrt(se2), df, level, "welch")


def paired(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> TTest:
    """The paired t-test of mean(a - b) (a[i] and b[i] from the same seed), df = n - 1, with the `level`
    confidence interval of the mean difference."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"a paired test needs two equally long samples of at least 2, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    return _test(statistics.mean(d), statistics.stdev(d) / math.sqrt(len(d)), len(d) - 1.0, level, "paired")


def t_sf(t: float, df: float) -> float:
    """One-sided upper tail P(T >= t) of Student's t."""
    half = t_sf2(t, df) / 2
    return half if t >= 0 else 1.0 - half


def tost(test: TTest, margin: float) -> Tuple[float, float]:
    """(p of equivalence, p of non-equivalence) of a difference within +- margin. Equivalence: two one-sided tests,
    H0 diff <= -margin and H0 diff >= +margin, p the larger of the two; non-equivalence: the one-sided test that the
    difference lies beyond the margin on the side of its estimate."""
    if test.se == 0.0:
        inside = abs(test.diff) < margin
        return (0.0, 1.0) if inside else (1.0, 0.0 if abs(test.diff) > margin else 1.0)
    lower, upper = t_sf((test.diff + margin) / test.se, test.df), t_sf((margin - test.diff) / test.se, test.df)
    beyond = t_sf((abs(test.diff) - margin) / test.se, test.df)
    return max(lower, upper), beyond


def equivalence_p(test: TTest, margin: float) -> Tuple[float, bool]:
    """The p-value an "about equal" row brings to the family, and whether it points to equivalence: twice the
    smaller of TOST's two answers (a Bonferroni correction within the row, as a two-sided p is twice the smaller
    one-sided one)."""
    p_eq, p_ne = tost(test, margin)
    return min(1.0, 2 * min(p_eq, p_ne)), p_eq <= p_ne


def holm(ps: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values (same order as `ps`): the k-th smallest of m is multiplied by m - k + 1,
    made non-decreasing, capped at 1. Rejecting where adjusted p < alpha holds the family-wise error at alpha."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - k) * ps[i]))
        out[i] = running
    return out


def detectable(test: TTest, alpha: float, power: float = POWER) -> float:
    """The smallest true difference the test would find (two-sided, level alpha) with probability `power`, for its
    standard error and degrees of freedom: (t_{1 - alpha/2} + t_{power}) x se."""
    if not test.se or math.isnan(test.df):
        return 0.0
    return (t_ppf(1 - alpha / 2, test.df) + t_ppf(power, test.df)) * test.se


def verdict(p_adj: Optional[float], diff: float, direction: int, n: int, equivalent: bool = False) -> str:
    """The rule fixed before the run, on the Holm-adjusted p of a primary comparison. direction +1: the paper says
    A > B; -1: A < B; 0: about equal (p from equivalence_p). Directional: adjusted p < ALPHA in the paper's direction:
    supported; against it: contradicted. About equal: adjusted p < ALPHA and equivalent within the margin:
    supported; shown to differ by more than the margin: contradicted. Otherwise inconclusive at this scale; fewer
    than MIN_SEEDS seeds a side: no verdict."""
    if p_adj is None or n < MIN_SEEDS:
        return f"no verdict (fewer than {MIN_SEEDS} seeds)"
    if p_adj >= ALPHA:
        return INCONCLUSIVE
    if direction == 0:
        return SUPPORTED if equivalent else CONTRADICTED
    return SUPPORTED if diff * direction > 0 else CONTRADICTED


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """"mean ± std" ("n/a" for none, the value alone for one)."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
