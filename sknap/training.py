"""A plain PyTorch training loop for the backbones sknap's tools train."""

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import _device

__all__ = ["train_classifier", "predict_proba"]


def _loader(X, y, batch_size, shuffle, generator):
    dataset = torch.utils.data.TensorDataset(
        torch.as_tensor(np.asarray(X, dtype=np.float32)),
        torch.as_tensor(np.asarray(y, dtype=np.int64)),
    )
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator
    )


def train_classifier(
    model,
    X,
    y,
    *,
    epochs=10,
    lr=1e-3,
    batch_size=64,
    weight_decay=0.0,
    random_state=0,
    device="auto",
    progress=False,
    callback=None,
):
    """Train ``model`` in place with Adam and the cross-entropy loss.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of inputs to logits.
    X : ndarray of shape (n_samples, ...)
        Inputs.
    y : ndarray of shape (n_samples,)
        Integer labels in ``[0, n_classes)``.
    epochs : int, default=10
        Passes over the data.
    lr : float, default=1e-3
        Adam's learning rate.
    batch_size : int, default=64
        Samples per step.
    weight_decay : float, default=0.0
        Adam's L2 penalty.
    random_state : int, default=0
        Seed of the batch order and of dropout.
    device : str, default="auto"
        Where to train; the model is moved there (and stays there).
    progress : bool, default=False
        Show a progress bar over epochs.
    callback : callable, default=None
        Called as ``callback(model, epoch)`` after each epoch (1-based).

    Returns
    -------
    model : torch.nn.Module
        The same module, trained, left in train mode.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap.toy import make_mlp
    >>> X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(np.int64)
    >>> epochs = []
    >>> model = make_mlp(4, 2, hidden=(8,), random_state=0)
    >>> model = train_classifier(model, X, y, epochs=3,
    ...                          callback=lambda m, epoch: epochs.append(epoch))
    >>> epochs
    [1, 2, 3]
    """
    device = _device.resolve_device(device, owner="train_classifier")
    model.to(device)
    generator = torch.Generator().manual_seed(random_state)
    loader = _loader(X, y, batch_size, True, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        for epoch in tqdm(range(1, epochs + 1), disable=not progress, desc="train"):
            model.train()
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                optimizer.zero_grad()
                loss_fn(model(xb), yb).backward()
                optimizer.step()
            if callback is not None:
                callback(model, epoch)
    return model


def predict_proba(model, X, *, batch_size=512, device="auto"):
    """Softmax of ``model`` on ``X`` in eval mode, as a numpy array.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of inputs to logits.
    X : ndarray of shape (n_samples, ...)
        Inputs.
    batch_size : int, default=512
        Samples per forward pass.
    device : str, default="auto"
        Where to run.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
        Class probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap.toy import make_mlp
    >>> proba = predict_proba(make_mlp(4, 3, hidden=(8,)), np.zeros((5, 4)))
    >>> proba.shape, bool(np.allclose(proba.sum(axis=1), 1))
    ((5, 3), True)
    """
    device = _device.resolve_device(device, owner="predict_proba")
    net = _device.on_device(model, device)
    out = []
    with _device.EvalMode(net), torch.no_grad():
        X = np.asarray(X, dtype=np.float32)
        for s in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[s : s + batch_size], device=device)
            out.append(torch.softmax(net(xb).float(), dim=1).cpu().numpy())
    return np.concatenate(out)
