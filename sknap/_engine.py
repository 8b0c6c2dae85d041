"""What every path into the statistics shares: labels, bin edges, memory.

The in-memory fits, the streamed fits and :class:`~sknap.streaming.NeuronStatistics`
all validate labels with :func:`check_labels`, cut bins with
:func:`bin_edges` and size the second pass's counts with
:func:`check_counts_memory`, so that each gives the same numbers and the same errors.
"""

from numbers import Number

import numpy as np
import torch
from scipy.stats import entropy as _scipy_entropy
from sklearn.utils import assert_all_finite, column_or_1d
from sklearn.utils.multiclass import check_classification_targets

from . import _device
from .exceptions import ActivationMemoryError

__all__ = ["bin_edges", "check_labels", "check_counts_memory", "entropy_from_counts"]

BINNINGS = ("right", "reference")


def check_labels(y, n_rows):
    """Class labels of a batch as a 1-D array, validated as scikit-learn does.

    The checks and messages of ``validate_data(X, y)`` (a column vector is
    raveled with a ``DataConversionWarning``, other 2-D labels, NaN and
    infinity are errors), then ``None``, labels of mixed types (numbers and
    strings) and continuous values (``check_classification_targets``): the
    same errors on every path, in memory or streamed.

    Parameters
    ----------
    y : array-like or Tensor of shape (n_rows,)
        Labels of a batch.
    n_rows : int
        Rows of the batch.

    Returns
    -------
    labels : ndarray of shape (n_rows,)
    """
    labels = column_or_1d(np.asarray(to_numpy(y)), warn=True)
    if len(labels) != n_rows:
        raise ValueError(
            f"A batch has {n_rows} rows but {len(labels)} labels; give one label "
            "per row."
        )
    if labels.dtype.kind in "biu":
        return labels  # integers are always class labels
    if labels.dtype.kind in "fO":
        assert_all_finite(labels, input_name="y")
    if labels.dtype.kind == "O" and len(labels):
        # Before scikit-learn's check, which calls these "unknown".
        values = labels.tolist()
        kinds = [label_kind(type(v)) for v in values]
        if None in kinds:
            i = kinds.index(None)
            raise ValueError(
                f"y[{i}] is {values[i]!r}, of type {type(values[i]).__name__}; "
                "class labels must be numbers or strings. Give every sample a "
                "label, or leave out the samples without one."
            )
        if len(set(kinds)) > 1:
            names = sorted({type(v).__name__ for v in values})
            raise ValueError(
                f"y mixes labels of types {names}; class labels must be all "
                "numbers or all strings. Convert them to one type, e.g. "
                "np.asarray(y, dtype=str)."
            )
    check_classification_targets(labels)
    return labels


def label_kind(t):
    """``"number"``, ``"string"`` or None (neither) for a label type or dtype."""
    if isinstance(t, np.dtype):
        if t.kind in "biuf":
            return "number"
        return "string" if t.kind in "US" else None
    if issubclass(t, str | np.str_):
        return "string"
    if issubclass(t, Number | np.number) and not issubclass(t, complex):
        return "number"
    return None


def bin_edges(maxima, n_bins, binning="right"):
    """Edges of shape (n_neurons, n_bins + 1) cutting ``(0, max]`` in equal bins.

    ``"right"``: ``e_k = m k / R``, the maximum exactly on the last edge;
    ``m (k / R)`` where ``m k`` would overflow (``m`` near the largest
    float64); every edge but the last below ``m``, also for a subnormal
    ``m``, where ``m k / R`` rounds. ``"reference"`` reproduces the authors'
    code: ``e_k = w k`` with ``w = m / R`` in floating point, so the last edge
    may miss ``m``.
    """
    maxima = maxima.to(torch.float64)
    k = torch.arange(n_bins + 1, dtype=torch.float64, device=maxima.device)
    if binning == "reference":
        return (maxima / n_bins)[:, None] * k
    product = maxima[:, None] * k
    edges = torch.where(
        torch.isfinite(product), product / n_bins, maxima[:, None] * (k / n_bins)
    )
    edges[:, -1] = maxima
    # Below the smallest normal float64 the lower edges round; kept under the
    # maximum, so that it is in the last bin as for every other maximum.
    below = torch.nextafter(maxima, torch.zeros_like(maxima))
    torch.minimum(edges[:, :-1], below[:, None], out=edges[:, :-1])
    return edges


def check_counts_memory(n_classes, n_neurons, n_bins, device, what="begin_histograms"):
    """Raise :class:`~sknap.ActivationMemoryError` when the second pass's state
    would not fit: the counts above every threshold, for every class and
    neuron, the states made from them when an estimator reads them, the edges
    and their thresholds."""
    n_states = n_bins + 1
    needed = 8 * n_neurons * n_states * (2 * n_classes + 3)
    device = torch.device(device)
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[0]
    else:
        available = _device.available_memory()
    if available is None or needed <= available:
        return
    raise ActivationMemoryError(
        f"{what} with n_bins={n_bins} needs about {needed / 2**30:.3g} GiB for the "
        f"counts of {n_classes} class(es) x {n_neurons} neurons x {n_states} "
        f"states, but only {available / 2**30:.3g} GiB of memory are available "
        f"on {device}. Use a smaller n_bins, fewer neurons (layers=...), or "
        "count on a device with more memory."
    )


def entropy_from_counts(counts, base=2.0):
    """Shannon entropy of each row of ``counts`` (..., R); 0 for a row of zeros."""
    counts = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts)
    shape = counts.shape[:-1]
    counts = counts.reshape(-1, counts.shape[-1])
    out = np.zeros(counts.shape[0], dtype=np.float64)
    nonzero = counts.sum(axis=1) > 0
    if nonzero.any():
        out[nonzero] = _scipy_entropy(counts[nonzero].T, base=base)
    return out.reshape(shape)


def check_same_columns(a, b):
    """Raise unless statistics ``a`` and ``b`` count the same columns."""
    if a.n_neurons_ != b.n_neurons_:
        raise ValueError(
            f"Cannot merge statistics of {a.n_neurons_} and {b.n_neurons_} "
            "columns: every shard needs the same layers and outputs."
        )
    if a.feature_names is None or b.feature_names is None:
        return
    differ = np.flatnonzero(
        np.asarray(a.feature_names, dtype=object)
        != np.asarray(b.feature_names, dtype=object)
    )
    if len(differ):
        j = int(differ[0])
        raise ValueError(
            f"Cannot merge statistics of different columns: column {j} is "
            f"{a.feature_names[j]!r} in one and {b.feature_names[j]!r} in the "
            f"other ({len(differ)} columns differ). Count every shard with the "
            "same extractor (the same layers and widths)."
        )


def kind_of(labels):
    """``"number"`` or ``"string"``: the kind of an array of valid labels."""
    if labels.dtype.kind == "O":
        return label_kind(type(labels[0]))
    return label_kind(labels.dtype)


NONFINITE_BATCH = (
    "Input X contains NaN or infinity (in a batch of activations). Remove or "
    "impute those values before computing statistics."
)


def to_numpy(y):
    return y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y


def check_batch(A, n_columns):
    """A 2-D floating tensor with the expected number of columns."""
    A = as_tensor(A) if not isinstance(A, torch.Tensor) else A.detach()
    if A.ndim != 2:
        raise ValueError(
            "Each batch must be a 2-D array of shape (n_samples, n_neurons); got "
            f"shape {tuple(A.shape)}."
        )
    if n_columns is not None and A.shape[1] != n_columns:
        raise ValueError(
            f"A batch has {A.shape[1]} columns but the earlier ones had "
            f"{n_columns}; every batch needs the same columns."
        )
    if not A.is_floating_point():
        A = A.to(torch.float64)
    return A


def default_device(group):
    import torch.distributed as dist

    backend = dist.get_backend(group)
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


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
