"""Activation probabilities and the proposed prediction (Section 5.2, Eq. 14-16)."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _binned, _engine, _kernels, _stream_fit, streaming
from ._counting import CountingPass
from ._engine import as_tensor
from ._engine_sources import iter_batches
from ._layout import (
    PROBA_PREFIX,
    check_probability_block,
    given_layout,
    resolve_n_outputs,
)

__all__ = ["ActivationProbabilityFeatures", "activation_probability", "proposed_proba"]


def activation_probability(A, y_idx, n_classes, alpha=0.0):
    """``P[c, j]``, the fraction of class-``c`` samples whose neuron ``j`` is > 0.

    ``(active + alpha) / (n_c + 2 alpha)``, additive smoothing as in BernoulliNB;
    ``alpha=0`` is Eq. 14. A class without sample gets a row of zeros (or 1/2
    with smoothing).

    Parameters
    ----------
    A : ndarray of shape (n_samples, n_neurons)
        Activations.
    y_idx : ndarray of shape (n_samples,)
        Class index in ``[0, n_classes)`` of each sample.
    n_classes : int
        Number of classes.
    alpha : float, default=0.0
        Additive smoothing.

    Returns
    -------
    P : ndarray of shape (n_classes, n_neurons)
        Activation probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 0.0], [2.0, 3.0], [0.0, 1.0]])
    >>> activation_probability(A, np.array([0, 0, 1]), 2)
    array([[1. , 0.5],
           [0. , 1. ]])
    """
    A = as_tensor(A)
    rows = torch.as_tensor(np.asarray(y_idx, dtype=np.int64), device=A.device)
    active = torch.zeros((n_classes, A.shape[1]), dtype=torch.int64, device=A.device)
    class_max = torch.zeros(active.shape, dtype=torch.float64, device=A.device)
    _kernels.first_pass(A, rows, class_max, active)
    class_count = np.bincount(rows.cpu().numpy(), minlength=n_classes)
    return _stream_fit.probability_from_counts(active.cpu(), class_count, alpha)


def proposed_proba(A, proba, P):
    """``Y_proposed`` (the paper's Equation 16), normalised; else ``Y_predicted``.

    ``u = (A > 0)``, ``q = u @ P.T`` and ``Y_proposed = q * proba`` divided by
    its row sum. A row whose sum is not positive (no active neuron, or all mass
    on classes of probability 0) falls back to ``proba``, so no NaN is made.

    Parameters
    ----------
    A : ndarray of shape (n_samples, n_neurons)
        Activations of the samples.
    proba : ndarray of shape (n_samples, n_classes)
        The backbone's softmax output ``Y_predicted``.
    P : ndarray of shape (n_classes, n_neurons)
        Activation probabilities.

    Returns
    -------
    Y_proposed : ndarray of shape (n_samples, n_classes)
        Rows sum to 1 when ``proba``'s do.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[1.0, 0.5], [0.0, 1.0]])
    >>> proposed_proba(np.array([[2.0, 0.0]]), np.array([[0.4, 0.6]]), P)
    array([[1., 0.]])
    """
    proba = np.asarray(proba, dtype=np.float64)
    q = (A > 0).astype(np.float64) @ P.T
    raw = q * proba
    total = raw.sum(axis=1, keepdims=True)
    ok = total > 0
    return np.where(ok, raw / np.where(ok, total, 1.0), proba)


class ActivationProbabilityFeatures(TransformerMixin, BaseEstimator):
    """Auxiliary features ``[Y_proposed, Y_predicted]`` from activation patterns.

    ``fit`` learns ``P[c, j]``, the probability that neuron ``j`` is active
    (> 0) for a training sample of class ``c`` (Eq. 14). ``transform`` binarises
    each sample's activations ``u = (a > 0)`` (Eq. 15), scores each class by
    ``q = P @ u`` and weights the backbone's probabilities by it,
    ``Y_proposed = q * Y_predicted`` normalised to sum to 1 (Eq. 16). When that
    sum is 0 the sample keeps ``Y_predicted``. The output is
    ``[Y_proposed, Y_predicted]``, the input of the auxiliary classifier.

    Binned states (an extension, opt-in with ``n_bins``; docs/definitions.md):
    each neuron's value is in one of ``R + 1`` states, inactive (``<= 0``) or
    one of the ``R`` right-closed bins over ``(0, m_j]`` that
    :class:`ActivationEntropy` uses (``m_j`` the neuron's maximum over the fit
    data; values above it in the last bin). ``P[c, j, r]`` is the fraction of
    class-``c`` training samples whose neuron ``j`` is in state ``r``, from
    the engine's per-class counts on the shared edges. ``form="sum"`` scores
    ``q_c = sum over active j of P[c, j, state_j]``, then Eq. 16 as above:
    with ``R = 1`` that is the paper's ``P @ u``. ``form="log"`` is a
    naive-Bayes score in log space, ``log q_c = sum over all j of
    log P[c, j, state_j]`` and ``Y_proposed = softmax(log q + log
    Y_predicted)``, so nothing underflows; give it ``alpha > 0``, as a state
    never seen for a class otherwise rules the class out.

    Input follows the layout of :class:`ActivationExtractor`: activations, then
    the last ``n_outputs`` columns are the backbone's probabilities. Column
    ``k`` of that block is taken to be class ``classes_[k]``.

    Parameters
    ----------
    alpha : float, default=0.0
        Additive smoothing of ``P`` as in BernoulliNB; 0 is the paper. For
        binned states, ``(count + alpha) / (n_c + (R + 1) alpha)`` as in
        CategoricalNB (the same numbers with ``R = 1``).
    cv : int, cross-validation generator, iterable or None, default=None
        ``None`` fits ``P`` and computes the training features on the same
        samples, as the paper does. Otherwise ``fit_transform`` returns
        cross-fitted features: each sample's row comes from a ``P`` fitted
        without it, as StackingClassifier does; ``P`` itself is then refitted
        on all samples for later ``transform`` calls. An int is a number of
        stratified folds.
    n_outputs : "auto" or int, default="auto"
        Number of the backbone's outputs: the last ``n_outputs`` columns of X
        are its class probabilities. ``"auto"``: from the ``layout`` given to
        :meth:`fit` (as :func:`make_nap_pipeline` and batches of an extractor
        do), else from feature names with the ``proba_`` prefix, else the
        number of classes in ``y``. ``0`` means that ``X`` holds activations
        only: ``Y_predicted`` is then uniform and ``Y_proposed`` is the
        activation-pattern vote ``q`` alone, normalised.
    n_bins : int or None, default=None
        ``None`` is the paper: a neuron is active or not. An int ``R >= 1``
        uses the ``R + 1`` binned states; ``fit`` then counts two passes
        (maximum, then states), as :class:`ActivationEntropy` does. ``R = 1``
        gives the paper's features. In ``make_nap_pipeline(binned=True)`` the
        key ``entropy__n_bins`` sets it too.
    form : {"sum", "log"}, default="sum"
        How the states' probabilities make ``Y_proposed``: the sum over the
        active neurons, then Eq. 16 (the paper's form), or the naive-Bayes
        log form. With ``n_bins=None`` the log form uses the two states
        active and inactive.

    Attributes
    ----------
    activation_probability_ : ndarray of shape (n_classes, n_neurons)
        ``P``.
    class_count_ : ndarray of shape (n_classes,)
        Training samples of each class.
    state_probability_ : ndarray of shape (n_classes, n_neurons, n_bins + 1)
        ``P[c, j, r]``, state 0 inactive, ``r`` bin ``r - 1`` (``n_bins`` set).
    state_count_ : ndarray of shape (n_classes, n_neurons, n_bins + 1)
        Training samples of each class in each state (``n_bins`` set).
    bin_edges_ : ndarray of shape (n_neurons, n_bins + 1)
        Edges of the bins, from each neuron's maximum over the fit data
        (``n_bins`` set).
    classes_ : ndarray of shape (n_classes,)
        Class labels; column ``k`` of the probability block is ``classes_[k]``.
        Sorted, unless ``X`` named its columns ``proba_<class>`` with the
        labels of ``y`` (``ActivationExtractor(classes=...)`` with pandas
        output): then in the order of those names.
    n_neurons_in_ : int
        Number of activation columns.
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names, when ``X`` had them.

    See Also
    --------
    activation_probability : ``P`` as a function.
    proposed_proba : ``Y_proposed`` as a function.
    AuxiliaryClassifier : The classifier trained on these features.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import ActivationProbabilityFeatures
    >>> Z = np.array([[1.0, 0.0, 0.7, 0.3],
    ...               [2.0, 3.0, 0.6, 0.4],
    ...               [0.0, 1.0, 0.2, 0.8]])
    >>> y = np.array([0, 0, 1])
    >>> features = ActivationProbabilityFeatures().fit(Z, y)
    >>> features.activation_probability_
    array([[1. , 0.5],
           [0. , 1. ]])
    >>> features.transform(np.array([[2.0, 0.0, 0.4, 0.6]]))
    array([[1. , 0. , 0.4, 0.6]])
    >>> features.get_feature_names_out().tolist()
    ['proposed_0', 'proposed_1', 'predicted_0', 'predicted_1']

    Binned states: with ``R = 2`` neuron 0 (maximum 2) has bins ``(0, 1]``
    and ``(1, 2]``; class 0's two samples put it in state 2 and state 1.

    >>> binned = ActivationProbabilityFeatures(n_bins=2).fit(Z, y)
    >>> binned.state_probability_[0, 0]
    array([0. , 0.5, 0.5])
    >>> binned.transform(np.array([[2.0, 0.0, 0.4, 0.6]]))
    array([[1. , 0. , 0.4, 0.6]])
    """

    _parameter_constraints = {
        "alpha": [Interval(Real, 0, None, closed="left")],
        "cv": ["cv_object", HasMethods(["split"]), None],
        "n_outputs": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "n_bins": [None, Interval(Integral, 1, None, closed="left")],
        "form": [StrOptions({"sum", "log"})],
    }

    def __init__(
        self, *, alpha=0.0, cv=None, n_outputs="auto", n_bins=None, form="sum"
    ):
        self.alpha = alpha
        self.cv = cv
        self.n_outputs = n_outputs
        self.n_bins = n_bins
        self.form = form

    def _split(self, X):
        A = X[:, : self.n_neurons_in_]
        if self.n_neurons_in_ == X.shape[1]:
            # n_outputs=0: no backbone output, so a uniform Y_predicted.
            k = len(self.classes_)
            return A, np.full((X.shape[0], k), 1.0 / k, dtype=X.dtype)
        return A, X[:, self.n_neurons_in_ :]

    def _classes_from_names(self, classes, n_proba):
        """Labels of the probability columns read from their ``proba_<c>`` names.

        None when the input had no such names, or when they are the default
        ``proba_0 ...`` and do not hold the labels of y (which are then matched
        to the columns in sorted order). Names that hold other labels than y's
        are an error: the columns cannot be matched to the classes.
        """
        names = getattr(self, "feature_names_in_", None)
        if names is None or n_proba == 0:
            return None
        names = [str(f) for f in names[self.n_neurons_in_ :]]
        if not all(f.startswith(PROBA_PREFIX) for f in names):
            return None
        names = [f[len(PROBA_PREFIX) :] for f in names]
        try:
            if classes.dtype.kind in "USO":
                labels = np.asarray(
                    names, dtype=object if classes.dtype.kind == "O" else None
                )
            else:
                labels = np.asarray(names).astype(classes.dtype)
        except (ValueError, TypeError):
            labels = None
        if labels is not None and len(set(labels.tolist())) == len(labels):
            if set(classes.tolist()) <= set(labels.tolist()):
                return labels
        if names == [str(k) for k in range(n_proba)]:
            return None
        unknown = sorted(set(map(str, classes.tolist())) - set(names))
        raise ValueError(
            f"y has labels {unknown} that are not among the backbone's classes "
            f"{names} (the '{PROBA_PREFIX}' column names of X). Give y with the "
            "labels passed to ActivationExtractor(classes=...), or leave classes "
            "as None and give y as the backbone's output indices."
        )

    def _encode(self, y):
        """Class labels and indices; the probability block defines the classes."""
        classes, y_idx = np.unique(y, return_inverse=True)
        n_proba = self.n_features_in_ - self.n_neurons_in_
        named = self._classes_from_names(classes, n_proba)
        if named is not None:
            index = {c: i for i, c in enumerate(named.tolist())}
            return named, np.asarray([index[c] for c in classes.tolist()])[y_idx]
        if len(classes) == n_proba or n_proba == 0:
            return classes, y_idx
        if (
            len(classes) < n_proba
            and np.issubdtype(np.asarray(y).dtype, np.integer)
            and classes.min() >= 0
            and classes.max() < n_proba
        ):
            # Labels are backbone output indices and some class is absent.
            return np.arange(n_proba), np.asarray(y, dtype=np.intp)
        raise ValueError(
            f"y has {len(classes)} classes but X has {n_proba} probability columns, "
            "one per backbone output, and each class of y must be one of them: "
            f"give y as the output indices 0..{n_proba - 1}, or with one class "
            "per output. If X has another number of probability columns, set "
            "n_outputs to it."
        )

    def _fit_model(self, X, y_idx, n_classes):
        """``(P, None)`` (the paper) or ``(P[c, j, r], edges)`` of rows ``X``."""
        A, _ = self._split(X)
        if self.n_bins is None:
            P = activation_probability(A, y_idx, n_classes, self.alpha)
            if self.form == "sum":
                return P, None
            class_count = np.bincount(y_idx, minlength=n_classes)
            return _binned.two_states(P, class_count, self.alpha)
        stats = _stream_fit.statistics_of(A, y_idx, self.n_bins)
        counts = np.zeros((n_classes, A.shape[1], self.n_bins + 1), dtype=np.int64)
        class_count = np.zeros(n_classes, dtype=np.int64)
        counts[stats.classes_] = stats.counts_.cpu().numpy()
        class_count[stats.classes_] = stats.class_count_.cpu().numpy()
        P = _binned.state_probability(counts, class_count, self.alpha)
        return P, stats.bin_edges_.cpu().numpy()

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, layout=None):
        """Learn the activation probabilities ``P``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons + n_outputs), iterable \
                of batches, or statistics
            Activations followed by the backbone's class probabilities. Data
            that does not fit in memory streams, in one pass, as an iterable
            of ``(batch, labels)`` pairs, such as
            :meth:`ActivationExtractor.batches` yields; or as
            :class:`~sknap.streaming.NeuronStatistics` merged from shards or
            processes (:class:`~sknap.streaming.HistogramStatistics` with
            ``n_bins``). ``P`` equals the in-memory fit's.
        y : array-like of shape (n_samples,)
            Class labels; None when the batches carry them.
        layout : ColumnLayout, callable or None, default=None
            The layout of X's columns: a fitted :class:`ActivationExtractor`'s
            ``layout_`` (of the columns kept, after a selecting
            :class:`ActivationEntropy`), or a function of no argument that
            returns it (called here). It says how many of the last columns
            are probabilities, instead of ``n_outputs="auto"``'s guess.
            :func:`make_nap_pipeline` passes it. Without it, batches of an
            extractor give theirs when ``n_outputs="auto"``.

        Returns
        -------
        self : ActivationProbabilityFeatures
            The fitted estimator.
        """
        if streaming.is_batch_source(X):
            stats, n, _ = _stream_fit.streamed_fit(
                self, X, y, layout, _stream_fit.probability_statistics
            )
            return self._fit_statistics(stats, n)
        layout = given_layout(self, layout)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        y = _engine.check_labels(y, X.shape[0])
        n_proba = resolve_n_outputs(self, X.shape[1], y, layout)
        self.n_neurons_in_ = X.shape[1] - n_proba
        self._encode(y)  # the labels must match the probability block
        # Only a width guessed from y is checked against X as a whole.
        block = X[:, self.n_neurons_in_ :]
        check_probability_block(self, block, X=X if layout is None else None)
        stats = _stream_fit.statistics_of(X, y, self.n_bins)
        return self._fit_statistics(stats, self.n_neurons_in_)

    def _fit_statistics(self, stats, n):
        """Set the fitted attributes from labelled statistics whose first
        ``n`` columns are the activations; every fit ends here.

        ``P`` from the first pass's counts of values > 0; with ``n_bins``, the
        binned ``P[c, j, r]`` from the second pass's counts in each state, on
        the neurons' shared edges (``counts_``).
        """
        self.n_neurons_in_ = n
        classes, rows = self._encode(stats.classes_)
        class_count = np.zeros(len(classes), dtype=np.int64)
        active = np.zeros((len(classes), n), dtype=np.int64)
        class_count[rows] = stats.class_count_.cpu().numpy()
        active[rows] = stats.active_count_[:, :n].cpu().numpy()
        self.classes_ = classes
        self.class_count_ = class_count
        # Past this method, fit and scikit-learn's _fit_context.
        _stream_fit.warn_empty_classes(classes, class_count, stacklevel=4)
        self.activation_probability_ = _stream_fit.probability_from_counts(
            active, class_count, self.alpha
        )
        if self.n_bins is not None:
            stats.check_same_samples()
            counts = np.zeros((len(classes), n, self.n_bins + 1), dtype=np.int64)
            counts[rows] = stats.counts_[:, :n].cpu().numpy()
            self.state_count_ = counts
            self.state_probability_ = _binned.state_probability(
                counts, class_count, self.alpha
            )
            self.bin_edges_ = stats.bin_edges_[:n].cpu().numpy()
        return self

    def fit_transform(self, X, y=None, *, layout=None):
        """Fit, then return the training features, cross-fitted when ``cv`` is set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons + n_outputs)
            Activations followed by the backbone's class probabilities.
        y : array-like of shape (n_samples,)
            Class labels.
        layout : ColumnLayout, callable or None, default=None
            The layout of X's columns, as in :meth:`fit`.

        Returns
        -------
        features : ndarray of shape (n_samples, 2 * n_classes)
            ``[Y_proposed, Y_predicted]``.
        """
        self.fit(X, y, layout=layout)
        if self.cv is None:
            return self.transform(X)
        if streaming.is_batch_source(X):
            raise ValueError(
                "Cross-fitting (cv=...) needs the activations in memory, but X is "
                "a source of batches (make_nap_pipeline(..., streaming=True)). Use "
                "cv=None when streaming, or fit on arrays."
            )
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=False)
        _, y_idx = self._encode(y)
        cv = check_cv(self.cv, y_idx, classifier=True)
        out = np.empty((X.shape[0], 2 * len(self.classes_)), dtype=X.dtype)
        for train, test in cv.split(X, y_idx):
            model = self._fit_model(X[train], y_idx[train], len(self.classes_))
            out[test] = self._features(X[test], model)
        return out

    def _features(self, X, model):
        A, proba = self._split(X)
        P, edges = model
        if edges is None:
            proposed = proposed_proba(A, proba, P)
        else:
            proposed = _binned.proposed(
                as_tensor(A), as_tensor(proba), torch.from_numpy(P), edges, self.form
            ).numpy()
        return np.hstack([proposed, proba]).astype(X.dtype)

    def transform(self, X):
        """Compute ``[Y_proposed, Y_predicted]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_neurons + n_outputs)
            Same layout as in ``fit``.

        Returns
        -------
        features : ndarray of shape (n_samples, 2 * n_classes)
            ``Y_proposed`` (rows sum to 1), then ``Y_predicted``.
        """
        check_is_fitted(self)
        model = _binned.fitted_model(self)
        if streaming.is_batch_source(X) and not isinstance(X, CountingPass):
            # One batch at a time: only the 2 * n_classes features are kept.
            rows = [
                self._features(_engine.to_numpy(A).astype(np.float32), model)
                for A, _ in iter_batches(X)
            ]
            return (
                np.concatenate(rows) if rows else np.empty((0, 2 * len(self.classes_)))
            )
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return self._features(X, model)

    def get_feature_names_out(self, input_features=None):
        """Names ``proposed_<class>`` then ``predicted_<class>``.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Ignored; present for API compatibility.

        Returns
        -------
        feature_names_out : ndarray of str of shape (2 * n_classes,)
            Output column names.
        """
        check_is_fitted(self)
        return np.asarray(
            [f"proposed_{c}" for c in self.classes_]
            + [f"predicted_{c}" for c in self.classes_],
            dtype=object,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
