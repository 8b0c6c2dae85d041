"""The whole method as one scikit-learn Pipeline."""

from sklearn.pipeline import Pipeline

from ._auxiliary import AuxiliaryClassifier
from ._entropy import ActivationEntropy
from ._extraction import ActivationExtractor
from ._probabilities import ActivationProbabilityFeatures

__all__ = ["make_nap_pipeline"]


def make_nap_pipeline(
    backbone,
    *,
    layers=None,
    reduce="mean",
    n_bins=10,
    n_neurons=None,
    alpha=0.0,
    cv=None,
    n_classes="auto",
    hidden_layer_sizes=None,
    max_iter=20,
    batch_size=256,
    device="auto",
    random_state=None,
):
    """Extractor, entropy, activation probabilities and auxiliary classifier.

    The steps are named ``"extractor"``, ``"entropy"``, ``"probabilities"`` and
    ``"auxiliary"``, so a grid search over the bin count is over
    ``"entropy__n_bins"``. The bin count changes the entropy ranking of the
    neurons, and so which ones the probability step uses, when ``n_neurons``
    keeps fewer than all of them; with ``n_neurons=None`` every neuron is used
    and ``n_bins`` only changes the reported entropy. The entropy step ranks
    neurons over all samples (``per_class=False``): fit an
    :class:`ActivationEntropy` of its own for the entropies within each class.

    Parameters
    ----------
    backbone : torch.nn.Module
        The trained classifier.
    layers : see ActivationExtractor, default=None
        Layers to read; None is every ReLU.
    reduce : str or callable, default="mean"
        Conv map reduction, see :class:`ActivationExtractor`.
    n_bins : int, default=10
        Bins ``R`` of :class:`ActivationEntropy`.
    n_neurons : int, float or None, default=None
        Lowest-entropy neurons kept for the probability step; None keeps all
        (the paper).
    alpha : float, default=0.0
        Smoothing of the activation probabilities.
    cv : int, cross-validation generator or None, default=None
        Cross-fitting of the activation probabilities (None: in-sample, as in
        the paper).
    n_classes : "auto" or int, default="auto"
        Number of backbone outputs, given to the entropy and probability
        steps. ``"auto"`` takes the number of classes in ``y``; set it when
        the backbone has more outputs than the training labels have classes
        (a fold missing a class, or a backbone trained on more classes).
    hidden_layer_sizes : tuple of int or None, default=None
        Auxiliary network; None is one layer of ``2 * n_classes`` units.
    max_iter : int, default=20
        Epochs of the auxiliary network.
    batch_size : int, default=256
        Samples per forward pass of the backbone.
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
    """
    return Pipeline(
        [
            (
                "extractor",
                ActivationExtractor(
                    backbone,
                    layers=layers,
                    reduce=reduce,
                    batch_size=batch_size,
                    device=device,
                ),
            ),
            (
                "entropy",
                ActivationEntropy(
                    n_bins=n_bins,
                    n_neurons=n_neurons,
                    n_classes=n_classes,
                    per_class=False,
                ),
            ),
            (
                "probabilities",
                ActivationProbabilityFeatures(alpha=alpha, cv=cv, n_classes=n_classes),
            ),
            (
                "auxiliary",
                AuxiliaryClassifier(
                    hidden_layer_sizes,
                    max_iter=max_iter,
                    device=device,
                    random_state=random_state,
                ),
            ),
        ]
    )
