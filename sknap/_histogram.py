"""Per-neuron histograms of positive activations, vectorised over neurons.

Thin wrappers over the counting engine (:mod:`sknap._kernels`) for one
matrix: its column maxima, and its counts in given bins. Every function works
on torch tensors, so that the same code runs on the CPU and on the
backbone's device.
"""

import torch

from . import _engine, _kernels
from ._engine import BINNINGS, as_tensor, bin_edges, entropy_from_counts

__all__ = [
    "BINNINGS",
    "as_tensor",
    "bin_edges",
    "column_max",
    "entropy_from_counts",
    "histogram_counts",
]


def column_max(A, check_finite=False):
    """Largest positive value of each column, as float64; 0 for a column with none.

    ``check_finite`` raises a ValueError for NaN or infinity, found in the
    same pass.
    """
    A = as_tensor(A)
    n = A.shape[1]
    rows = torch.zeros(A.shape[0], dtype=torch.int64, device=A.device)
    maxima = torch.zeros((1, n), dtype=torch.float64, device=A.device)
    active = torch.zeros((1, n), dtype=torch.int64, device=A.device)
    if not _kernels.first_pass(A, rows, maxima, active) and check_finite:
        raise ValueError(_engine.NONFINITE_BATCH)
    return maxima[0]


def histogram_counts(A, edges, binning="right"):
    """Counts of shape (n_neurons, n_bins) of the positive values of each column.

    Bins are right-closed, ``(edges[k], edges[k + 1]]``; values above the last
    edge go to the last bin. With ``binning="reference"`` bins are open and a
    value on an edge, or above the last one, is counted nowhere.
    """
    A = as_tensor(A)
    edges = edges.to(device=A.device, dtype=torch.float64)
    n = edges.shape[0]
    rows = torch.zeros(A.shape[0], dtype=torch.int64, device=A.device)
    seen_max = torch.zeros((1, n), dtype=torch.float64, device=A.device)
    T = _kernels.thresholds(edges, _kernels.working_dtype(A.dtype), binning)
    above = torch.zeros((1, *T.shape), dtype=torch.int64, device=A.device)
    _kernels.count_above(A, rows, T, above, seen_max)
    samples = torch.tensor([A.shape[0]], device=A.device)
    return _kernels.states_from_above(above, samples, binning)[0, :, 1:]
