"""Per-neuron histograms of positive activations, vectorised over neurons.

Every function works on torch tensors so that the same code runs on the CPU
and on the backbone's device. The statistics are sums (maxima and counts), so
results from several batches or shards merge by ``torch.maximum`` and ``+``.
"""

import numpy as np
import torch
from scipy.stats import entropy as _scipy_entropy

BINNINGS = ("right", "reference")
# Rows per chunk keep the float64 temporaries of a chunk near 32 MiB.
_CHUNK_ELEMENTS = 1 << 22


def as_tensor(A):
    """A 2-D numpy array or tensor as a tensor, without copying when possible."""
    if isinstance(A, torch.Tensor):
        return A
    A = np.ascontiguousarray(A)
    if not A.flags.writeable:
        # torch warns on read-only memory (a memmap, say); it is only read here.
        A = A.copy()
    return torch.from_numpy(A)


def column_max(A):
    """Largest positive value of each column; 0 for a column with none."""
    A = as_tensor(A)
    if A.shape[0] == 0:
        return torch.zeros(A.shape[1], dtype=torch.float64, device=A.device)
    return A.amax(dim=0).to(torch.float64).clamp_min(0.0)


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
    n_neurons, n_bins = edges.shape[0], edges.shape[1] - 1
    counts = torch.zeros(n_neurons * n_bins, dtype=torch.int64, device=A.device)
    if n_neurons == 0:
        return counts.reshape(0, n_bins)
    top = edges[:, -1]
    scale = torch.where(top > 0, n_bins / top, torch.zeros_like(top))
    flat_edges = edges.reshape(-1)
    edge_base = torch.arange(n_neurons, device=A.device) * (n_bins + 1)
    bin_base = torch.arange(n_neurons, device=A.device) * n_bins
    rows = max(1, _CHUNK_ELEMENTS // n_neurons)
    for start in range(0, A.shape[0], rows):
        v = A[start : start + rows].to(torch.float64)
        # The scaled guess is off by at most one bin near an edge; the exact
        # comparison with the stored edges settles it.
        idx = torch.ceil(v * scale).sub_(1).clamp_(0, n_bins - 1).long()
        lower = flat_edges[edge_base + idx]
        upper = flat_edges[edge_base + idx + 1]
        idx -= ((v <= lower) & (idx > 0)).long()
        idx += ((v > upper) & (idx < n_bins - 1)).long()
        if binning == "reference":
            lower = flat_edges[edge_base + idx]
            upper = flat_edges[edge_base + idx + 1]
            keep = (v > lower) & (v < upper)
        else:
            keep = v > 0
        counts += torch.bincount(
            (idx + bin_base)[keep], minlength=n_neurons * n_bins
        )
    return counts.reshape(n_neurons, n_bins)


def entropy_from_counts(counts, base=2.0):
    """Shannon entropy of each row of ``counts``; 0 for a row of zeros."""
    counts = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts)
    out = np.zeros(counts.shape[0], dtype=np.float64)
    nonzero = counts.sum(axis=1) > 0
    if nonzero.any():
        out[nonzero] = _scipy_entropy(counts[nonzero].T, base=base)
    return out
