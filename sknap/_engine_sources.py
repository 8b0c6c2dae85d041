"""How batches reach :class:`~sknap.streaming.NeuronStatistics` and
:class:`~sknap.streaming.HistogramStatistics`.

Sources of batches (arrays, tensors, ``(activations, labels)`` pairs,
DataLoaders, :meth:`ActivationExtractor.batches`), the pass over an
extractor that counts each layer's block inside its forward hook, and
:func:`compute_statistics`, both passes over a re-iterable source.
"""

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from scipy import sparse

from . import _passes

__all__ = [
    "ActivationBatches",
    "compute_statistics",
    "count_extractor_pass",
    "is_batch_source",
    "iter_batches",
]


def count_extractor_pass(stats, extractor, X, y, probabilities=True):
    """Count the extractor's blocks into ``stats`` inside its forward hooks,
    while each layer's output is in the cache: the rows are never assembled.

    Uses the statistics' block protocol (``start_batch``, ``count_block``,
    ``end_batch``). The first pass's kernel looks for NaN and infinity (the
    extractor then names the layer). Without ``probabilities`` the
    backbone's probability columns are neither computed nor counted (they
    stay 0), for fits that do not read them.
    """
    n_columns = extractor.n_neurons_ + extractor.n_outputs_  # start_batch checks
    # Labels given as an array are validated and looked up once for the
    # whole pass; its batches are consecutive slices of it.
    whole = {"rows": None, "position": 0}

    def start(labels, n_rows, device):
        if y is None:
            return stats.start_batch(labels, n_rows, n_columns, device)
        if whole["rows"] is None:
            whole["rows"] = stats.start_batch(y, len(y), n_columns, device)
        position = whole["position"]
        whole["position"] = position + n_rows
        return whole["rows"][position : position + n_rows]

    def consume(rows, offset, block):
        return stats.count_block(block, rows, offset)

    _passes.consume_blocks(
        extractor, X, y, start, consume, stats.end_batch, probabilities
    )


def iter_batches(batches):
    """Yield ``(A, y)`` from arrays, tensors, or ``(A, y)`` pairs."""
    for item in batches:
        if isinstance(item, tuple | list) and len(item) == 2:
            yield item[0], item[1]
        else:
            yield item, None


class ColumnBatches:
    """Some columns of another source of batches, read batch by batch.

    What :meth:`ActivationEntropy.transform` returns for batches: the kept
    activation columns and the probability block, without a matrix.

    Parameters
    ----------
    batches : re-iterable
        Batches or ``(batch, labels)`` pairs.
    columns : array-like of int
        The columns kept, in order.
    """

    def __init__(self, batches, columns):
        self.batches = batches
        self.columns = torch.as_tensor(np.asarray(columns), dtype=torch.int64)
        names = getattr(batches, "feature_names", None)
        self.feature_names = None if names is None else np.asarray(names)[columns]
        self.y = getattr(batches, "y", None)

    def __iter__(self):
        for A, y in iter_batches(self.batches):
            A = A if isinstance(A, torch.Tensor) else torch.as_tensor(np.asarray(A))
            yield A[:, self.columns.to(A.device)], y


class ActivationBatches:
    """The rows of :meth:`ActivationExtractor.transform`, computed batch by batch.

    Made by :meth:`ActivationExtractor.batches`. Every iteration runs the
    backbone over the data again and yields ``(Z, labels)``, ``Z`` a float32
    tensor on the extractor's device, so that a two-pass fit never holds more
    than one batch.

    Parameters
    ----------
    extractor : ActivationExtractor
        A fitted extractor.
    X : array-like, Tensor, Dataset or DataLoader
        Its inputs.
    y : array-like of shape (n_samples,), default=None
        Labels, cut into batches along with ``X``.

    Attributes
    ----------
    extractor : ActivationExtractor
        The fitted extractor.
    feature_names : ndarray of str
        Names of the columns of ``Z`` (they mark the probability block).

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import ActivationExtractor
    >>> from sknap.toy import make_mlp
    >>> X = np.ones((10, 4), dtype=np.float32)
    >>> extractor = ActivationExtractor(make_mlp(4, 3, hidden=(5,)), batch_size=4)
    >>> batches = extractor.fit(X).batches(X, np.arange(10) % 3)
    >>> [(tuple(Z.shape), labels.tolist()) for Z, labels in batches][-1]
    ((2, 8), [2, 0])
    """

    def __init__(self, extractor, X, y=None):
        self.extractor = extractor
        self.X = X
        self.y = y
        self.feature_names = extractor.get_feature_names_out()

    def __iter__(self):
        return _passes.iter_rows(self.extractor, self.X, self.y)

    def __repr__(self):
        return f"ActivationBatches({self.extractor!r})"


def check_reiterable(batches, what):
    if isinstance(batches, Iterator):
        raise TypeError(
            f"{what} needs two passes over the batches, but an iterator (such as "
            "a generator) can be read only once. Pass a list, a DataLoader, "
            "ActivationExtractor.batches(X, y), or any object whose iteration "
            "restarts; or compute NeuronStatistics yourself."
        )


def is_batch_source(X):
    """Whether ``X`` is streamed (statistics or an iterable of batches).

    True for :class:`NeuronStatistics` and :class:`HistogramStatistics`, a
    DataLoader, an iterator, and a list or other iterable whose first item
    is a 2-D array or tensor, or an ``(activations, labels)`` pair. Arrays,
    tensors, DataFrames and lists of rows are in-memory data.

    Parameters
    ----------
    X : object
        What an estimator's ``fit`` was given.

    Returns
    -------
    streamed : bool
        Whether ``fit`` reads ``X`` batch by batch.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.ones((4, 3))
    >>> is_batch_source(A), is_batch_source([A[:2], A[2:]]), is_batch_source(A.tolist())
    (False, True, False)
    """
    from ._counting import CountingPass

    if isinstance(X, CountingPass | torch.utils.data.DataLoader):
        return True
    if (
        isinstance(X, np.ndarray | torch.Tensor | str | bytes)
        or hasattr(X, "__array__")
        or sparse.issparse(X)
    ):
        return False
    if isinstance(X, Iterator):
        return True
    if isinstance(X, list | tuple):
        if not X:
            return False
        first = X[0]
        if isinstance(first, tuple | list) and len(first) == 2:
            first = first[0]
        return getattr(first, "ndim", None) == 2
    return isinstance(X, Iterable) and not isinstance(X, dict)


def compute_statistics(batches, *, n_bins=10, binning="right", per_class=True):
    """Both passes over ``batches``: statistics that both estimators fit from.

    Parameters
    ----------
    batches : re-iterable
        Arrays or tensors of shape (n_samples, n_columns), or
        ``(activations, labels)`` pairs; a list, a DataLoader or
        :meth:`ActivationExtractor.batches`, which runs the backbone again on
        the second pass.
    n_bins : int, default=10
        Number of equal bins ``R``.
    binning : {"right", "reference"}, default="right"
        As in :class:`~sknap.ActivationEntropy`.
    per_class : bool, default=True
        Also count within each class (when the batches have labels).

    Returns
    -------
    stats : HistogramStatistics
        Second-pass statistics.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import ActivationEntropy
    >>> A = np.maximum(np.random.default_rng(0).normal(size=(100, 3)), 0)
    >>> stats = compute_statistics([A[:60], A[60:]], n_bins=4)
    >>> stats.n_samples_, tuple(stats.hist_.shape)
    (100, (3, 4))
    >>> entropy = ActivationEntropy(n_bins=4, n_outputs=0).fit(stats)
    >>> entropy.neuron_entropy_.shape
    (3,)
    """
    stats = two_passes(batches, "compute_statistics", n_bins, binning, per_class)
    if not stats.second_pass:
        raise ValueError("The batches are empty: there is nothing to count.")
    return stats


def two_passes(batches, what, n_bins, binning, per_class, probabilities=True):
    """Second-pass statistics of ``batches``; the empty first pass if no batch.

    Without ``probabilities``, an extractor's probability columns are not
    counted (see :func:`count_extractor_pass`).
    """
    from .streaming import NeuronStatistics

    check_reiterable(batches, what)
    first = NeuronStatistics().update_from(batches, probabilities=probabilities)
    if first.class_max_ is None or first.n_samples_ == 0:
        return first
    second = first.begin_histograms(n_bins, binning=binning, per_class=per_class)
    return second.update_from(batches, probabilities=probabilities)
