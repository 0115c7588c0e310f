"""Issue 25 (7): the study's 95 % confidence interval, checked on its own (not only through the golden report):
Student t quantiles against a printed table, Welch's interval on samples whose answer is known by hand, and both
against scipy (a test dependency: requirements/dev.txt)."""
import math

import pytest

from armvision.experiments.study.stats import t_ppf, welch

# two-sided 95 % critical values t(0.975, df), as printed in every t table
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 8: 2.3060, 10: 2.2281, 20: 2.0860, 30: 2.0423,
        120: 1.9799}


@pytest.mark.parametrize("df,value", sorted(T975.items()))
def test_t_quantiles_match_the_table(df, value):
    assert t_ppf(0.975, df) == pytest.approx(value, abs=1e-4)


def test_the_interval_is_95_percent_by_default():
    # a = 1..5, b = 2..6: difference -1, each variance 2.5, standard error 1, Welch df = 8 exactly
    w = welch([1, 2, 3, 4, 5], [2, 3, 4, 5, 6])
    assert (w.diff, w.df) == (-1.0, pytest.approx(8.0))
    assert (w.ci_low, w.ci_high) == (pytest.approx(-1 - 2.306004, abs=1e-5), pytest.approx(-1 + 2.306004, abs=1e-5))
    w90 = welch([1, 2, 3, 4, 5], [2, 3, 4, 5, 6], level=0.90)  # t(0.95, 8) = 1.8595: a narrower interval
    assert w90.ci_high == pytest.approx(-1 + 1.859548, abs=1e-5)
    assert w.p == pytest.approx(0.3465935, abs=1e-6)  # two-sided p of t = -1 with 8 degrees of freedom


def test_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1.5, 3, 7.3, 25, 400):
        assert t_ppf(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-9)
    a, b = [71.2, 69.8, 72.5, 70.1, 73.0], [68.9, 70.3, 67.5, 69.0, 68.1, 66.7]
    w, ref = welch(a, b), scipy_stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (w.ci_low, w.ci_high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    assert w.p == pytest.approx(ref.pvalue, rel=1e-9) and w.t == pytest.approx(ref.statistic, rel=1e-12)
    assert not math.isclose(w.ci_low, ref.confidence_interval(0.90).low)
