"""The column layout that every sknap step shares.

:class:`~sknap.ActivationExtractor` writes one row per sample::

    [activations of block 1 | ... | activations of block L | class probabilities]

The last ``n_classes`` columns are the backbone's softmax output, named
``proba_<class>``; every other column is one neuron, named
``<block>__<unit>``. Downstream steps find the probability block by, in order:
their ``n_classes`` parameter when it is an int, the input's feature names
(``proba_`` prefix) when it came as a DataFrame, or the number of classes in
``y``.
"""

import warnings
from numbers import Integral

import numpy as np

from .exceptions import LayoutWarning

PROBA_PREFIX = "proba_"
UNIT_SEPARATOR = "__"


def resolve_n_classes(estimator, n_features, y=None):
    """Number of trailing probability columns in the input of ``estimator``.

    Called from ``fit`` after ``validate_data`` so that ``feature_names_in_``
    is set when the input carried names.
    """
    name = type(estimator).__name__
    n_classes = estimator.n_classes
    if isinstance(n_classes, Integral) and not isinstance(n_classes, bool):
        n_proba = int(n_classes)
    elif getattr(estimator, "feature_names_in_", None) is not None and any(
        str(f).startswith(PROBA_PREFIX) for f in estimator.feature_names_in_
    ):
        n_proba = 0
        for feature in estimator.feature_names_in_[::-1]:
            if not str(feature).startswith(PROBA_PREFIX):
                break
            n_proba += 1
    elif y is not None:
        n_proba = len(np.unique(y))
    else:
        raise ValueError(
            f"{name} cannot tell how many of the last columns of X are class "
            "probabilities: n_classes='auto' needs y, or feature names with the "
            f"'{PROBA_PREFIX}' prefix. Pass y to fit, set n_classes to the number "
            "of backbone outputs (0 when X holds activations only), or call "
            "set_output(transform='pandas') on the ActivationExtractor."
        )
    if n_proba >= n_features and not (n_proba == 0 and n_features == 0):
        raise ValueError(
            f"{name} takes the last {n_proba} columns of X as class probabilities, "
            f"but X has only {n_features} columns, which leaves no activation. "
            "X should be laid out as ActivationExtractor writes it: activations, "
            "then one probability column per class. Set n_classes to the number "
            "of backbone outputs."
        )
    return n_proba


def check_probability_block(estimator, proba, atol=1e-3):
    """Warn when ``proba`` (n_samples, n_classes) does not look like softmax."""
    if proba.shape[1] == 0 or proba.shape[0] == 0:
        return
    sums = proba.sum(axis=1, dtype=np.float64)
    if np.all(np.abs(sums - 1.0) <= atol) and proba.min() >= -atol:
        return
    warnings.warn(
        f"{type(estimator).__name__} takes the last {proba.shape[1]} columns of X "
        "as the backbone's class probabilities, but their rows sum to values in "
        f"[{sums.min():.4g}, {sums.max():.4g}] instead of 1. Check that X comes "
        "from ActivationExtractor and that n_classes equals the number of "
        "backbone outputs.",
        LayoutWarning,
        stacklevel=3,
    )


def layer_of(feature_name):
    """Block name of an activation column, ``'fc1'`` for ``'fc1__7'``."""
    return str(feature_name).rsplit(UNIT_SEPARATOR, 1)[0]
