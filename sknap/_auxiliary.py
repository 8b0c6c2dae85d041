"""The auxiliary classifier trained on ``[Y_proposed, Y_predicted]``."""

import threading
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)
from torch import nn
from tqdm.auto import tqdm

from . import _device
from ._histogram import as_tensor

__all__ = ["AuxiliaryClassifier"]

_GLOBAL_RNG_LOCK = threading.RLock()


class AuxiliaryClassifier(ClassifierMixin, BaseEstimator):
    """A small PyTorch MLP classifier, in the manner of MLPClassifier.

    The paper's auxiliary model: one hidden layer of ``2 * n_classes`` ReLU
    units and a softmax output, trained with Adam on the cross-entropy loss.
    The authors' code used hidden layers ``(2C, C)`` with dropout 0.2: set
    ``hidden_layer_sizes=(2 * C, C), dropout=0.2`` to match it.

    Parameters
    ----------
    hidden_layer_sizes : int, tuple of int or None, default=None
        Width of each hidden layer. ``None`` is ``(2 * n_classes,)``, worked out
        at fit.
    dropout : float, default=0.0
        Dropout after each hidden ReLU during training.
    alpha : float, default=0.0
        L2 penalty (Adam's weight decay).
    batch_size : int, default=16
        Samples per step (the authors used 8 to 16).
    learning_rate_init : float, default=1e-3
        Adam's learning rate.
    max_iter : int, default=20
        Largest number of epochs (the authors used 5 to 20).
    tol : float, default=1e-4
        Improvement that counts, as in MLPClassifier: training stops when for
        ``n_iter_no_change`` consecutive epochs the training loss (or, with
        ``early_stopping``, the validation accuracy) did not improve by at
        least ``tol`` on the best so far.
    early_stopping : bool, default=False
        Set aside ``validation_fraction`` of the training data (stratified),
        stop when its accuracy stops improving, and keep the weights of the
        epoch with the best accuracy.
    validation_fraction : float, default=0.1
        Fraction of the training data set aside with ``early_stopping``.
    n_iter_no_change : int, default=10
        Epochs without improvement by ``tol`` before training stops; it stops
        after ``n_iter_no_change + 1`` such epochs, as MLPClassifier does.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation, the batch order and dropout; an int gives
        identical results across runs on the same device.
    device : str or torch.device, default="auto"
        Where to train and predict: CUDA when available, else the CPU.
    verbose : bool, default=False
        Show a progress bar over epochs.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    hidden_layer_sizes_ : tuple of int
        Hidden widths used.
    model_ : torch.nn.Sequential
        The trained network (logits).
    loss_curve_ : list of float
        Mean training loss of each epoch (weighted by ``sample_weight``).
    best_loss_ : float or None
        Smallest value of ``loss_curve_``; None with ``early_stopping``.
    validation_scores_ : list of float or None
        Accuracy on the validation set after each epoch (weighted by
        ``sample_weight``); None without ``early_stopping``.
    best_validation_score_ : float or None
        Best of ``validation_scores_``, whose weights the model keeps; None
        without ``early_stopping``.
    n_iter_ : int
        Epochs that ran, at most ``max_iter``.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names, when ``X`` had them.

    See Also
    --------
    ActivationProbabilityFeatures : Makes this classifier's input.
    sklearn.neural_network.MLPClassifier : The interface this follows.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import AuxiliaryClassifier
    >>> X = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]] * 5)
    >>> y = np.array([0, 0, 1, 1] * 5)
    >>> clf = AuxiliaryClassifier(learning_rate_init=0.01, max_iter=50, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> clf.hidden_layer_sizes_
    (4,)
    >>> clf.predict([[0.95, 0.05], [0.05, 0.95]])
    array([0, 1])
    """

    _parameter_constraints = {
        "hidden_layer_sizes": [
            None,
            Interval(Integral, 1, None, closed="left"),
            tuple,
            list,
        ],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "verbose": ["boolean"],
    }

    def __init__(
        self,
        hidden_layer_sizes=None,
        *,
        dropout=0.0,
        alpha=0.0,
        batch_size=16,
        learning_rate_init=1e-3,
        max_iter=20,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=None,
        device="auto",
        verbose=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def __getstate__(self):
        # A copy: object.__getstate__ returns the live __dict__, and the
        # estimator must keep the module the user gave, wherever it is.
        state = dict(super().__getstate__())
        if isinstance(state.get("model_"), nn.Module):
            state["model_"] = _device.cpu_copy_if_cuda(state["model_"])
        return state

    def _hidden_sizes(self, n_classes):
        sizes = self.hidden_layer_sizes
        if sizes is None:
            return (2 * n_classes,)
        if isinstance(sizes, Integral):
            return (int(sizes),)
        if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
            raise ValueError(
                "The 'hidden_layer_sizes' parameter of AuxiliaryClassifier must be "
                f"a tuple of positive ints. Got {sizes!r} instead."
            )
        return tuple(int(s) for s in sizes)

    def _build(self, n_features, n_classes):
        sizes = [n_features, *self.hidden_layer_sizes_]
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=False):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
        layers.append(nn.Linear(sizes[-1], n_classes))
        return nn.Sequential(*layers)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Usually ``[Y_proposed, Y_predicted]``.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample in the loss, as in MLPClassifier: each
            batch's loss is the weighted mean of its samples' losses, so a
            weight of 2 counts a sample twice and a weight of 0 ignores it.
            In a Pipeline, route it with scikit-learn's metadata routing
            (``sklearn.set_config(enable_metadata_routing=True)`` and
            ``set_fit_request(sample_weight=True)`` on this step).

        Returns
        -------
        self : AuxiliaryClassifier
            The fitted classifier.
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                "AuxiliaryClassifier needs samples of at least 2 classes; y has 1 "
                f"class ({self.classes_[0]!r}). Give training data of several classes."
            )
        self.hidden_layer_sizes_ = self._hidden_sizes(len(self.classes_))
        device = _device.resolve_device(self.device, owner=type(self).__name__)
        random_state = check_random_state(self.random_state)
        seed = int(random_state.randint(np.iinfo(np.int32).max))
        weights = np.ones(len(y_idx)) if sample_weight is None else sample_weight
        train = val = None
        if self.early_stopping:
            train, val = _validation_split(
                len(y_idx), y_idx, self.validation_fraction, seed
            )
        if train is None:
            train = np.arange(len(y_idx))
        Xt = _as_finite_float32(X[train], device)
        yt = torch.as_tensor(y_idx[train], dtype=torch.int64, device=device)
        wt = torch.as_tensor(weights[train], dtype=torch.float32, device=device)
        # Initialisation and dropout draw from torch's global generator, which
        # threads share: the lock keeps two fits in threads (a grid search
        # with a threading backend) from reseeding each other's stream.
        with (
            _GLOBAL_RNG_LOCK,
            torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]),
        ):
            torch.manual_seed(seed)
            model = self._build(X.shape[1], len(self.classes_)).to(device)
            validation = None
            if val is not None:
                validation = (X[val], y_idx[val], weights[val])
            model = self._train(model, Xt, yt, wt, seed, validation)
        self.model_ = model.eval()
        return self

    def _train(self, model, Xt, yt, wt, seed, validation):
        """Epochs of Adam on the weighted mean loss, with MLPClassifier's
        stopping rule; sets the curves and ``n_iter_``."""
        optimizer = torch.optim.Adam(
            model.parameters(), lr=self.learning_rate_init, weight_decay=self.alpha
        )
        loss_fn = nn.CrossEntropyLoss(reduction="none")
        generator = torch.Generator().manual_seed(seed)
        n, total_weight = len(Xt), float(wt.sum())
        self.loss_curve_ = []
        self.best_loss_ = None if validation else np.inf
        self.validation_scores_ = [] if validation else None
        self.best_validation_score_ = -np.inf if validation else None
        best_state, no_improvement = None, 0
        self.n_iter_ = 0
        for _ in tqdm(range(self.max_iter), disable=not self.verbose, desc="aux"):
            model.train()
            order = torch.randperm(n, generator=generator).to(Xt.device)
            total = 0.0
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                w = wt[idx]
                batch_weight = w.sum()
                if not batch_weight > 0:
                    continue  # only samples of weight 0: nothing to learn
                optimizer.zero_grad()
                loss = (loss_fn(model(Xt[idx]), yt[idx]) * w).sum()
                (loss / batch_weight).backward()
                optimizer.step()
                total += float(loss.detach())
            if not np.isfinite(total):
                raise ValueError(
                    "AuxiliaryClassifier's training diverged: the loss became "
                    f"{total} in epoch {self.n_iter_ + 1}. Lower "
                    f"learning_rate_init (now {self.learning_rate_init}) or "
                    "scale X."
                )
            self.n_iter_ += 1
            self.loss_curve_.append(total / total_weight if total_weight else 0.0)
            if validation is None:
                last = self.loss_curve_[-1]
                worse = last > self.best_loss_ - self.tol
                self.best_loss_ = min(self.best_loss_, last)
            else:
                self.model_ = model.eval()
                X_val, y_val, w_val = validation
                score = float(
                    np.average(
                        self.predict(X_val) == self.classes_[y_val], weights=w_val
                    )
                    if w_val.sum() > 0
                    else 0.0
                )
                self.validation_scores_.append(score)
                worse = score < self.best_validation_score_ + self.tol
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best_state = {
                        k: v.detach().clone() for k, v in model.state_dict().items()
                    }
            no_improvement = no_improvement + 1 if worse else 0
            if no_improvement > self.n_iter_no_change:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        return model

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input features.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Softmax output; columns follow ``classes_``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        device = _device.resolve_device(self.device, owner=type(self).__name__)
        model = _device.on_device(self.model_, device)
        with torch.no_grad():
            logits = model(_as_finite_float32(X, device))
            return torch.softmax(logits.double(), dim=1).cpu().numpy()

    def predict(self, X):
        """Most probable class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input features.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels.
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _as_finite_float32(X, device):
    """``X`` as a float32 tensor; an error where a value does not fit float32."""
    with np.errstate(over="ignore"):  # checked below, with a clearer message
        X = np.asarray(X, dtype=np.float32)
    Xt = as_tensor(X).to(device)
    if not _device.all_finite(Xt):
        raise ValueError(
            "X has values beyond the range of float32 (largest "
            f"{torch.finfo(torch.float32).max:.3g}), in which AuxiliaryClassifier "
            "computes. Scale X first."
        )
    return Xt


def _validation_split(n, y_idx, fraction, seed):
    """Train and validation indices, stratified as MLPClassifier splits."""
    n_val, n_classes = int(np.ceil(fraction * n)), int(y_idx.max()) + 1
    if n_val < max(2, n_classes):
        raise ValueError(
            f"The validation set of early_stopping would have {n_val} sample(s) "
            f"(validation_fraction={fraction} of {n}); it needs at least 2 and "
            f"one per class ({n_classes}). Increase validation_fraction or give "
            "more samples."
        )
    train, val = train_test_split(
        np.arange(n), test_size=fraction, stratify=y_idx, random_state=seed
    )
    return np.sort(train), np.sort(val)
