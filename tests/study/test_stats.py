"""The study's statistics: Welch and paired t-tests (by hand and against scipy), TOST equivalence, Holm's correction,
the detectable-effect power analysis, and the verdict rule on adjusted p-values."""
import math
import random

import pytest

from armvision.experiments import study
from armvision.experiments.study.stats import (CONTRADICTED, INCONCLUSIVE, SUPPORTED, detectable, equivalence_p, holm,
                                               paired, t_ppf, t_sf, t_sf2, tost, verdict, welch)


def test_welch_by_hand_and_against_scipy():
    w = welch([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])  # means 3, 6; variances 2.5, 10
    assert w.t == pytest.approx(-3 / 2.5 ** 0.5) and w.df == pytest.approx(6.25 / (0.0625 + 1.0))
    assert w.kind == "welch" and w.se == pytest.approx(2.5 ** 0.5)
    assert t_ppf(0.975, 10) == pytest.approx(2.228139, abs=1e-6)  # textbook t tables
    assert t_ppf(0.975, 4) == pytest.approx(2.776445, abs=1e-6)
    assert t_sf2(2.0, 10) == pytest.approx(0.073388, abs=1e-6)  # textbook two-sided tail
    with pytest.raises(ValueError, match="at least 2"):
        welch([1.0], [1.0, 2.0])
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(100):
        a = [rng.gauss(0, 1) for _ in range(rng.randint(2, 8))]
        b = [rng.gauss(rng.uniform(-2, 2), rng.uniform(0.1, 3)) for _ in range(rng.randint(2, 8))]
        ref, w = scipy_stats.ttest_ind(a, b, equal_var=False), welch(a, b)
        assert w.t == pytest.approx(ref.statistic, rel=1e-9) and w.p == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
        ci = ref.confidence_interval(0.95)
        assert (w.ci_low, w.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-6)


def test_paired_test_by_hand_and_against_scipy():
    a, b = [90.0, 91.0, 90.5, 91.5, 90.2], [89.5, 90.8, 90.6, 90.9, 90.0]
    d = [x - y for x, y in zip(a, b)]  # 0.5, 0.2, -0.1, 0.6, 0.2
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    t = paired(a, b)
    assert t.kind == "paired" and t.df == 4 and t.diff == pytest.approx(mean)
    assert t.se == pytest.approx(sd / math.sqrt(5)) and t.t == pytest.approx(mean / (sd / math.sqrt(5)))
    assert t.p == pytest.approx(t_sf2(t.t, 4)) and t.ci_high - t.diff == pytest.approx(t_ppf(0.975, 4) * t.se)
    # the seeds' shared part cancels: the paired test sees a difference that Welch's cannot
    assert t.p < 0.1 < welch(a, b).p
    with pytest.raises(ValueError, match="paired"):
        paired([1.0, 2.0], [1.0, 2.0, 3.0])
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(1)
    for _ in range(50):
        n = rng.randint(2, 9)
        base = [rng.gauss(80, 5) for _ in range(n)]
        a2 = [x + rng.gauss(1, 1) for x in base]
        ref, got = scipy_stats.ttest_rel(a2, base), paired(a2, base)
        assert got.t == pytest.approx(ref.statistic, rel=1e-9) and got.p == pytest.approx(ref.pvalue, rel=1e-7)
        ci = ref.confidence_interval(0.95)
        assert (got.ci_low, got.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-6)


def test_tost_against_one_sided_one_sample_tests():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(2)
    for _ in range(50):
        d = [rng.gauss(rng.uniform(-2, 2), rng.uniform(0.1, 1.5)) for _ in range(rng.randint(3, 8))]
        t = paired(d, [0.0] * len(d))
        p_eq, p_ne = tost(t, 1.0)
        lower = scipy_stats.ttest_1samp(d, -1.0, alternative="greater").pvalue  # H0: diff <= -1
        upper = scipy_stats.ttest_1samp(d, 1.0, alternative="less").pvalue  # H0: diff >= +1
        assert p_eq == pytest.approx(max(lower, upper), rel=1e-7, abs=1e-12)
        side = "greater" if t.diff >= 0 else "less"
        beyond = scipy_stats.ttest_1samp(d, math.copysign(1.0, t.diff), alternative=side).pvalue
        assert p_ne == pytest.approx(beyond, rel=1e-7, abs=1e-12)


def test_equivalence_p_and_the_about_equal_verdict():
    close = paired([90.1, 90.3, 89.9, 90.2, 90.0], [90.0, 90.1, 90.0, 90.1, 90.1])  # within +-0.2 of each other
    p, eq = equivalence_p(close, margin=1.0)
    assert eq and p < 0.01 and p == pytest.approx(2 * tost(close, 1.0)[0])
    assert verdict(p, close.diff, 0, 5, eq) == SUPPORTED  # "about equal" can now be supported
    far = paired([93.0, 93.4, 92.8, 93.1, 93.2], [90.0, 90.1, 90.0, 90.1, 90.1])  # 3 points apart
    p, eq = equivalence_p(far, margin=1.0)
    assert not eq and p < 0.01 and verdict(p, far.diff, 0, 5, eq) == CONTRADICTED
    vague = paired([90.0, 92.0, 88.0, 91.0, 89.0], [90.0, 90.0, 90.0, 90.0, 90.0])
    p, eq = equivalence_p(vague, margin=1.0)
    assert verdict(p, vague.diff, 0, 5, eq) == INCONCLUSIVE


def test_holm_by_hand_and_by_its_definition():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])  # 4p, 3p, max(2p, 0.09), p
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []
    rng = random.Random(3)
    for _ in range(200):  # reject H_i at alpha iff every smaller-or-equal p_(k) <= alpha / (m - k + 1)
        ps = [rng.random() ** 3 for _ in range(rng.randint(1, 12))]
        adj, order, alpha = holm(ps), sorted(range(len(ps)), key=lambda i: ps[i]), 0.05
        rejected, go = set(), True
        for k, i in enumerate(order):
            go = go and ps[i] <= alpha / (len(ps) - k)
            if go:
                rejected.add(i)
        assert {i for i, a in enumerate(adj) if a <= alpha} == rejected
        assert all(a >= p for a, p in zip(adj, ps))


def test_detectable_difference_has_the_stated_power():
    t = paired([1.0, 2.0, 1.5, 0.5, 1.2, 0.8], [0.0] * 6)
    det = detectable(t, alpha=0.05 / 4, power=0.8)
    assert det == pytest.approx((t_ppf(1 - 0.05 / 8, 5) + t_ppf(0.8, 5)) * t.se)
    scipy_stats = pytest.importorskip("scipy.stats")
    crit = t_ppf(1 - 0.05 / 8, 5)  # the exact power at that difference (noncentral t) is close to 80 %
    nc = det / t.se
    power = scipy_stats.nct.sf(crit, 5, nc) + scipy_stats.nct.cdf(-crit, 5, nc)
    assert 0.75 < power < 0.85


def test_verdicts_come_from_the_adjusted_p():
    assert verdict(0.01, +1.2, +1, 5) == SUPPORTED
    assert verdict(0.01, -1.2, +1, 5) == CONTRADICTED
    assert verdict(0.06, +1.2, +1, 5) == INCONCLUSIVE  # raw p might be 0.02: the adjusted one decides
    assert verdict(0.01, +1.2, +1, 4).startswith("no verdict")
    assert verdict(None, 0.0, +1, 5).startswith("no verdict")


def test_one_sided_tail():
    assert t_sf(0.0, 5) == pytest.approx(0.5)
    assert t_sf(2.0, 10) + t_sf(-2.0, 10) == pytest.approx(1.0)
    assert t_sf(2.0, 10) == pytest.approx(t_sf2(2.0, 10) / 2)
    assert study.stats.Welch is study.stats.TTest  # the old name still works
