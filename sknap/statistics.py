"""Statistics of results: correlations and accuracies over checkpoints.

The training monitor and the paper's reproduction both use these.
"""

import math
import warnings

import numpy as np
from scipy import stats

__all__ = ["backbone_accuracy", "correlation"]


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
