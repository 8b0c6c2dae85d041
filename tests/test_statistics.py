"""Intervals and paired tests of sknap.statistics, against independent values."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from sknap.statistics import bootstrap_interval, paired_test


def test_percentile_interval_by_hand():
    # Resampling [0, 0, 1] gives a mean of k/3, k ~ Binomial(3, 1/3):
    # P(0) = 8/27, P(1/3) = 12/27, P(2/3) = 6/27, P(1) = 1/27. The 5 % quantile
    # is 0 (8/27 > 0.05); the 95 % quantile is 2/3, since P(<= 1/3) = 20/27 <
    # 0.95 <= P(<= 2/3) = 26/27 (margins far beyond the resampling noise).
    low, high = bootstrap_interval(
        [0.0, 0.0, 1.0], confidence_level=0.9, n_resamples=20000
    )
    assert_allclose([low, high], [0.0, 2 / 3])


def test_percentile_interval_matches_scipy_and_normal_theory(rng):
    values = rng.choice([-1.0, 0.0, 1.0], p=[0.1, 0.7, 0.2], size=2000)
    low, high = bootstrap_interval(values, random_state=3)
    ref = stats.bootstrap(
        (values,), np.mean, method="percentile", random_state=np.random.default_rng(3)
    ).confidence_interval
    assert_allclose([low, high], [ref.low, ref.high])
    # For a mean of 2,000 values the interval is close to mean +- 1.96 SE;
    # the tolerance covers the bootstrap's Monte Carlo noise.
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert_allclose(
        [low, high], values.mean() + np.array([-1.96, 1.96]) * se, atol=0.004
    )


def test_interval_of_constant_values_is_the_value():
    assert bootstrap_interval([0.0] * 10) == (0.0, 0.0)
    assert all(math.isnan(v) for v in bootstrap_interval([]))


def test_paired_test_exact_by_hand():
    # Differences 1, 2, 3, -4 and one tie, which is dropped: W+ = 1 + 2 + 3 = 6.
    # Under H0 each of the 2**4 sign patterns of the ranks 1..4 is equally
    # likely; the exact one-sided p-value is the share with W+ >= 6.
    diffs = np.array([1.0, 2.0, 3.0, -4.0])
    ranks = np.array([1, 2, 3, 4])
    signs = np.array(np.meshgrid(*[[0, 1]] * 4)).reshape(4, -1).T
    expected = np.mean(signs @ ranks >= 6)
    result = paired_test([0.0] * 5, [*diffs, 0.0])
    assert result["statistic"] == 6.0 and result["n"] == 5 and result["n_nonzero"] == 4
    assert_allclose(result["pvalue"], expected)


def test_paired_test_matches_scipy(rng):
    base = rng.uniform(size=30)
    proposed = base + rng.normal(0.01, 0.02, size=30)
    ref = stats.wilcoxon(proposed - base, alternative="greater")
    result = paired_test(base, proposed)
    assert_allclose(
        [result["statistic"], result["pvalue"]], [ref.statistic, ref.pvalue]
    )


def test_paired_test_without_differences():
    result = paired_test([0.5, 0.6], [0.5, 0.6])
    assert math.isnan(result["pvalue"]) and result["n_nonzero"] == 0


@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_interval_methods_contain_the_mean(rng, method):
    values = rng.normal(size=200)
    low, high = bootstrap_interval(values, method=method, n_resamples=2000)
    assert low < values.mean() < high
