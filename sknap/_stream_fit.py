"""Fitting the estimators from the statistics of the counting engine.

Every fit of :class:`~sknap.ActivationEntropy` and
:class:`~sknap.ActivationProbabilityFeatures` goes through here: an iterable
of batches or :class:`~sknap.streaming.NeuronStatistics` (streamed), or an
array, counted as one batch (:func:`statistics_of`). The fitted attributes
come from the counts alone, by one implementation for every path.
"""

import warnings

import numpy as np

from . import _binned, _engine
from ._engine_sources import ActivationBatches, two_passes
from ._inputs import LABELS_RULE
from ._layout import fixed_n_classes, resolve_n_classes, trailing_proba_columns
from .exceptions import EmptyClassWarning
from .streaming import NeuronStatistics

__all__ = [
    "entropy_from_statistics",
    "fit_entropy",
    "fit_probabilities",
    "probabilities_from_statistics",
    "probability_from_counts",
    "statistics_of",
]


def statistics_of(X, y=None, n_bins=None, binning="right", per_class=True):
    """Statistics of an in-memory matrix counted as one batch: the first pass,
    and the second when ``n_bins`` is given."""
    stats = NeuronStatistics().update(X, y)
    if n_bins is None:
        return stats
    second = stats.begin_histograms(n_bins, binning=binning, per_class=per_class)
    return second.update(X, y)


def _columns_of(estimator, stats):
    """(n_neurons, n_proba): activation and probability columns of ``stats``."""
    n_columns = stats.n_neurons_
    names = stats.feature_names
    if fixed_n_classes(estimator) is None and names is not None:
        trailing = trailing_proba_columns(names)
        if trailing:
            return n_columns - trailing, trailing
    n_proba = resolve_n_classes(estimator, n_columns, stats.classes_)
    return n_columns - n_proba, n_proba


def _reset(estimator, stats):
    """Forget the column names of an earlier fit; set ``n_features_in_``.

    Called before :func:`_columns_of`, which must not read the names of an
    earlier in-memory fit.
    """
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    estimator.n_features_in_ = stats.n_neurons_


def _carried(X, y):
    """Whether ``y`` is the labels the batches ``X`` already carry (a
    pipeline passes both), not other ones."""
    carried = getattr(X, "y", None)
    if carried is None:
        return False
    return carried is y or np.array_equal(np.asarray(carried), np.asarray(y))


def _statistics(estimator, X, y, n_bins=None, binning="right", per_class=True):
    if y is not None and not _carried(X, y):
        raise ValueError(
            f"{type(estimator).__name__}.fit got an iterable of batches and y; the "
            "labels must come with the batches: yield (activations, labels) pairs "
            "(ActivationExtractor.batches(X, y) does)."
        )
    # The fits read the activation columns only: an extractor's probability
    # columns (its softmax, a few percent of a small network's forward pass)
    # need not be computed when they are laid out as such.
    fixed = fixed_n_classes(estimator)
    probabilities = not isinstance(X, ActivationBatches) or fixed not in (
        None,
        X.extractor.n_outputs_,
    )
    if isinstance(X, NeuronStatistics):
        stats = X
    elif n_bins is not None:
        what = f"{type(estimator).__name__}.fit"
        stats = two_passes(X, what, n_bins, binning, per_class, probabilities)
    else:
        stats = NeuronStatistics()._update_all(X, probabilities)
    if stats.class_max_ is None:
        raise ValueError(
            f"{type(estimator).__name__}.fit got no batch: there is nothing to fit."
        )
    return stats


def fit_entropy(estimator, X, y=None):
    """Fit an :class:`~sknap.ActivationEntropy` from statistics or batches."""
    stats = _statistics(
        estimator, X, y, estimator.n_bins, estimator.binning, estimator.per_class
    )
    if not stats.second_pass:
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
    _reset(estimator, stats)
    n, n_proba = _columns_of(estimator, stats)
    estimator.n_classes_in_ = n_proba
    return entropy_from_statistics(estimator, stats, n, stacklevel=5)


def entropy_from_statistics(estimator, stats, n, stacklevel=4):
    """Set the fitted attributes of an ActivationEntropy from second-pass
    statistics whose first ``n`` columns are the activations.

    The global histogram is the sum over classes of the per-class counts; the
    per-class entropy is their slice, on the neurons' shared edges.
    """
    stats._check_same_samples()
    estimator.n_neurons_in_ = n
    counts = stats.counts_[:, :n, 1:].cpu()  # (classes, neurons, bins)
    entropies = _engine.entropy_from_counts(counts.sum(dim=0), estimator.base)
    maxima = stats.max_[:n].cpu()
    edges = stats.bin_edges_[:n].cpu()
    estimator._store_entropy(entropies, maxima, edges, stacklevel=stacklevel)
    if stats.per_class and estimator.per_class:
        estimator.classes_ = stats.classes_
        estimator.class_neuron_entropy_ = _engine.entropy_from_counts(
            counts, estimator.base
        )
        estimator.class_entropy_ = estimator.class_neuron_entropy_.sum(axis=1)
    estimator.selected_neurons_ = estimator._select()
    return estimator


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


def fit_probabilities(estimator, X, y=None):
    """Fit an :class:`~sknap.ActivationProbabilityFeatures` from statistics or
    batches (one pass; two for binned states)."""
    stats = _statistics(estimator, X, y, estimator.n_bins)
    if not stats._labelled:
        raise ValueError(
            "ActivationProbabilityFeatures needs class labels: yield "
            "(activations, labels) pairs, e.g. ActivationExtractor.batches(X, y). "
            + LABELS_RULE
        )
    R = estimator.n_bins
    if R is not None and (
        stats.n_bins != R or stats.binning != "right" or not stats.per_class
    ):
        if not stats.second_pass:
            raise ValueError(
                f"ActivationProbabilityFeatures(n_bins={R}) needs second-pass "
                "statistics (counts in each binned state); got first-pass ones. "
                f"Call begin_histograms({R}) on them and update the result with "
                "the batches again, or use compute_statistics(batches, "
                f"n_bins={R})."
            )
        raise ValueError(
            f"The statistics were counted with n_bins={stats.n_bins}, "
            f"binning={stats.binning!r}, per_class={stats.per_class}, but "
            f"ActivationProbabilityFeatures has n_bins={R}. Count them with "
            f"begin_histograms({R}, binning='right', per_class=True), or set "
            f"n_bins={stats.n_bins}."
        )
    _reset(estimator, stats)
    n, _ = _columns_of(estimator, stats)
    return probabilities_from_statistics(estimator, stats, n, stacklevel=5)


def probabilities_from_statistics(estimator, stats, n, stacklevel=4):
    """Set the fitted attributes of an ActivationProbabilityFeatures from
    labelled statistics whose first ``n`` columns are the activations.

    ``P`` from the first pass's counts of values > 0; with ``n_bins``, the
    binned ``P[c, j, r]`` from the second pass's counts in each state, on
    the neurons' shared edges (``counts_``).
    """
    estimator.n_neurons_in_ = n
    classes, rows = estimator._encode(stats.classes_)
    class_count = np.zeros(len(classes), dtype=np.int64)
    active = np.zeros((len(classes), n), dtype=np.int64)
    class_count[rows] = stats.class_count_.cpu().numpy()
    active[rows] = stats.active_count_[:, :n].cpu().numpy()
    estimator.classes_ = classes
    estimator.class_count_ = class_count
    warn_empty_classes(classes, class_count, stacklevel=stacklevel)
    estimator.activation_probability_ = probability_from_counts(
        active, class_count, estimator.alpha
    )
    if estimator.n_bins is not None:
        stats._check_same_samples()
        counts = np.zeros((len(classes), n, estimator.n_bins + 1), dtype=np.int64)
        counts[rows] = stats.counts_[:, :n].cpu().numpy()
        estimator.state_count_ = counts
        estimator.state_probability_ = _binned.state_probability(
            counts, class_count, estimator.alpha
        )
        estimator.bin_edges_ = stats.bin_edges_[:n].cpu().numpy()
    return estimator
