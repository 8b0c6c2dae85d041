"""The paper's checkpoint sweep, built from sknap's estimators.

A backbone is trained with :func:`sknap.training.train_classifier`; every
``epochs_per_checkpoint`` epochs the training callback measures, on that
checkpoint:

* the backbone's train and test accuracy (from the softmax columns of the
  extracted activations, so without a second forward pass);
* :class:`~sknap.ActivationEntropy` on the training set: total, normalized,
  per class and per layer (H1);
* :class:`~sknap.ActivationProbabilityFeatures` and
  :class:`~sknap.AuxiliaryClassifier`: the auxiliary model's train and test
  accuracy with ``P`` fitted on the training set, in-sample as in the paper
  (H2);
* ablations: the same auxiliary network fed ``Y_predicted`` alone, a
  logistic-regression probe on the activations, cross-fitted ``P``, and the
  auxiliary model on the last two and on the last layer (Table 4).

Evaluation draws no random numbers from the training loop's generators, so
the backbone's trajectory does not depend on which measurements are taken.
"""

import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from .._auxiliary import AuxiliaryClassifier
from .._entropy import ActivationEntropy
from .._extraction import ActivationExtractor
from .._probabilities import ActivationProbabilityFeatures
from ..exceptions import DeadNeuronWarning
from ..statistics import backbone_accuracy
from ..training import train_classifier
from .datasets import subsample

__all__ = [
    "LAYER_CHOICES",
    "SweepResult",
    "SweepSettings",
    "auto_aux_batch_size",
    "evaluate_checkpoint",
    "extract",
    "run_sweep",
    "select_blocks",
]

LAYER_CHOICES = ("all", "last2", "last")


@dataclass
class SweepSettings:
    """Everything that defines a sweep besides the data and the backbone.

    Attributes
    ----------
    n_checkpoints : int
        Checkpoints measured (the paper: 20).
    epochs_per_checkpoint : int
        Training epochs between two checkpoints.
    layers : {"all", "last2", "last"}
        ReLU blocks used for the entropy and the main auxiliary model.
    reduce : str
        How a conv map becomes neurons (see ActivationExtractor).
    n_bins : int
        Histogram bins R.
    lr, batch_size, weight_decay : float, int, float
        Backbone training (Adam).
    aux_batch_size : int or None
        Auxiliary model's batch; None is :func:`auto_aux_batch_size`.
    aux_epochs : int
        Auxiliary model's epochs.
    cv : int
        Folds of the cross-fitted ablation.
    probe_max_samples : int
        Training samples the logistic-regression probe is fitted on.
    probe_max_iter : int
        Its lbfgs iterations.
    ablations : bool
        Run the Y_predicted-only, probe and cross-fitted ablations.
    compare_layers : bool
        Fit the auxiliary model on the last two and on the last layer (Table 4).
    extract_batch_size : int
        Samples per forward pass when extracting.
    random_state : int
        Seed of the backbone's training and of the auxiliary models.
    device : str
        Where to train and extract.

    See Also
    --------
    run_sweep : Runs the sweep these settings define.

    Examples
    --------
    The defaults are the paper's (20 checkpoints, R = 10, 20 epochs of the
    auxiliary model); ``sknap reproduce`` sets them from its options.

    >>> settings = SweepSettings(n_checkpoints=5, ablations=False)
    >>> settings.n_checkpoints, settings.n_bins, settings.aux_epochs
    (5, 10, 20)
    """

    n_checkpoints: int = 20
    epochs_per_checkpoint: int = 1
    layers: str = "all"
    reduce: str = "mean"
    n_bins: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    aux_batch_size: int | None = None
    aux_epochs: int = 20
    cv: int = 5
    probe_max_samples: int = 5000
    probe_max_iter: int = 200
    ablations: bool = True
    compare_layers: bool = True
    extract_batch_size: int = 256
    random_state: int = 0
    device: str = "auto"


@dataclass
class SweepResult:
    """Measurements of every checkpoint and how they were made.

    Attributes
    ----------
    records : list of dict
        One dict per checkpoint (see :func:`evaluate_checkpoint`).
    settings : dict
        :class:`SweepSettings` as a dict, with the resolved auxiliary batch.
    blocks : dict of str to list of str
        ReLU blocks behind ``"all"``, ``"last2"`` and ``"last"``.
    wall_time_s : float
        Seconds from the start of training to the last checkpoint.
    test_correct : list of dict
        Per record, in the same order: the record's ``test_correct`` (which
        test images each model gets right), kept out of the record so that
        the CSV and JSON stay one number per column.

    Examples
    --------
    >>> result = SweepResult(records=[{"checkpoint": 1, "train_acc": 0.5}])
    >>> len(result.records), result.wall_time_s
    (1, 0.0)
    """

    records: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    blocks: dict = field(default_factory=dict)
    wall_time_s: float = 0.0
    test_correct: list = field(default_factory=list)


def auto_aux_batch_size(n_samples):
    """The auxiliary model's batch when none is given.

    16 (the authors' largest) up to 4,000 samples; above that, the batch that
    keeps an epoch at 250 steps, so that 20 epochs on 60,000 samples take
    seconds rather than minutes while the number of optimiser steps stays that
    of a 4,000-sample run.

    Parameters
    ----------
    n_samples : int
        Training samples of the auxiliary model.

    Returns
    -------
    batch_size : int
        At least 16.

    Examples
    --------
    >>> auto_aux_batch_size(1437), auto_aux_batch_size(60000)
    (16, 240)
    """
    return max(16, math.ceil(n_samples / 250))


def select_blocks(layer_names, layers):
    """The blocks behind a ``layers`` choice, in forward order.

    Parameters
    ----------
    layer_names : list of str
        Blocks of an extractor, ``ActivationExtractor.layer_names_``.
    layers : {"all", "last2", "last"}
        Every block, the last two, or the last.

    Returns
    -------
    blocks : list of str
        The chosen blocks.

    Examples
    --------
    >>> select_blocks(["relu1", "relu2", "relu3"], "last2")
    ['relu2', 'relu3']
    """
    if layers not in LAYER_CHOICES:
        raise ValueError(
            f"The 'layers' setting must be one of {', '.join(LAYER_CHOICES)}. "
            f"Got {layers!r} instead."
        )
    names = list(layer_names)
    return {"all": names, "last2": names[-2:], "last": names[-1:]}[layers]


def _block_columns(extractor, blocks):
    """Column indices of ``blocks``' activations, then of the probabilities."""
    slices = [extractor.layer_slices_[b] for b in blocks]
    slices.append(extractor.layer_slices_["proba"])
    return np.concatenate([np.arange(s.start, s.stop) for s in slices])


def extract(
    model,
    X,
    *,
    layers=None,
    reduce="mean",
    batch_size=256,
    device="auto",
    progress=False,
):
    """Activations of every ReLU of ``model`` on ``X``, then its softmax.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone.
    X : ndarray of shape (n_samples, ...)
        Its inputs.
    layers : see ActivationExtractor, default=None
        Layers to read; None is every ``nn.ReLU``.
    reduce : str or callable, default="mean"
        How conv maps become neurons (see :class:`~sknap.ActivationExtractor`).
    batch_size : int, default=256
        Samples per forward pass.
    device : str, default="auto"
        Where to run the forward pass.
    progress : bool, default=False
        Show a progress bar over batches.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_neurons + n_outputs)
        The rows of :meth:`ActivationExtractor.transform`.
    extractor : ActivationExtractor
        Fitted; its ``layer_names_`` and ``layer_slices_`` describe ``Z``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap.toy import make_mlp
    >>> Z, extractor = extract(make_mlp(4, 3, hidden=(5, 2)), np.ones((6, 4)))
    >>> Z.shape, extractor.layer_names_
    ((6, 10), ['relu1', 'relu2'])
    """
    extractor = ActivationExtractor(
        model,
        layers=layers,
        reduce=reduce,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    extractor.fit(X[:2])
    return extractor.transform(X), extractor


def _entropy(Z, y, names, n_outputs, n_bins):
    est = ActivationEntropy(n_bins=n_bins, n_outputs=n_outputs)
    with warnings.catch_warnings():
        # Dead neurons are reported in the record (n_dead) instead.
        warnings.simplefilter("ignore", DeadNeuronWarning)
        est.fit(Z, y)
    return {
        "entropy": float(est.entropy_),
        "normalized_entropy": float(est.normalized_entropy_),
        "n_neurons": est.n_neurons_in_,
        "n_dead": est.n_dead_neurons_,
        "class_entropy": {
            str(c): float(e)
            for c, e in zip(est.classes_, est.class_entropy_, strict=True)
        },
        "layer_entropy": est.layer_entropy(names),
    }


@contextmanager
def _one_thread():
    """Run tiny networks on one CPU thread.

    A 2C-unit MLP gains nothing from intra-op threads, and on a busy machine
    their synchronisation costs far more than the work.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _aux_scores(F_train, y_train, F_test, y_test, settings, batch_size):
    aux = AuxiliaryClassifier(
        batch_size=batch_size,
        max_iter=settings.aux_epochs,
        random_state=settings.random_state,
        device=settings.device,
    )
    with _one_thread():
        aux.fit(F_train, y_train)
        correct = aux.predict(F_test) == y_test
        return float(aux.score(F_train, y_train)), float(correct.mean()), correct


def _probability_features(Z_train, y_train, Z_test, n_outputs, cv=None, n_bins=None):
    features = ActivationProbabilityFeatures(n_outputs=n_outputs, cv=cv, n_bins=n_bins)
    return features.fit_transform(Z_train, y_train), features.transform(Z_test)


def _probe_scores(A_train, y_train, A_test, y_test, settings):
    A_fit, y_fit = subsample(
        A_train, y_train, settings.probe_max_samples, random_state=settings.random_state
    )
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=settings.probe_max_iter)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(A_fit, y_fit)
    correct = probe.predict(A_test) == y_test
    return float(probe.score(A_train, y_train)), float(correct.mean()), correct


def evaluate_checkpoint(model, data, settings, *, progress=False):
    """Measure one checkpoint of ``model`` on ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone as it is now; left unchanged.
    data : ImageData
        Train and test images.
    settings : SweepSettings
        What to measure and how.
    progress : bool, default=False
        Progress bars over extraction batches.

    Returns
    -------
    record : dict
        ``train_acc``, ``test_acc`` (backbone); ``entropy``,
        ``normalized_entropy``, ``n_neurons``, ``n_dead``, ``class_entropy``,
        ``layer_entropy`` (training set, chosen layers); ``aux_train_acc``,
        ``aux_test_acc`` (the paper's PTr, PTe); with ablations
        ``ypred_train_acc``, ``ypred_test_acc`` (Y_predicted alone),
        ``binned_train_acc``, ``binned_test_acc`` (binned features,
        ``ActivationProbabilityFeatures(n_bins=settings.n_bins)``),
        ``probe_train_acc``, ``probe_test_acc``, ``cv_aux_train_acc``,
        ``cv_aux_test_acc``; with ``compare_layers`` ``last2_train_acc``,
        ``last2_test_acc``, ``last_train_acc``, ``last_test_acc``. Accuracies
        are fractions. ``test_correct``: for ``"backbone"`` and each of those
        names, a bool array of shape (n_test,), True where that model is right
        on the test image (the bootstrap over test images resamples these).
    blocks : dict of str to list of str
        Blocks behind each ``layers`` choice.

    Examples
    --------
    >>> from sknap.paper.backbones import make_backbone
    >>> from sknap.paper.datasets import load_dataset
    >>> data = load_dataset("digits", train_size_limit=100, test_size_limit=50)
    >>> model = make_backbone("fcnn", data.input_shape, data.n_classes)
    >>> settings = SweepSettings(aux_epochs=1, ablations=False,
    ...                          compare_layers=False, device="cpu")
    >>> record, blocks = evaluate_checkpoint(model, data, settings)
    >>> sorted(record)[:4], blocks["last"]
    (['aux_test_acc', 'aux_train_acc', 'class_entropy', 'entropy'], ['relu2'])
    """
    start = time.perf_counter()
    C = data.n_classes
    y_train, y_test = data.y_train, data.y_test
    kwargs = dict(
        reduce=settings.reduce,
        batch_size=settings.extract_batch_size,
        device=settings.device,
        progress=progress,
    )
    Z_train, extractor = extract(model, data.X_train, **kwargs)
    Z_test = extractor.transform(data.X_test)
    names = extractor.get_feature_names_out()
    blocks = {k: select_blocks(extractor.layer_names_, k) for k in LAYER_CHOICES}
    record = {
        "train_acc": backbone_accuracy(Z_train, y_train, C),
        "test_acc": backbone_accuracy(Z_test, y_test, C),
    }
    cols = _block_columns(extractor, blocks[settings.layers])
    Ztr, Zte = Z_train[:, cols], Z_test[:, cols]
    record.update(_entropy(Ztr, y_train, names[cols], C, settings.n_bins))
    batch = settings.aux_batch_size or auto_aux_batch_size(len(y_train))

    def aux_scores(F_train, F_test):
        return _aux_scores(F_train, y_train, F_test, y_test, settings, batch)

    F_train, F_test = _probability_features(Ztr, y_train, Zte, C)
    correct = {"backbone": Z_test[:, -C:].argmax(1) == y_test}

    def put(name, scores):
        record[f"{name}_train_acc"], record[f"{name}_test_acc"], correct[name] = scores

    put("aux", aux_scores(F_train, F_test))
    if settings.ablations:
        put("ypred", aux_scores(F_train[:, C:], F_test[:, C:]))
        put(
            "binned",
            aux_scores(
                *_probability_features(Ztr, y_train, Zte, C, n_bins=settings.n_bins)
            ),
        )
        put("probe", _probe_scores(Ztr[:, :-C], y_train, Zte[:, :-C], y_test, settings))
        put(
            "cv_aux",
            aux_scores(*_probability_features(Ztr, y_train, Zte, C, settings.cv)),
        )
    if settings.compare_layers:
        for choice in ("last2", "last"):
            if blocks[choice] == blocks[settings.layers]:
                scores = record["aux_train_acc"], record["aux_test_acc"], correct["aux"]
            else:
                c = _block_columns(extractor, blocks[choice])
                scores = aux_scores(
                    *_probability_features(Z_train[:, c], y_train, Z_test[:, c], C)
                )
            put(choice, scores)
    record["test_correct"] = correct
    record["seconds"] = time.perf_counter() - start
    return record, blocks


def run_sweep(model, data, settings=None, *, progress=True, on_checkpoint=None):
    """Train ``model`` on ``data`` and measure it at every checkpoint.

    Parameters
    ----------
    model : torch.nn.Module
        An untrained backbone (see :func:`sknap.paper.backbones.make_backbone`); it
        is trained in place.
    data : ImageData
        Train and test images; the backbone trains on ``data.y_train``, which
        holds shuffled labels for the "Mixed" control.
    settings : SweepSettings, default=None
        None uses the defaults (20 checkpoints, one epoch apart).
    progress : bool, default=True
        Show a progress bar over training epochs, labelled while a checkpoint
        is measured.
    on_checkpoint : callable, default=None
        Called as ``on_checkpoint(record)`` after each checkpoint, for
        instance to save partial results.

    Returns
    -------
    result : SweepResult
        The records of every checkpoint, in order.

    Examples
    --------
    >>> from sknap.paper.backbones import make_backbone
    >>> from sknap.paper.datasets import load_dataset
    >>> data = load_dataset("digits", train_size_limit=200, test_size_limit=100)
    >>> model = make_backbone("fcnn", data.input_shape, data.n_classes)
    >>> settings = SweepSettings(n_checkpoints=2, aux_epochs=2, ablations=False)
    >>> result = run_sweep(model, data, settings, progress=False)
    >>> [r["checkpoint"] for r in result.records]
    [1, 2]
    """
    settings = settings or SweepSettings()
    select_blocks([], settings.layers)  # Raises on an unknown choice.
    k = int(settings.epochs_per_checkpoint)
    if settings.n_checkpoints < 1 or k < 1:
        raise ValueError(
            "n_checkpoints and epochs_per_checkpoint must be positive ints; got "
            f"{settings.n_checkpoints} and {settings.epochs_per_checkpoint}."
        )
    resolved = asdict(settings)
    resolved["aux_batch_size"] = settings.aux_batch_size or auto_aux_batch_size(
        len(data.y_train)
    )
    result = SweepResult(settings=resolved)
    # One bar over epochs; its label says whether it trains or measures.
    bar = tqdm(
        total=settings.n_checkpoints * k,
        desc="training",
        unit="epoch",
        disable=not progress,
    )
    start = time.perf_counter()

    def callback(net, epoch):
        bar.update(1)
        if epoch % k:
            return
        bar.set_description(f"measuring checkpoint {epoch // k}")
        record, result.blocks = evaluate_checkpoint(net, data, settings)
        result.test_correct.append(record.pop("test_correct"))
        record = {
            "checkpoint": epoch // k,
            "epoch": epoch,
            "seed": settings.random_state,
            **record,
        }
        result.records.append(record)
        bar.set_description("training")
        bar.set_postfix(
            acc=f"{record['train_acc']:.3f}/{record['test_acc']:.3f}",
            aux=f"{record['aux_test_acc']:.3f}",
            E=f"{record['normalized_entropy']:.3f}",
        )
        if on_checkpoint is not None:
            on_checkpoint(record)

    try:
        train_classifier(
            model,
            data.X_train,
            data.y_train,
            epochs=settings.n_checkpoints * k,
            lr=settings.lr,
            batch_size=settings.batch_size,
            weight_decay=settings.weight_decay,
            random_state=settings.random_state,
            device=settings.device,
            callback=callback,
        )
    finally:
        bar.close()
    result.wall_time_s = time.perf_counter() - start
    return result
