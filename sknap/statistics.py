"""Statistics of results: correlations, accuracies, intervals and paired tests.

The training monitor and the paper's reproduction both use these. The
interval and the test are scipy's (:func:`scipy.stats.bootstrap`,
:func:`scipy.stats.wilcoxon`), wrapped so that degenerate inputs (every
difference equal, too few pairs) give a plain answer instead of a warning.
"""

import math
import warnings

import numpy as np
from scipy import stats

__all__ = ["backbone_accuracy", "bootstrap_interval", "correlation", "paired_test"]


def correlation(x, y):
    """Pearson and Spearman correlation of two series, NaN where undefined.

    Undefined means fewer than 3 points or a constant series (scipy would warn
    and return NaN itself).

    Parameters
    ----------
    x, y : array-like of shape (n,)
        The two series, for instance entropy and accuracy per checkpoint.

    Returns
    -------
    pearson, spearman : float
        The coefficients, NaN where undefined.

    Examples
    --------
    >>> correlation([3.0, 2.0, 1.0], [0.1, 0.2, 0.4])
    (-0.981..., -1.0)
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        pearson = float(stats.pearsonr(x, y)[0])
        spearman = float(stats.spearmanr(x, y)[0])
    return pearson, spearman


def backbone_accuracy(Z, y, n_classes):
    """Accuracy of the backbone, from the probability columns that end ``Z``.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_neurons + n_classes)
        Rows of :meth:`~sknap.ActivationExtractor.transform`.
    y : array-like of shape (n_samples,)
        Labels, as output indices ``0 .. n_classes - 1``.
    n_classes : int
        Number of probability columns.

    Returns
    -------
    accuracy : float
        Fraction of rows whose largest probability is at the label.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[5.0, 0.9, 0.1], [7.0, 0.2, 0.8]])
    >>> backbone_accuracy(Z, [0, 0], n_classes=2)
    0.5
    """
    return float(np.mean(np.asarray(Z)[:, -n_classes:].argmax(1) == np.asarray(y)))


def bootstrap_interval(
    values,
    *,
    confidence_level=0.95,
    n_resamples=9999,
    method="percentile",
    random_state=0,
):
    """Bootstrap interval of the mean of ``values``.

    The values are resampled with replacement (:func:`scipy.stats.bootstrap`).
    For the gain of one classifier over another on the same test images, pass
    the per-image differences of correctness (1, 0 or -1, or their mean over
    checkpoints and seeds): resampling them resamples the test images, paired
    across both classifiers.

    Parameters
    ----------
    values : array-like of shape (n,)
        The sample; its mean is the statistic.
    confidence_level : float, default=0.95
        Coverage of the interval.
    n_resamples : int, default=9999
        Bootstrap resamples.
    method : {"percentile", "basic", "BCa"}, default="percentile"
        scipy's interval method. The percentile interval is the default as it
        stays defined when nearly every difference is 0 (BCa's acceleration
        is then undefined).
    random_state : int, default=0
        Seed of the resampling.

    Returns
    -------
    low, high : float
        The interval's ends; both the mean when every value is the same (the
        resamples cannot differ), NaN for an empty sample.

    See Also
    --------
    paired_test : A one-sided test of the same differences.

    Examples
    --------
    >>> bootstrap_interval([0.0, 0.0, 1.0], confidence_level=0.9)
    (0.0, 0.666...)
    >>> bootstrap_interval([1.0, 1.0])
    (1.0, 1.0)
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        return math.nan, math.nan
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    res = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        method=method,
        # random_state: every scipy from 1.10 takes it (rng came in 1.15).
        random_state=np.random.default_rng(random_state),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_test(base, proposed):
    """One-sided Wilcoxon signed-rank test that ``proposed`` exceeds ``base``.

    Pairs whose difference is 0 are dropped (``zero_method="wilcox"``), as a
    tie says nothing about which is larger; the p-value is exact for up to
    50 remaining pairs without tied ranks, and from the normal approximation
    otherwise (scipy's choice).

    Parameters
    ----------
    base, proposed : array-like of shape (n,)
        Paired measurements, for instance the backbone's and the auxiliary
        model's test accuracy at each checkpoint of each seed.

    Returns
    -------
    result : dict
        ``statistic`` (sum of the ranks of the positive differences),
        ``pvalue``, ``n`` (pairs) and ``n_nonzero`` (pairs that are not
        ties). ``statistic`` and ``pvalue`` are NaN when no pair differs.

    See Also
    --------
    bootstrap_interval : An interval for the mean difference.

    Examples
    --------
    Five pairs, every difference positive: the exact one-sided p-value is
    ``1 / 2**5``.

    >>> paired_test([0.5, 0.6, 0.7, 0.8, 0.9], [0.6, 0.8, 1.0, 1.2, 1.4])
    {'statistic': 15.0, 'pvalue': 0.03125, 'n': 5, 'n_nonzero': 5}
    """
    diff = np.asarray(proposed, dtype=float) - np.asarray(base, dtype=float)
    n_nonzero = int(np.count_nonzero(diff))
    out = {"statistic": math.nan, "pvalue": math.nan}
    if n_nonzero:
        # Zeros dropped here, not by scipy: scipy before 1.13 would then
        # leave the exact distribution for the normal approximation.
        res = stats.wilcoxon(diff[diff != 0], alternative="greater")
        out = {"statistic": float(res.statistic), "pvalue": float(res.pvalue)}
    return {**out, "n": int(diff.size), "n_nonzero": n_nonzero}
