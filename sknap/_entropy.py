"""Activation-pattern entropy (Section 5.1 of the paper; docs/definitions.md)."""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    assert_all_finite,
    check_is_fitted,
    validate_data,
)

from . import _engine, _histogram, _stream_fit, streaming
from ._counting import CountingPass
from ._engine_sources import ColumnBatches
from ._layout import (
    check_probability_block,
    given_layout,
    layer_of,
    resolve_n_outputs,
)
from .exceptions import DeadNeuronWarning

__all__ = ["ActivationEntropy", "activation_entropy"]


def activation_entropy(A, n_bins=10, *, base=2, binning="right", per_neuron=False):
    """Activation-pattern entropy of one activation matrix.

    For each column (neuron) of ``A``, its strictly positive values are
    counted in ``n_bins`` equal bins over ``(0, max]`` and the Shannon entropy
    of the histogram is taken; a neuron without positive value counts 0.

    Parameters
    ----------
    A : array-like or Tensor of shape (n_samples, n_neurons)
        Activations, for instance ReLU outputs.
    n_bins : int, default=10
        Number of equal-width bins ``R``.
    base : float, default=2
        Base of the logarithm.
    binning : {"right", "reference"}, default="right"
        ``"right"``: right-closed bins, the maximum in the last bin.
        ``"reference"``: the authors' code, open bins that drop values lying on
        an edge (see :class:`ActivationEntropy`).
    per_neuron : bool, default=False
        Return the entropy of every neuron instead of their sum.

    Returns
    -------
    entropy : float or ndarray of shape (n_neurons,)
        Total entropy ``E = sum_j E_j``, or the ``E_j`` when ``per_neuron``.

    See Also
    --------
    ActivationEntropy : The same as an estimator, with per-class entropy, stored
        bin edges and neuron selection.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import activation_entropy
    >>> A = np.array([[0.0, 1.0], [0.5, 2.0], [1.0, 3.0], [1.0, 4.0]])
    >>> activation_entropy(A, n_bins=2, per_neuron=True)
    array([0.918..., 1.   ])
    """
    est = ActivationEntropy(n_bins=n_bins, base=base, binning=binning, n_outputs=0)
    est._validate_params()
    if isinstance(A, torch.Tensor):
        A = A.detach().cpu().numpy()
    # NaN and infinity are looked for in the pass that finds the maxima.
    A = validate_data(
        est, A, dtype=[np.float64, np.float32], reset=True, ensure_all_finite=False
    )
    stats = _stream_fit.statistics_of(A, None, n_bins, binning)
    entropies = _engine.entropy_from_counts(stats.hist_, base)
    return entropies if per_neuron else float(entropies.sum())


class ActivationEntropy(TransformerMixin, BaseEstimator):
    """Entropy of each neuron's activation histogram, and selection by it.

    ``fit`` learns, for every neuron ``j``, its largest positive activation
    ``m_j`` and cuts ``(0, m_j]`` into ``n_bins`` equal right-closed bins
    ``(k m_j / R, (k + 1) m_j / R]``. Only strictly positive values are counted:
    zeros are the inactive state, which would otherwise dominate. The
    histogram ``h`` is normalised and ``E_j = -sum h log_b h`` (``0 log 0 = 0``).
    A dead neuron (no positive value) has ``E_j = 0`` and is reported in
    ``dead_neurons_``. The model's entropy is ``E = sum_j E_j``.

    Input follows the layout of :class:`ActivationExtractor`: activation
    columns, then ``n_outputs`` probability columns (the backbone's outputs),
    which ``transform`` passes through untouched.

    Parameters
    ----------
    n_bins : int, default=10
        Number of bins ``R`` (the authors' code uses 10; the paper gives none).
    base : float, default=2
        Base of the logarithm (the authors' code uses 2).
    binning : {"right", "reference"}, default="right"
        ``"right"`` is the definition above. ``"reference"`` is a compatibility
        mode that reproduces the authors' code: open bins
        ``(k w, (k + 1) w)`` with ``w = m_j / R`` in floating point, so a value
        that falls exactly on an edge, often the maximum itself, is counted
        nowhere.
    n_neurons : int, float or None, default=None
        How many activation columns ``transform`` keeps: the ones with the
        lowest entropy (the most predictable), dead neurons last, ties by
        position. An int is a count, a float in (0, 1] a fraction of the
        neurons, None keeps all. Since the ranking depends on ``n_bins``, this
        is how the bin count changes what later steps see.
    n_outputs : "auto" or int, default="auto"
        Number of the backbone's outputs: the last ``n_outputs`` columns of X
        are its class probabilities; 0 when X holds activations only.
        ``"auto"``: from the ``layout`` given to :meth:`fit` (as
        :func:`make_nap_pipeline` and batches of an extractor do), else from
        feature names with the ``proba_`` prefix, else the number of classes
        in ``y``.
    per_class : bool, default=True
        Also compute the entropy within each class when ``y`` is given, on
        each neuron's shared edges (from its maximum over all samples), so
        that the per-class histograms sum to the global one.

    Attributes
    ----------
    entropy_ : float
        Total entropy ``E`` over all neurons.
    normalized_entropy_ : float
        ``E / (n_neurons * log_base(n_bins))``, in [0, 1].
    neuron_entropy_ : ndarray of shape (n_neurons,)
        ``E_j`` of every neuron.
    neuron_max_ : ndarray of shape (n_neurons,)
        Largest positive activation of every neuron (0 when dead).
    bin_edges_ : ndarray of shape (n_neurons, n_bins + 1)
        Edges used by :meth:`histograms` and :meth:`entropy_of` on new data.
    dead_neurons_ : ndarray of shape (n_neurons,), dtype=bool
        Neurons without any positive activation.
    n_dead_neurons_ : int
        Number of dead neurons.
    classes_ : ndarray of shape (n_classes,)
        Class labels, when ``y`` was given.
    class_neuron_entropy_ : ndarray of shape (n_classes, n_neurons)
        ``E_j`` within each class (``per_class=True`` and ``y`` given).
    class_entropy_ : ndarray of shape (n_classes,)
        Total entropy within each class.
    selected_neurons_ : ndarray of shape (n_selected,)
        Indices of the activation columns ``transform`` keeps, ascending.
    n_neurons_in_ : int
        Number of activation columns.
    n_outputs_in_ : int
        Number of probability columns passed through.
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names, when ``X`` had them.

    See Also
    --------
    activation_entropy : One-off entropy of an array.
    ActivationExtractor : Produces the input of this step.
    ActivationProbabilityFeatures : The step that usually follows.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import ActivationEntropy
    >>> A = np.array([[0.0, 1.0], [0.5, 2.0], [1.0, 3.0], [1.0, 4.0]])
    >>> est = ActivationEntropy(n_bins=2, n_outputs=0).fit(A)
    >>> est.neuron_entropy_
    array([0.918..., 1.   ])
    >>> round(est.entropy_, 4)
    1.9183
    >>> est.bin_edges_[1]
    array([0., 2., 4.])
    """

    _parameter_constraints = {
        "n_bins": [Interval(Integral, 2, None, closed="left")],
        "base": [Interval(Real, 0, None, closed="neither")],
        "binning": [StrOptions(set(_histogram.BINNINGS))],
        "n_neurons": [
            None,
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
        ],
        "n_outputs": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "per_class": ["boolean"],
    }

    def __init__(
        self,
        n_bins=10,
        *,
        base=2,
        binning="right",
        n_neurons=None,
        n_outputs="auto",
        per_class=True,
    ):
        self.n_bins = n_bins
        self.base = base
        self.binning = binning
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs
        self.per_class = per_class

    def _validate_params(self):
        super()._validate_params()
        if self.base == 1:
            raise ValueError(
                f"The 'base' parameter of {type(self).__name__} must be a positive "
                "float other than 1 (a logarithm needs it). Got 1 instead; use 2 "
                "for bits or numpy.e for nats."
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, layout=None):
        """Learn bin edges and the entropy of every neuron.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons + n_outputs), iterable \
                of batches, or HistogramStatistics
            Activations followed by the class probabilities. Data that does not
            fit in memory streams as a re-iterable of batches (arrays, tensors
            or ``(batch, labels)`` pairs, such as
            :meth:`ActivationExtractor.batches` yields), read twice: maxima,
            then bin counts. Second-pass statistics
            (:class:`~sknap.streaming.HistogramStatistics`, merged from shards
            or processes) fit the same way. The result equals the in-memory
            fit's.
        y : array-like of shape (n_samples,), default=None
            Class labels, for per-class entropy and, without a layout, to
            find ``n_outputs``; None when the batches carry them.
        layout : ColumnLayout, callable or None, default=None
            The fitted :class:`ActivationExtractor`'s ``layout_``, or a
            function of no argument that returns it (called here): it says
            how many of the last columns are probabilities, instead of
            ``n_outputs="auto"``'s guess; it must describe X's columns.
            :func:`make_nap_pipeline` passes it. Without it, batches of an
            extractor give theirs when ``n_outputs="auto"``.

        Returns
        -------
        self : ActivationEntropy
            The fitted estimator.
        """
        if streaming.is_batch_source(X):
            stats, n, self.n_outputs_in_ = _stream_fit.streamed_fit(
                self, X, y, layout, _stream_fit.entropy_statistics
            )
            return self._fit_statistics(stats, n)
        layout = given_layout(self, layout)
        # The activations are checked for NaN and infinity in the pass that
        # finds their maxima, the probability block here; the labels by the
        # engine, as on every path.
        dtype = [np.float64, np.float32]
        if y is None:
            X = validate_data(self, X, dtype=dtype, ensure_all_finite=False)
        else:
            X, y = validate_data(self, X, y, dtype=dtype, ensure_all_finite=False)
            y = _engine.check_labels(y, X.shape[0])
        n_proba = resolve_n_outputs(self, X.shape[1], y, layout)
        self.n_outputs_in_ = n_proba
        n = X.shape[1] - n_proba
        assert_all_finite(X[:, n:], input_name="X")
        # Only a width guessed from y is checked against X as a whole.
        check_probability_block(self, X[:, n:], X=X if layout is None else None)
        # All columns counted (the few probability ones too): X is read as it
        # is, without a copy of the activation block.
        labels = y if self.per_class else None
        stats = _stream_fit.statistics_of(X, labels, self.n_bins, self.binning)
        return self._fit_statistics(stats, n)

    def _fit_statistics(self, stats, n):
        """Set the fitted attributes from second-pass statistics whose first
        ``n`` columns are the activations; every fit ends here.

        The global histogram is the sum over classes of the per-class counts;
        the per-class entropy is their slice, on the neurons' shared edges.
        """
        stats.check_same_samples()
        self.n_neurons_in_ = n
        counts = stats.counts_[:, :n, 1:].cpu()  # (classes, neurons, bins)
        entropies = _engine.entropy_from_counts(counts.sum(dim=0), self.base)
        maxima, edges = stats.max_[:n].cpu(), stats.bin_edges_[:n].cpu()
        self._store_entropy(entropies, maxima, edges)
        if stats.per_class and self.per_class:
            self.classes_ = stats.classes_
            self.class_neuron_entropy_ = _engine.entropy_from_counts(counts, self.base)
            self.class_entropy_ = self.class_neuron_entropy_.sum(axis=1)
        self.selected_neurons_ = self._select()
        return self

    def _store_entropy(self, entropies, maxima, edges):
        """Set the fitted attributes of all samples; warn of dead neurons."""
        self.neuron_entropy_ = entropies
        self.neuron_max_ = maxima.numpy()
        self.bin_edges_ = edges.numpy()
        self.dead_neurons_ = self.neuron_max_ <= 0
        self.n_dead_neurons_ = int(self.dead_neurons_.sum())
        self.entropy_ = float(entropies.sum())
        self.normalized_entropy_ = self.entropy_ / (
            self.n_neurons_in_ * np.log(self.n_bins) / np.log(self.base)
        )
        if self.n_dead_neurons_:
            warnings.warn(
                f"{self.n_dead_neurons_} of {self.n_neurons_in_} neurons had no "
                "positive activation in the fit data; their entropy counts as 0 "
                "(see dead_neurons_). If unexpected, check the chosen layers, or "
                "fit on more samples.",
                DeadNeuronWarning,
                # Past _fit_statistics, fit and scikit-learn's _fit_context.
                stacklevel=5,
            )

    def _select(self):
        n = self.n_neurons_in_
        if self.n_neurons is None:
            return np.arange(n)
        if isinstance(self.n_neurons, Integral):
            k = min(int(self.n_neurons), n)
        else:
            k = max(1, int(round(self.n_neurons * n)))
        rank = np.where(self.dead_neurons_, np.inf, self.neuron_entropy_)
        return np.sort(np.argsort(rank, kind="stable")[:k])

    def transform(self, X):
        """Keep the selected activation columns and the probability block.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons + n_outputs), or batches
            Same layout as in ``fit``. Batches (``ActivationExtractor``'s
            ``batches``, or what it returns with ``streaming=True``) give
            batches back.

        Returns
        -------
        X_out : ndarray of shape (n_samples, n_selected + n_outputs), or batches
            Selected activations, then the probabilities unchanged; for
            batches, the same columns of each batch, read when iterated.
        """
        check_is_fitted(self)
        if streaming.is_batch_source(X) and not isinstance(X, CountingPass):
            return ColumnBatches(X, self._output_columns())
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return X[:, self._output_columns()]

    def _output_columns(self):
        proba = np.arange(self.n_neurons_in_, self.n_features_in_)
        return np.concatenate([self.selected_neurons_, proba])

    def get_support(self, indices=False):
        """The input columns that ``transform`` keeps, as a feature selector's.

        The selected activation columns and the probability block, in the
        order ``transform`` returns them (ascending).

        Parameters
        ----------
        indices : bool, default=False
            Return the column indices instead of a boolean mask.

        Returns
        -------
        support : ndarray of shape (``n_features_in_``,), dtype=bool, or of int
            True for each kept column; with ``indices``, their indices.
        """
        check_is_fitted(self)
        columns = self._output_columns()
        if indices:
            return columns
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[columns] = True
        return mask

    def get_feature_names_out(self, input_features=None):
        """Names of the columns ``transform`` returns.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input column names; defaults to ``feature_names_in_`` or
            ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str
            Names of the kept activation columns, then of the probabilities.
        """
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        return np.asarray(names, dtype=object)[self._output_columns()]

    def _activations(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return X[:, : self.n_neurons_in_]

    def histograms(self, X):
        """Counts of new data in the fitted bins.

        Values above a neuron's fitted maximum go to its last bin; with
        ``binning="reference"`` they are counted nowhere, as the authors' open
        bins would.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons + n_outputs)
            Same layout as in ``fit``.

        Returns
        -------
        counts : ndarray of shape (n_neurons, n_bins)
            Number of positive values of each neuron in each bin.
        """
        A = self._activations(X)
        counts = _histogram.histogram_counts(
            A, torch.from_numpy(self.bin_edges_), self.binning
        )
        return counts.numpy()

    def entropy_of(self, X):
        """Entropy of every neuron on new data, with the fitted bin edges.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons + n_outputs)
            For instance a test set, scored against the training set's bins.

        Returns
        -------
        neuron_entropy : ndarray of shape (n_neurons,)
            Sum it for the total entropy.
        """
        return _histogram.entropy_from_counts(self.histograms(X), self.base)

    def layer_entropy(self, feature_names=None):
        """Total entropy of each layer (block of columns).

        Parameters
        ----------
        feature_names : array-like of str, default=None
            Names of the input columns, as
            ``ActivationExtractor.get_feature_names_out()`` gives them;
            defaults to ``feature_names_in_``.

        Returns
        -------
        layer_entropy : dict of str to float
            Entropy summed over the neurons of each block, in column order.
        """
        check_is_fitted(self)
        if feature_names is None:
            feature_names = getattr(self, "feature_names_in_", None)
        if feature_names is None:
            raise ValueError(
                "layer_entropy needs the column names to know which neuron belongs "
                "to which layer: pass feature_names="
                "extractor.get_feature_names_out(), or fit on a DataFrame (use "
                "set_output(transform='pandas') on the ActivationExtractor)."
            )
        feature_names = list(feature_names)
        if len(feature_names) != self.n_features_in_:
            raise ValueError(
                f"feature_names has {len(feature_names)} names but "
                f"{type(self).__name__} was fitted on {self.n_features_in_} columns."
            )
        totals = {}
        for name, e in zip(
            feature_names[: self.n_neurons_in_], self.neuron_entropy_, strict=False
        ):
            layer = layer_of(name)
            totals[layer] = totals.get(layer, 0.0) + float(e)
        return totals

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
