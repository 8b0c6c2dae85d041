"""Per-neuron histograms of positive activations, vectorised over neurons.

Every function works on torch tensors so that the same code runs on the CPU
and on the backbone's device. The statistics are sums (maxima and counts), so
results from several batches or shards merge by ``torch.maximum`` and ``+``.
"""

import numpy as np
import torch
from scipy.stats import entropy as _scipy_entropy

from . import _kernels

BINNINGS = ("right", "reference")


def as_tensor(A):
    """A 2-D numpy array or tensor as a tensor, without copying when possible."""
    if isinstance(A, torch.Tensor):
        return A
    A = np.asarray(A)
    if any(s < 0 or s % A.itemsize for s in A.strides):
        # A column slice X[:, :k] is kept as a view; torch takes no other strides.
        A = np.ascontiguousarray(A)
    if not A.flags.writeable:
        # torch warns on read-only memory (a memmap, say); it is only read here.
        A = A.copy()
    return torch.from_numpy(A)


def column_max(A, check_finite=False):
    """Largest positive value of each column; 0 for a column with none.

    ``check_finite`` raises a ValueError for NaN or infinity, found in the
    same pass.
    """
    return _kernels.column_max(as_tensor(A), check_finite)


def bin_edges(maxima, n_bins, binning="right"):
    """Edges of shape (n_neurons, n_bins + 1) cutting ``(0, max]`` in equal bins.

    ``"right"`` puts the maximum exactly on the last edge. ``"reference"``
    reproduces the authors' code: edges ``k * w`` with ``w = max / n_bins``
    computed in floating point, so the last edge may miss the maximum.
    """
    maxima = maxima.to(torch.float64)
    k = torch.arange(n_bins + 1, dtype=torch.float64, device=maxima.device)
    if binning == "reference":
        return (maxima / n_bins)[:, None] * k
    edges = maxima[:, None] * k / n_bins
    edges[:, -1] = maxima
    return edges


def histogram_counts(A, edges, binning="right"):
    """Counts of shape (n_neurons, n_bins) of the positive values of each column.

    Bins are right-closed, ``(edges[k], edges[k + 1]]``; values above the last
    edge go to the last bin. With ``binning="reference"`` bins are open and a
    value on an edge, or above the last one, is counted nowhere.
    """
    A = as_tensor(A)
    edges = edges.to(device=A.device, dtype=torch.float64)
    # Counts of values above each edge, rounded down to A's dtype so that the
    # comparison is exact without converting A; a bin is a difference of two
    # (sknap/_kernels.py).
    return _kernels.histogram_counts(A, edges, binning)


def entropy_from_counts(counts, base=2.0):
    """Shannon entropy of each row of ``counts``; 0 for a row of zeros."""
    counts = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts)
    out = np.zeros(counts.shape[0], dtype=np.float64)
    nonzero = counts.sum(axis=1) > 0
    if nonzero.any():
        out[nonzero] = _scipy_entropy(counts[nonzero].T, base=base)
    return out
