"""Small backbones, shipped for tests, docstrings and the demo."""

from collections import OrderedDict

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from .training import train_classifier

__all__ = ["make_mlp", "digits_mlp"]


def make_mlp(n_features, n_classes, *, hidden=(512, 512), random_state=None):
    """A fully connected network: ``Linear`` and ``ReLU`` per hidden layer, ``Linear``.

    With ``n_features=784`` and the default ``hidden`` this is the paper's FCNN
    (784-512-512-10).

    Parameters
    ----------
    n_features : int
        Input size.
    n_classes : int
        Number of outputs (logits).
    hidden : tuple of int, default=(512, 512)
        Width of each hidden layer.
    random_state : int or None, default=None
        Seed of the weight initialisation.

    Returns
    -------
    model : torch.nn.Sequential
        Modules ``fc1, relu1, fc2, relu2, ..., out``.

    Examples
    --------
    >>> make_mlp(4, 3, hidden=(5,))
    Sequential(
      (fc1): Linear(in_features=4, out_features=5, bias=True)
      (relu1): ReLU()
      (out): Linear(in_features=5, out_features=3, bias=True)
    )
    """
    sizes = [n_features, *hidden]
    layers = OrderedDict()
    with torch.random.fork_rng(devices=[]):
        if random_state is not None:
            torch.manual_seed(random_state)
        for i, (n_in, n_out) in enumerate(
            zip(sizes[:-1], sizes[1:], strict=False), start=1
        ):
            layers[f"fc{i}"] = nn.Linear(n_in, n_out)
            layers[f"relu{i}"] = nn.ReLU()
        layers["out"] = nn.Linear(sizes[-1], n_classes)
    return nn.Sequential(layers)


def digits_mlp(*, hidden=(64, 32), epochs=30, test_size=0.5, random_state=0):
    """An MLP trained on scikit-learn's digits, with its train/test split.

    The digits ship with scikit-learn, so this runs offline. Pixels are scaled
    to [0, 1]; the split is stratified.

    Parameters
    ----------
    hidden : tuple of int, default=(64, 32)
        Hidden layer widths.
    epochs : int, default=30
        Training epochs.
    test_size : float, default=0.5
        Fraction of the 1,797 images held out.
    random_state : int, default=0
        Seed of the split, the initialisation and the batch order.

    Returns
    -------
    model : torch.nn.Sequential
        The trained network, in eval mode, on the CPU.
    X_train, X_test : ndarray of shape (n, 64), dtype=float32
        Images.
    y_train, y_test : ndarray of shape (n,), dtype=int64
        Labels 0-9.

    Examples
    --------
    >>> model, X_train, X_test, y_train, y_test = digits_mlp(epochs=5)
    >>> X_train.shape, X_test.shape
    ((898, 64), (899, 64))
    """
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=random_state
    )
    model = make_mlp(64, 10, hidden=hidden, random_state=random_state)
    train_classifier(model, X_train, y_train, epochs=epochs, random_state=random_state)
    return model.eval(), X_train, X_test, y_train, y_test
