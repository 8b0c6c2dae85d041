"""Binned activation states and their class-conditional scores (design 2b).

Each neuron's value is in one of ``R + 1`` states: 0, inactive (``<= 0``),
or ``1 .. R``, the right-closed bins over ``(0, m_j]`` of the entropy (values
above ``m_j`` in the last bin). ``P[c, j, r]`` is the fraction of class-``c``
training samples whose neuron ``j`` is in state ``r``, from the engine's
per-class counts on the shared edges (``HistogramStatistics.counts_``). A sample
is scored per class by

* the sum form, ``q_c = sum over active j of P[c, j, state_j]``, then
  ``Y_proposed = q * Y_predicted`` normalised (the paper's Eq. 16; with
  ``R = 1`` this is the paper's ``P @ u``), or
* the log form, a naive-Bayes score computed in log space:
  ``log q_c = sum over all j of log P[c, j, state_j]`` and
  ``Y_proposed = softmax(log q + log Y_predicted)``.

The functions take torch tensors or arrays, so that the in-memory transform
and :func:`~sknap.fused.fused_transform` share them.
"""

import numpy as np
import torch

from . import _kernels

__all__ = [
    "fitted_model",
    "log_scores",
    "normalise_sum",
    "softmax_log",
    "state_probability",
    "states",
    "sum_scores",
    "two_states",
]


def state_probability(counts, class_count, alpha=0.0):
    """``P[c, j, r] = (counts + alpha) / (n_c + (R + 1) alpha)``; 0 for ``n_c + ...
    = 0``.

    The categorical smoothing of CategoricalNB; with ``R = 1`` (two states)
    it is the paper's ``(active + alpha) / (n_c + 2 alpha)``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_states = counts.shape[-1]
    denominator = np.asarray(class_count, dtype=np.float64) + n_states * alpha
    denominator = denominator[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (counts + alpha) / denominator, 0.0)


def states(A, T):
    """State of every value: how many thresholds of its neuron it exceeds.

    Parameters
    ----------
    A : Tensor of shape (n_samples, n_neurons)
        Activations, in float32 or float64.
    T : Tensor of shape (R, n_neurons)
        :func:`sknap._kernels.thresholds` of the fitted edges in ``A``'s
        dtype (the counts of the fit compared against the same numbers).

    Returns
    -------
    states : Tensor of shape (n_samples, n_neurons), dtype=int64
        0 for ``v <= 0``, ``k + 1`` for ``v`` in bin ``k``, ``R`` above the
        last edge.
    """
    # searchsorted counts, per neuron, the thresholds strictly below v.
    return torch.searchsorted(T.t().contiguous(), A.t().contiguous()).t()


def thresholds_for(A, edges):
    """The thresholds of ``edges`` in the working dtype of ``A``, on its device."""
    dtype = _kernels.working_dtype(A.dtype)
    edges = torch.as_tensor(edges, dtype=torch.float64)
    return _kernels.thresholds(edges, dtype, "right").to(A.device), dtype


def sum_scores(S, P):
    """``q[i, c] = sum over j with S[i, j] > 0 of P[c, j, S[i, j]]``.

    ``S`` (n_samples, n_neurons) states; ``P`` (n_classes, n_neurons, R + 1),
    a tensor on ``S``'s device. One product per bin, so no (samples x
    neurons x classes) array is made.
    """
    q = torch.zeros((S.shape[0], P.shape[0]), dtype=P.dtype, device=S.device)
    for r in range(1, P.shape[2]):
        q.addmm_((S == r).to(P.dtype), P[:, :, r].t())
    return q


def log_scores(S, P):
    """``log q[i, c] = sum over all j of log P[c, j, S[i, j]]``, -inf where
    some ``P[c, j, S[i, j]]`` is 0.

    The zero probabilities are counted apart, so that ``0 * log 0`` never
    makes NaN.
    """
    zero = P <= 0
    logP = torch.where(zero, 0.0, torch.log(torch.where(zero, 1.0, P)))
    out = torch.zeros((S.shape[0], P.shape[0]), dtype=P.dtype, device=S.device)
    impossible = torch.zeros_like(out)
    for r in range(P.shape[2]):
        in_state = (S == r).to(P.dtype)
        out.addmm_(in_state, logP[:, :, r].t())
        if zero[:, :, r].any():
            impossible.addmm_(in_state, zero[:, :, r].to(P.dtype).t())
    return torch.where(impossible > 0, -torch.inf, out)


def normalise_sum(q, proba):
    """``q * proba`` over its row sum; ``proba`` where that sum is not positive."""
    raw = q * proba
    total = raw.sum(dim=1, keepdim=True)
    ok = total > 0
    return torch.where(ok, raw / torch.where(ok, total, 1.0), proba)


def softmax_log(log_q, proba):
    """``softmax(log q + log proba)``; ``proba`` where every class is -inf."""
    z = log_q + torch.log(proba.to(log_q.dtype))
    top = z.amax(dim=1, keepdim=True)
    ok = torch.isfinite(top)
    e = torch.exp(z - torch.where(ok, top, 0.0))
    e = torch.where(ok, e, 0.0)
    total = e.sum(dim=1, keepdim=True)
    return torch.where(ok, e / torch.where(ok, total, 1.0), proba.to(log_q.dtype))


def proposed(A, proba, P, edges, form):
    """``Y_proposed`` of activations ``A`` from the binned ``P`` and ``edges``.

    Parameters
    ----------
    A : Tensor of shape (n_samples, n_neurons)
    proba : Tensor of shape (n_samples, n_classes)
    P : Tensor of shape (n_classes, n_neurons, R + 1)
    edges : ndarray or Tensor of shape (n_neurons, R + 1)
    form : {"sum", "log"}

    Returns
    -------
    Y_proposed : Tensor of shape (n_samples, n_classes), dtype of ``P``
    """
    T, dtype = thresholds_for(A, edges)
    S = states(A.to(dtype), T)
    proba = proba.to(P.dtype)
    if form == "log":
        return softmax_log(log_scores(S, P), proba)
    return normalise_sum(sum_scores(S, P), proba)


def two_states(P, class_count, alpha=0.0):
    """The paper's ``P`` as two states, inactive and active, edges 0: the
    ``(P[c, j, r], edges)`` of binned states with ``R = 1``."""
    empty = (np.asarray(class_count) + 2 * alpha <= 0)[:, None]
    P2 = np.stack([np.where(empty, 0.0, 1.0 - P), P], axis=-1)
    return P2, np.zeros((P.shape[1], 2))


def fitted_model(features):
    """The ``(P, edges)`` that a fitted ActivationProbabilityFeatures
    ``features`` applies in ``transform``: the paper's ``P`` and None, or the
    states' ``P[c, j, r]`` and their edges."""
    if features.n_bins is not None:
        return features.state_probability_, features.bin_edges_
    if features.form == "sum":
        return features.activation_probability_, None
    return two_states(
        features.activation_probability_, features.class_count_, features.alpha
    )
