"""Statistics for the fits of the estimators, from any input.

Every fit of :class:`~sknap.ActivationEntropy` and
:class:`~sknap.ActivationProbabilityFeatures` sets its fitted attributes
from statistics of the counting engine, by one implementation for every
path: an iterable of batches or statistics of :mod:`sknap.streaming`
(:func:`streamed_statistics`, checked by :func:`entropy_statistics` and
:func:`probability_statistics`), or an array counted as one batch
(:func:`statistics_of`). The rest are functions of arrays.
"""

import warnings

import numpy as np

from . import _engine
from ._counting import CountingPass
from ._engine_sources import ActivationBatches, two_passes
from ._inputs import LABELS_RULE
from ._layout import (
    fixed_n_outputs,
    given_layout,
    resolve_n_outputs,
    trailing_proba_columns,
)
from .exceptions import EmptyClassWarning
from .streaming import HistogramStatistics, NeuronStatistics

__all__ = [
    "activation_columns",
    "entropy_statistics",
    "probability_from_counts",
    "probability_statistics",
    "statistics_of",
    "stream_layout",
    "streamed_fit",
    "streamed_statistics",
    "warn_empty_classes",
]


def statistics_of(X, y=None, n_bins=None, binning="right", per_class=True):
    """Statistics of an in-memory matrix counted as one batch: the first pass,
    and the second when ``n_bins`` is given, with the labels validated and
    looked up once for both (the block protocol of the statistics)."""
    A = _engine.check_batch(X, None)
    first = NeuronStatistics()
    rows = first.start_batch(y, A.shape[0], A.shape[1], A.device)
    if not first.count_block(A, rows):
        raise ValueError(_engine.NONFINITE_BATCH)
    first.end_batch(rows)
    if n_bins is None:
        return first
    second = first.begin_histograms(n_bins, binning=binning, per_class=per_class)
    second.count_block(A, rows)
    second.end_batch(rows)
    return second


def stream_layout(estimator, X, layout):
    """The layout given to ``estimator.fit`` (see ``given_layout``); without
    one, for the batches of an ActivationExtractor and ``n_outputs="auto"``,
    the extractor's (an int ``n_outputs`` wins over it, as over names)."""
    layout = given_layout(estimator, layout)
    auto = fixed_n_outputs(estimator) is None
    if layout is None and auto and isinstance(X, ActivationBatches):
        return X.extractor.layout_
    return layout


def activation_columns(estimator, stats, layout=None):
    """(n_neurons, n_proba): activation and probability columns of ``stats``.

    From ``layout`` when given; else from the statistics' column names, else
    from ``estimator.n_outputs`` or the classes. The estimator must have
    forgotten the column names of an earlier in-memory fit
    (``feature_names_in_``), which would decide here.
    """
    n_columns = stats.n_neurons_
    names = stats.feature_names
    if layout is None and fixed_n_outputs(estimator) is None and names is not None:
        trailing = trailing_proba_columns(names)
        if trailing:
            return n_columns - trailing, trailing
    n_proba = resolve_n_outputs(estimator, n_columns, stats.classes_, layout)
    return n_columns - n_proba, n_proba


def _carried(X, y):
    """Whether ``y`` is the labels the batches ``X`` already carry (a
    pipeline passes both), not other ones."""
    carried = getattr(X, "y", None)
    if carried is None:
        return False
    return carried is y or np.array_equal(np.asarray(carried), np.asarray(y))


def streamed_statistics(
    estimator, X, y, n_bins=None, binning="right", per_class=True, layout=None
):
    """Statistics of a streamed ``X`` for ``estimator.fit``: ``X`` itself
    when it is statistics, else those of its batches (two passes with
    ``n_bins``, one without). ``layout`` is ``stream_layout``'s."""
    if y is not None and not _carried(X, y):
        raise ValueError(
            f"{type(estimator).__name__}.fit got an iterable of batches and y; the "
            "labels must come with the batches: yield (activations, labels) pairs "
            "(ActivationExtractor.batches(X, y) does)."
        )
    # The fits read the activation columns only: an extractor's probability
    # columns (its softmax, a few percent of a small network's forward pass)
    # need not be computed when they are laid out as such.
    n_proba = fixed_n_outputs(estimator) if layout is None else layout.n_outputs
    probabilities = not isinstance(X, ActivationBatches) or n_proba not in (
        None,
        X.extractor.n_outputs_,
    )
    if isinstance(X, CountingPass):
        stats = X
    elif n_bins is not None:
        what = f"{type(estimator).__name__}.fit"
        stats = two_passes(X, what, n_bins, binning, per_class, probabilities)
    else:
        stats = NeuronStatistics().update_from(X, probabilities=probabilities)
    if stats.class_max_ is None or stats.n_samples_ == 0:
        raise ValueError(
            f"{type(estimator).__name__}.fit got no sample (no batch, or only "
            "empty ones): there is nothing to fit."
        )
    return stats


def entropy_statistics(estimator, X, y=None, layout=None):
    """Second-pass statistics of a streamed ``X`` for
    :class:`~sknap.ActivationEntropy` ``estimator``, with its bins."""
    stats = streamed_statistics(
        estimator,
        X,
        y,
        estimator.n_bins,
        estimator.binning,
        estimator.per_class,
        layout,
    )
    if not isinstance(stats, HistogramStatistics):
        raise ValueError(
            "ActivationEntropy needs second-pass statistics (histograms): call "
            "begin_histograms(n_bins) on the first-pass statistics and update the "
            "result with the batches again, or use compute_statistics."
        )
    if stats.n_bins != estimator.n_bins or stats.binning != estimator.binning:
        raise ValueError(
            f"The statistics were counted with n_bins={stats.n_bins}, "
            f"binning={stats.binning!r}, but the estimator has "
            f"n_bins={estimator.n_bins}, binning={estimator.binning!r}. Use the "
            "same values in begin_histograms and in ActivationEntropy."
        )
    return stats


def probability_statistics(estimator, X, y=None, layout=None):
    """Labelled statistics of a streamed ``X`` for
    :class:`~sknap.ActivationProbabilityFeatures` ``estimator``: one pass,
    two for binned states."""
    stats = streamed_statistics(estimator, X, y, estimator.n_bins, layout=layout)
    if stats.classes_ is None:
        raise ValueError(
            "ActivationProbabilityFeatures needs class labels: yield "
            "(activations, labels) pairs, e.g. ActivationExtractor.batches(X, y). "
            + LABELS_RULE
        )
    R = estimator.n_bins
    if R is None:
        return stats
    if not isinstance(stats, HistogramStatistics):
        raise ValueError(
            f"ActivationProbabilityFeatures(n_bins={R}) needs second-pass "
            "statistics (counts in each binned state); got first-pass ones. "
            f"Call begin_histograms({R}) on them and update the result with "
            "the batches again, or use compute_statistics(batches, "
            f"n_bins={R})."
        )
    if stats.n_bins != R or stats.binning != "right" or not stats.per_class:
        raise ValueError(
            f"The statistics were counted with n_bins={stats.n_bins}, "
            f"binning={stats.binning!r}, per_class={stats.per_class}, but "
            f"ActivationProbabilityFeatures has n_bins={R}. Count them with "
            f"begin_histograms({R}, binning='right', per_class=True), or set "
            f"n_bins={stats.n_bins}."
        )
    return stats


def streamed_fit(estimator, X, y, layout, statistics):
    """``(stats, n_neurons, n_outputs)`` of a streamed fit of ``estimator``,
    with ``statistics`` (:func:`entropy_statistics` or
    :func:`probability_statistics`); sets ``n_features_in_`` and forgets the
    column names of an earlier fit (batches have none)."""
    layout = stream_layout(estimator, X, layout)
    stats = statistics(estimator, X, y, layout)
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    estimator.n_features_in_ = stats.n_neurons_
    n, n_outputs = activation_columns(estimator, stats, layout)
    return stats, n, n_outputs


def warn_empty_classes(classes, class_count, stacklevel=2):
    """EmptyClassWarning naming the classes without a training sample."""
    if (class_count == 0).any():
        missing = classes[class_count == 0].tolist()
        warnings.warn(
            f"Classes {missing} have no training sample, so their activation "
            "probabilities are 0 (or alpha-smoothed) and Y_proposed never "
            "favours them. Set alpha > 0 or add samples of those classes.",
            EmptyClassWarning,
            stacklevel=stacklevel + 1,
        )


def probability_from_counts(active, class_count, alpha=0.0):
    """``P = (active + alpha) / (n_c + 2 alpha)``, 0 where that divides by 0.

    The same arithmetic as ``sknap._probabilities.activation_probability``, from counts.
    """
    active = np.asarray(active, dtype=np.float64)
    denominator = np.asarray(class_count, dtype=np.float64)[:, None] + 2.0 * alpha
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (active + alpha) / denominator, 0.0)
