"""The whole method as one scikit-learn Pipeline."""

import sklearn
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if

from ._auxiliary import AuxiliaryClassifier
from ._entropy import ActivationEntropy
from ._extraction import ActivationExtractor
from ._probabilities import ActivationProbabilityFeatures

__all__ = ["make_nap_pipeline"]

_R_KEY, _FEATURES_KEY = "entropy__n_bins", "probabilities__n_bins"


def _same(layout):
    return layout


class _FittedLayout:
    """``layout=`` for the fit of step ``index`` of ``pipeline``. Called at
    that fit, it reads the layout of the pipeline's first step, the fitted
    extractor, with the neurons kept by the ActivationEntropy steps before
    ``index``."""

    def __init__(self, pipeline, index):
        self.pipeline = pipeline
        self.index = index

    def __call__(self):
        steps = [step for _, step in self.pipeline.steps[: self.index]]
        layout = steps[0].layout_
        for step in steps[1:]:
            if isinstance(step, ActivationEntropy):
                layout = layout.select_neurons(step.selected_neurons_)
        return layout

    def __reduce__(self):
        # Pipeline(memory=...) hashes the fit parameters with joblib: by the
        # layout read, not by the whole pipeline.
        return (_same, (self(),))


def _pipeline_has(method):
    """``available_if`` check: whether scikit-learn's Pipeline offers ``method``."""
    return lambda self: hasattr(super(_NapPipeline, self), method)


class _NapPipeline(Pipeline):
    """A Pipeline that gives its steps the extractor's column layout, and
    whose ``set_params(entropy__n_bins=R)`` also sets the bin count of a
    binned probability step (``probabilities__n_bins``).

    ``fit``, ``fit_transform`` and ``fit_predict`` pass each
    ActivationEntropy and ActivationProbabilityFeatures step that follows an
    ActivationExtractor first step (through ActivationEntropy steps only)
    ``layout=``, read from the fitted extractor when the step is fitted:
    ``<step>__layout``, unless given, and not with scikit-learn's metadata
    routing enabled (the steps then resolve ``n_outputs="auto"`` as alone).
    ``clone`` and ``GridSearchCV`` go through ``set_params``, so every step
    stays a plain estimator. ``probabilities__n_bins`` given in the same call
    wins; a step whose ``n_bins`` is None (the paper's features) is left as
    it is.
    """

    def set_params(self, **params):
        if _R_KEY in params and _FEATURES_KEY not in params:
            step = params.get("probabilities", dict(self.steps).get("probabilities"))
            if getattr(step, "n_bins", None) is not None:
                params[_FEATURES_KEY] = params[_R_KEY]
        return super().set_params(**params)

    def _with_layout(self, params):
        """``params`` and the ``<step>__layout`` keys described above."""
        if sklearn.get_config()["enable_metadata_routing"]:
            return params
        if not self.steps or not isinstance(self.steps[0][1], ActivationExtractor):
            return params
        params = dict(params)
        for index, (name, step) in enumerate(self.steps[1:], start=1):
            if step is None or step == "passthrough":
                continue
            if not isinstance(step, ActivationEntropy | ActivationProbabilityFeatures):
                break  # the columns are another step's from here
            params.setdefault(f"{name}__layout", _FittedLayout(self, index))
            if not isinstance(step, ActivationEntropy):
                break  # features, not the layout, from here
        return params

    def fit(self, X, y=None, **params):
        """``Pipeline.fit``, the later steps given the extractor's layout."""
        return super().fit(X, y, **self._with_layout(params))

    @available_if(_pipeline_has("fit_transform"))
    def fit_transform(self, X, y=None, **params):
        """``Pipeline.fit_transform``, with the extractor's layout."""
        return super().fit_transform(X, y, **self._with_layout(params))

    @available_if(_pipeline_has("fit_predict"))
    def fit_predict(self, X, y=None, **params):
        """``Pipeline.fit_predict``, with the extractor's layout."""
        return super().fit_predict(X, y, **self._with_layout(params))


def make_nap_pipeline(
    backbone,
    *,
    layers=None,
    reduce="mean",
    n_bins=10,
    n_neurons=None,
    binned=False,
    form="sum",
    alpha=0.0,
    cv=None,
    n_outputs="auto",
    final_estimator=None,
    hidden_layer_sizes=None,
    max_iter=20,
    batch_size=256,
    cache=None,
    streaming=False,
    device="auto",
    random_state=None,
):
    """Extractor, entropy, activation probabilities and auxiliary classifier.

    The steps are named ``"extractor"``, ``"entropy"``, ``"probabilities"`` and
    ``"auxiliary"``, so a grid search over the bin count is over
    ``"entropy__n_bins"``. What the bin count ``R`` changes:

    * Always the entropy the ``"entropy"`` step reports (``pipe["entropy"]``
      keeps its fitted attributes in every mode).
    * With ``n_neurons`` set, the entropy ranking of the neurons, and so which
      ones the probability step uses.
    * With ``binned=True``, the features themselves: the probability step
      uses the ``R + 1`` binned states of each neuron (inactive or one of the
      entropy's ``R`` bins), ``P[c, j, r]``, instead of the paper's active or
      not (docs/definitions.md). One key sets ``R`` for both steps: the
      pipeline's ``set_params(entropy__n_bins=R)`` also sets
      ``probabilities__n_bins=R``. ``clone`` and ``GridSearchCV`` set
      candidates through ``set_params``, so a grid over ``entropy__n_bins``
      compares real alternatives, and every step stays a plain scikit-learn
      estimator. (Setting a step's own parameter,
      ``pipe["entropy"].set_params(n_bins=R)``, sets that step only; a grid
      can add the paper's features as a candidate with
      ``{"probabilities__n_bins": [1]}``, as ActivationEntropy needs
      ``R >= 2``.)

    With ``binned=False`` and ``n_neurons=None`` (the defaults, the paper)
    every neuron is used and ``n_bins`` only changes the reported entropy.
    The entropy step ranks neurons over all samples (``per_class=False``):
    fit an :class:`ActivationEntropy` of its own for the entropies within
    each class.

    Parameters
    ----------
    backbone : torch.nn.Module
        The trained classifier.
    layers : see ActivationExtractor, default=None
        Layers to read; None is every ReLU.
    reduce : str or callable, default="mean"
        Conv map reduction, see :class:`ActivationExtractor`.
    n_bins : int, default=10
        Bins ``R`` of :class:`ActivationEntropy`, and of the binned features
        when ``binned``.
    n_neurons : int, float or None, default=None
        Lowest-entropy neurons kept for the probability step; None keeps all
        (the paper).
    binned : bool, default=False
        Use the binned activation states in the probability step
        (``ActivationProbabilityFeatures(n_bins=R)``), with ``R`` following
        ``entropy__n_bins``. False is the paper's features.
    form : {"sum", "log"}, default="sum"
        How the probability step scores the classes, see
        :class:`ActivationProbabilityFeatures`.
    alpha : float, default=0.0
        Smoothing of the activation probabilities.
    cv : int, cross-validation generator or None, default=None
        Cross-fitting of the activation probabilities (None: in-sample, as in
        the paper).
    n_outputs : "auto" or int, default="auto"
        Number of the backbone's outputs: the last ``n_outputs`` columns of
        the extractor's rows are its class probabilities. Given to the
        entropy and probability steps, which ``fit`` also gives the fitted
        extractor's layout: ``"auto"`` reads the number there, so training
        labels that lack some of the backbone's classes (a fold missing a
        class, a backbone trained on more classes) need no setting; an int
        must equal it.
    final_estimator : classifier or None, default=None
        The last step, ``"auxiliary"``: any scikit-learn classifier, used as
        given (not copied), for instance ``LogisticRegression()``. None is an
        :class:`AuxiliaryClassifier` built from ``hidden_layer_sizes``,
        ``max_iter``, ``device`` and ``random_state``, which are then unused.
    hidden_layer_sizes : tuple of int or None, default=None
        Auxiliary network; None is one layer of ``2 * n_classes`` units.
    max_iter : int, default=20
        Epochs of the auxiliary network.
    batch_size : int, default=256
        Samples per forward pass of the backbone.
    cache : None, "memory" or path, default=None
        The extractor's activation cache. ``"memory"`` makes a grid search
        run the backbone once per fold and data split, whatever the number
        of candidates, since only later steps differ between them.
    streaming : bool, default=False
        Pass batches between the steps instead of the activation matrix
        (the extractor's ``streaming``): memory then does not grow with
        n_samples x n_neurons, for data of any size (a Dataset or DataLoader
        with ``y`` as an array). ``fit`` runs the backbone four times over the
        data (the entropy's two passes, the probabilities' fit and features)
        instead of once; ``predict`` once. Not with ``cv`` (cross-fitting
        needs the matrix).
    device : str, default="auto"
        Device of the backbone and the auxiliary network.
    random_state : int or None, default=None
        Seed of the auxiliary network.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        Unfitted; ``fit(X, y)`` with the backbone's inputs and labels.

    Examples
    --------
    >>> from sknap import make_nap_pipeline
    >>> from sknap.toy import digits_mlp
    >>> model, X_train, X_test, y_train, y_test = digits_mlp(epochs=10)
    >>> pipe = make_nap_pipeline(model, random_state=0).fit(X_train, y_train)
    >>> [name for name, _ in pipe.steps]
    ['extractor', 'entropy', 'probabilities', 'auxiliary']
    >>> pipe.predict(X_test[:3]).shape
    (3,)

    In the binned mode one key sets ``R`` for the entropy and the features:

    >>> binned = make_nap_pipeline(model, binned=True, n_bins=5)
    >>> binned = binned.set_params(entropy__n_bins=3)
    >>> binned["entropy"].n_bins, binned["probabilities"].n_bins
    (3, 3)
    """
    if final_estimator is None:
        final_estimator = AuxiliaryClassifier(
            hidden_layer_sizes,
            max_iter=max_iter,
            device=device,
            random_state=random_state,
        )
    return _NapPipeline(
        [
            (
                "extractor",
                ActivationExtractor(
                    backbone,
                    layers=layers,
                    reduce=reduce,
                    batch_size=batch_size,
                    cache=cache,
                    device=device,
                    streaming=streaming,
                ),
            ),
            (
                "entropy",
                ActivationEntropy(
                    n_bins=n_bins,
                    n_neurons=n_neurons,
                    n_outputs=n_outputs,
                    per_class=False,
                ),
            ),
            (
                "probabilities",
                ActivationProbabilityFeatures(
                    alpha=alpha,
                    cv=cv,
                    n_outputs=n_outputs,
                    n_bins=n_bins if binned else None,
                    form=form,
                ),
            ),
            ("auxiliary", final_estimator),
        ]
    )
