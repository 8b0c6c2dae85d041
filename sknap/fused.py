"""Auxiliary features in the forward pass, without the activation matrix.

Scoring a fitted pipeline step by step builds the (n_samples x n_neurons)
activation matrix on the host before :class:`ActivationEntropy` keeps some
columns and :class:`ActivationProbabilityFeatures` reduces them to
``2 * n_classes`` numbers per sample. :func:`fused_transform` does those
steps on the backbone's device right after each forward pass, so only the
``[Y_proposed, Y_predicted]`` rows leave it.
"""

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from . import _binned, _device, _passes
from ._extraction import check_input

__all__ = ["fused_transform"]


def _steps(pipeline):
    """(extractor, entropy or None, probabilities) of a fitted pipeline."""
    from ._entropy import ActivationEntropy
    from ._extraction import ActivationExtractor
    from ._probabilities import ActivationProbabilityFeatures

    if hasattr(pipeline, "steps"):
        steps = [est for _, est in pipeline.steps]
    else:
        steps = list(pipeline)
    steps = [est for est in steps if est not in (None, "passthrough")]
    kinds = (ActivationExtractor, ActivationEntropy, ActivationProbabilityFeatures)
    chain = []
    for est in steps:
        if not isinstance(est, kinds):
            break
        chain.append(est)
    rest = steps[len(chain) :]
    names = [type(est).__name__ for est in chain]
    ok = (
        names in (["ActivationExtractor", "ActivationProbabilityFeatures"],)
        or names
        == ["ActivationExtractor", "ActivationEntropy", "ActivationProbabilityFeatures"]
    ) and len(rest) <= 1
    if not ok:
        raise ValueError(
            "fused_transform needs a pipeline of ActivationExtractor, an optional "
            "ActivationEntropy and ActivationProbabilityFeatures, optionally "
            "followed by one final estimator (as make_nap_pipeline builds). Got "
            f"steps {[type(est).__name__ for est in steps]}."
        )
    for est in chain:
        check_is_fitted(est)
    extractor, probabilities = chain[0], chain[-1]
    entropy = chain[1] if len(chain) == 3 else None
    return extractor, entropy, probabilities


def _columns(extractor, entropy, probabilities):
    """Columns of the extractor's rows that the probability step reads."""
    n_columns = extractor.n_neurons_ + extractor.n_outputs_
    columns = np.arange(n_columns)
    if entropy is not None:
        if entropy.n_features_in_ != n_columns:
            raise ValueError(
                f"The ActivationEntropy step was fitted on {entropy.n_features_in_} "
                f"columns but the extractor makes {n_columns}; refit the pipeline."
            )
        columns = entropy.get_support(indices=True)
    if probabilities.n_features_in_ != len(columns):
        raise ValueError(
            "The ActivationProbabilityFeatures step was fitted on "
            f"{probabilities.n_features_in_} columns but receives {len(columns)}; "
            "refit the pipeline."
        )
    return columns


def fused_transform(pipeline, X):
    """``[Y_proposed, Y_predicted]`` of ``X``, computed on the backbone's device.

    The same numbers as ``pipeline[:-1].transform(X)`` (to float rounding),
    for the paper's features and for binned states (``n_bins``) in either
    ``form``,
    but the activations of each batch stay on the device: the matrix of
    shape (n_samples, n_neurons) is never built, and only ``2 * n_classes``
    values per sample come back.

    Parameters
    ----------
    pipeline : Pipeline or list of estimators
        Fitted :class:`ActivationExtractor`, optional
        :class:`ActivationEntropy`, :class:`ActivationProbabilityFeatures`,
        then at most one final estimator, which is not run (as
        :func:`make_nap_pipeline` builds).
    X : array-like, Tensor, Dataset or DataLoader
        Inputs of the backbone.

    Returns
    -------
    features : ndarray of shape (n_samples, 2 * n_classes), dtype=float32
        ``Y_proposed`` then ``Y_predicted``; pass them to the final
        estimator, e.g. ``pipeline[-1].predict(features)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import make_nap_pipeline
    >>> from sknap.fused import fused_transform
    >>> from sknap.toy import digits_mlp
    >>> model, X_train, X_test, y_train, y_test = digits_mlp(epochs=5)
    >>> pipe = make_nap_pipeline(model, max_iter=2, device="cpu", random_state=0)
    >>> pipe = pipe.fit(X_train, y_train)
    >>> features = fused_transform(pipe, X_test)
    >>> np.allclose(features, pipe[:-1].transform(X_test), atol=1e-6)
    True
    >>> pipe[-1].predict(features).shape
    (899,)
    """
    extractor, entropy, probabilities = _steps(pipeline)
    columns = _columns(extractor, entropy, probabilities)
    X = check_input(extractor, X)
    P, edges = _binned.fitted_model(probabilities)
    if edges is not None:
        return _fused_binned(extractor, columns, probabilities, X, P, edges)
    n_neurons = probabilities.n_neurons_in_
    n_classes = len(probabilities.classes_)
    n_columns = extractor.n_neurons_ + extractor.n_outputs_
    proba_offset = extractor.layer_slices_["proba"].start
    P = torch.as_tensor(P.T, dtype=torch.float32)
    # P's rows for every column of the extractor (zero for the neurons the
    # entropy step dropped): each block adds its active neurons' share of q.
    weights = torch.zeros((n_columns, n_classes))
    weights[torch.as_tensor(columns[:n_neurons])] = P
    device = _device.resolve_device(extractor.device)
    proba_index = torch.as_tensor(
        np.asarray(columns[n_neurons:]) - proba_offset, device=device
    )
    # Each block's rows of weights, on the device; None when all are zero.
    block_weights = {}
    for sl in extractor.layer_slices_.values():
        w = weights[sl]
        block_weights[sl.start] = w.to(device) if w.any() else None
    out = []

    def start(labels, n_rows, device):
        zeros = torch.zeros((n_rows, n_classes), device=device)
        return {"q": zeros, "proba": None}

    def consume(state, offset, block):
        if not _device.all_finite(block):
            return False
        if offset == proba_offset and len(proba_index):
            state["proba"] = block.index_select(1, proba_index)
        if block_weights[offset] is not None:
            state["q"].addmm_((block > 0).float(), block_weights[offset])
        return True

    def finish(state):
        q, proba = state["q"], state["proba"]
        if proba is None:
            proba = torch.full_like(q, 1.0 / n_classes)
        out.append(_features(q, proba).cpu().numpy())

    _passes.consume_blocks(extractor, X, None, start, consume, finish)
    return np.concatenate(out, axis=0)


def _features(q, proba):
    """``proposed_proba`` from ``q = u @ P.T``, and the probabilities.

    In float32 rather than float64: the result is float32 either way, and
    the sums over neurons differ from the float64 ones by about 1e-7
    relative.
    """
    raw = q * proba
    total = raw.sum(dim=1, keepdim=True)
    ok = total > 0
    proposed = torch.where(ok, raw / torch.where(ok, total, 1.0), proba)
    return torch.cat([proposed, proba], dim=1)


def _fused_binned(extractor, columns, probabilities, X, P, edges):
    """:func:`fused_transform` for binned states (or the log form): each
    block adds its kept neurons' share of ``q`` (or ``log q``), in float64."""
    n_neurons = probabilities.n_neurons_in_
    n_classes = len(probabilities.classes_)
    proba_offset = extractor.layer_slices_["proba"].start
    device = _device.resolve_device(extractor.device)
    kept = np.asarray(columns[:n_neurons])
    proba_index = torch.as_tensor(
        np.asarray(columns[n_neurons:]) - proba_offset, device=device
    )
    P = torch.as_tensor(P, dtype=torch.float64)
    # For each block: its kept columns (local), their P and their edges.
    blocks = {}
    for sl in extractor.layer_slices_.values():
        inside = np.flatnonzero((kept >= sl.start) & (kept < sl.stop))
        if len(inside):
            local = torch.as_tensor(kept[inside] - sl.start, device=device)
            blocks[sl.start] = (local, P[:, inside].to(device), edges[inside])
    score = _binned.log_scores if probabilities.form == "log" else _binned.sum_scores
    out = []

    def start(labels, n_rows, device):
        zeros = torch.zeros((n_rows, n_classes), dtype=torch.float64, device=device)
        return {"q": zeros, "proba": None}

    def consume(state, offset, block):
        if not _device.all_finite(block):
            return False
        if offset == proba_offset and len(proba_index):
            state["proba"] = block.index_select(1, proba_index)
        if offset in blocks:
            local, P_block, edges_block = blocks[offset]
            A = block.index_select(1, local)
            T, dtype = _binned.thresholds_for(A, edges_block)
            state["q"] += score(_binned.states(A.to(dtype), T), P_block)
        return True

    def finish(state):
        q, proba = state["q"], state["proba"]
        if proba is None:
            proba = torch.full_like(q, 1.0 / n_classes)
        proba = proba.to(torch.float64)
        if probabilities.form == "log":
            proposed = _binned.softmax_log(q, proba)
        else:
            proposed = _binned.normalise_sum(q, proba)
        out.append(torch.cat([proposed, proba], dim=1).float().cpu().numpy())

    _passes.consume_blocks(extractor, X, None, start, consume, finish)
    return np.concatenate(out, axis=0)
