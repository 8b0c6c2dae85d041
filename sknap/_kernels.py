"""Counting kernels of the statistics engine.

Everything sknap computes from activations is counting, in two passes
(docs/definitions.md):

* :func:`first_pass`: per class and neuron, the largest value and the number
  of values > 0, looking for NaN and infinity on the way;
* :func:`count_above`: per class, neuron and threshold, the number of
  values above it. The thresholds are the bin edges, so these counts give, by
  differences (:func:`states_from_above`), the count of every state of a
  neuron: inactive (``<= 0``) or one of the R bins over ``(0, m_j]``.
  Everything else (the histogram, ``P``, per-class entropy) is a sum or a
  slice of those.

On the CPU both run as plain numba loops over numpy arrays (the tensors'
``.numpy()`` views), class by class, a few rows of a class at a time, over
contiguous columns so that the compiler vectorises them; on other devices,
or with ``SKNAP_DISABLE_NUMBA=1``, as torch operations on chunks of rows,
which the tests compare with.

Exactness without copies: for a float32 value ``v`` and a float64 edge ``e``,
``v > e`` holds exactly when ``v > floor32(e)``, where ``floor32(e)`` is the
largest float32 not above ``e``. So the edges are rounded once, downwards, to
the data's dtype (:func:`thresholds`), and the data is compared as it is,
never converted.
"""

import os

import numpy as np
import torch

try:  # numba is optional: without it the torch code below does the same work.
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

__all__ = [
    "backend",
    "count_above",
    "first_pass",
    "states_from_above",
    "thresholds",
    "working_dtype",
]

# Elements per chunk of rows: conversions and the torch code work chunk by
# chunk, so that their temporaries stay small (4 MiB of float32: in cache
# across the K comparisons of the torch code, 2x faster than 16 MiB here).
_CHUNK_ELEMENTS = 1 << 20


def backend(device="cpu"):
    """``"numba"`` where the compiled CPU kernels run, else ``"torch"``.

    Setting the environment variable ``SKNAP_DISABLE_NUMBA=1`` forces the
    torch code, which the tests use to check that both agree.
    """
    if not isinstance(device, torch.device):
        device = torch.device(device)
    disabled = os.environ.get("SKNAP_DISABLE_NUMBA", "") not in ("", "0")
    if device.type != "cpu" or numba is None or disabled:
        return "torch"
    return "numba"


def working_dtype(dtype):
    """Dtype the data is compared in: float64 stays, anything else is float32.

    float16 and bfloat16 convert to float32 exactly; integers are converted
    to float64, as ``validate_data`` would.
    """
    if dtype in (torch.float64, torch.float32):
        return dtype
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return torch.float64


def _round_down(e, dtype):
    """Largest value of ``dtype`` that is <= ``e`` (float64)."""
    t = e.to(dtype)
    if dtype == torch.float64:
        return t
    low = torch.nextafter(t, torch.full_like(t, -torch.inf))
    return torch.where(t.to(torch.float64) > e, low, t)


def _round_up(e, dtype):
    """Smallest value of ``dtype`` that is >= ``e`` (float64)."""
    t = e.to(dtype)
    if dtype == torch.float64:
        return t
    high = torch.nextafter(t, torch.full_like(t, torch.inf))
    return torch.where(t.to(torch.float64) < e, high, t)


def thresholds(edges, dtype, binning="right"):
    """The values each count compares against: ``T`` of shape (K, n_neurons).

    The kernels count, per class and neuron, the values ``v > T[k]``
    (:func:`count_above`); :func:`states_from_above` makes the states of
    those counts.

    Parameters
    ----------
    edges : Tensor of shape (n_neurons, R + 1), dtype=float64
        Bin edges, ``edges[:, 0] = 0``.
    dtype : torch.dtype
        The data's :func:`working_dtype`.
    binning : {"right", "reference"}, default="right"
        Right-closed bins, or the authors' open bins.

    Returns
    -------
    T : Tensor of shape (K, n_neurons), dtype ``dtype``
        ``"right"``: the lower edges ``e_0 = 0 .. e_{R-1}`` rounded down (K =
        R), so ``v > T[k]`` exactly when ``v > e_k``. ``"reference"``: after
        each of those, the largest value below the next edge (K = 2R), so
        ``v > T[2k + 1]`` exactly when ``v >= e_{k+1}``. Sorted along K.
    """
    edges = edges.to(torch.float64)
    n_bins = edges.shape[1] - 1
    lower = _round_down(edges[:, :n_bins], dtype)
    if binning == "reference":
        up = _round_up(edges[:, 1:], dtype)
        upper = torch.nextafter(up, torch.full_like(up, -torch.inf)).clamp_min(0)
        # Interleaved, so that T stays sorted: e_k <= (below e_{k+1}) <= e_{k+1}.
        lower = torch.stack([lower, upper], dim=2).reshape(len(edges), 2 * n_bins)
    return lower.t().contiguous()


def states_from_above(above, samples, binning="right"):
    """Counts per class, neuron and state from counts above thresholds.

    Parameters
    ----------
    above : Tensor of shape (n_classes, K, n_neurons), dtype=int64
        :func:`count_above`'s counts.
    samples : Tensor of shape (n_classes,), dtype=int64
        Samples of each class that were counted.
    binning : {"right", "reference"}, default="right"
        As given to :func:`thresholds`.

    Returns
    -------
    counts : Tensor of shape (n_classes, n_neurons, R + 1), dtype=int64
        ``counts[c, j, 0]``: values ``<= 0``; ``counts[c, j, k + 1]``: values
        in bin ``k``. In ``"reference"`` mode a value on an edge, or above
        the last, is in no state.
    """
    if binning == "reference":
        lower, upper = above[:, 0::2], above[:, 1::2]
    else:  # the values above e_{k+1}; none above the last bin
        lower = above
        upper = torch.cat([lower[:, 1:], torch.zeros_like(lower[:, :1])], dim=1)
    inactive = samples[:, None] - lower[:, 0]
    return torch.cat([inactive[:, None], lower - upper], dim=1).transpose(1, 2)


# -- the numba kernels --------------------------------------------------------
#
# Rows are visited class by class (``order``, ``starts``: :func:`group_rows`),
# several rows of a class at a time (four in the first pass, which is then as
# fast as reading the matrix; eight in the second, which has K counts per
# value), so that every load and store of the state serves several rows; each
# inner loop runs over contiguous columns, so that the compiler vectorises it.
# That is the whole of the speed (docs/performance.md).

if numba is not None:

    @numba.njit(inline="always")
    def _seen(s, v):
        """The larger of ``s`` and ``v``, and NaN once either was NaN, so that
        the check of the second pass sees it."""
        return v if (s == s and not v <= s) else s

    @numba.njit(cache=True, nogil=True)
    def _first_pass_kernel(A, order, starts, offset, class_max, active):
        n = A.shape[1]
        bad = 0
        for c in range(len(starts) - 1):
            m = class_max[c, offset : offset + n]
            a = active[c, offset : offset + n]
            i, end = starts[c], starts[c + 1]
            while i + 4 <= end:
                r0, r1 = A[order[i]], A[order[i + 1]]
                r2, r3 = A[order[i + 2]], A[order[i + 3]]
                for j in range(n):
                    v0, v1, v2, v3 = r0[j], r1[j], r2[j], r3[j]
                    # 1 for NaN and infinity.
                    bad += (not abs(v0) < np.inf) + (not abs(v1) < np.inf)
                    bad += (not abs(v2) < np.inf) + (not abs(v3) < np.inf)
                    x = max(max(v0, v1), max(v2, v3))
                    m[j] = x if x > m[j] else m[j]
                    a[j] += np.int64(v0 > 0) + np.int64(v1 > 0)
                    a[j] += np.int64(v2 > 0) + np.int64(v3 > 0)
                i += 4
            for rest in range(i, end):
                row = A[order[rest]]
                for j in range(n):
                    v = row[j]
                    bad += not abs(v) < np.inf
                    m[j] = v if v > m[j] else m[j]
                    a[j] += v > 0
        return bad == 0

    @numba.njit(cache=True, nogil=True)
    def _above_kernel(A, order, starts, offset, T, above, seen_max):
        n = A.shape[1]
        for c in range(len(starts) - 1):
            seen = seen_max[c, offset : offset + n]
            i, end = starts[c], starts[c + 1]
            while i + 8 <= end:  # K loads and stores of the counts per 8 rows
                r0, r1, r2, r3 = (
                    A[order[i]],
                    A[order[i + 1]],
                    A[order[i + 2]],
                    A[order[i + 3]],
                )
                r4, r5, r6, r7 = (
                    A[order[i + 4]],
                    A[order[i + 5]],
                    A[order[i + 6]],
                    A[order[i + 7]],
                )
                for j in range(n):
                    s = seen[j]
                    s = _seen(s, r0[j])
                    s = _seen(s, r1[j])
                    s = _seen(s, r2[j])
                    s = _seen(s, r3[j])
                    s = _seen(s, r4[j])
                    s = _seen(s, r5[j])
                    s = _seen(s, r6[j])
                    seen[j] = _seen(s, r7[j])
                for k in range(T.shape[0]):
                    t = T[k, offset : offset + n]
                    out = above[c, k, offset : offset + n]
                    for j in range(n):
                        e = t[j]
                        a = np.int64(r0[j] > e) + np.int64(r1[j] > e)
                        a += np.int64(r2[j] > e) + np.int64(r3[j] > e)
                        a += np.int64(r4[j] > e) + np.int64(r5[j] > e)
                        out[j] += a + np.int64(r6[j] > e) + np.int64(r7[j] > e)
                i += 8
            for rest in range(i, end):
                row = A[order[rest]]
                for j in range(n):
                    seen[j] = _seen(seen[j], row[j])
                for k in range(T.shape[0]):
                    t = T[k, offset : offset + n]
                    out = above[c, k, offset : offset + n]
                    for j in range(n):
                        out[j] += row[j] > t[j]

    @numba.njit(cache=True, nogil=True)
    def group_rows(rows, n_classes):
        """``(order, starts)``: the rows sorted by class (a counting sort, so
        stable), and where each class begins, ``starts[c] .. starts[c + 1]``.
        The indices must be in ``[0, n_classes)``, as :func:`_check_state`
        makes sure."""
        starts = np.zeros(n_classes + 1, dtype=np.int64)
        for c in rows:
            starts[c + 1] += 1
        for c in range(n_classes):
            starts[c + 1] += starts[c]
        order = np.empty(len(rows), dtype=np.int64)
        position = starts[:-1].copy()
        for i in range(len(rows)):
            order[position[rows[i]]] = i
            position[rows[i]] += 1
        return order, starts


def _numpy_chunks(A):
    """``(array, start)``: C-contiguous numpy chunks of rows of ``A``, in its
    working dtype; views where ``A`` is one already, else converted copies."""
    A = A.detach()
    rows, n = A.shape
    wd = working_dtype(A.dtype)
    if A.dtype == wd and (A.is_contiguous() or rows == 0):
        yield A.numpy(), 0
        return
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, rows, step):
        yield A[start : start + step].to(wd).contiguous().numpy(), start


def _torch_chunks(A):
    """``(chunk, start)`` of rows of ``A`` in its working dtype: at most
    ``_CHUNK_ELEMENTS`` (2**20) rows, so that 0/1 sums over a chunk are exact
    in float32 (below 2**24)."""
    A = A.detach()
    rows, n = A.shape
    wd = working_dtype(A.dtype)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, rows, step):
        yield A[start : start + step].to(wd), start


def _check_state(A, rows, state, offset, *others):
    """Raise unless the batch fits the state: the numba kernels write without
    bounds checks, so every shape and (on the CPU) class index is checked
    here, before any count. ``others`` are (name, tensor, shape it must
    have)."""
    n = A.shape[1]
    if rows.shape != (A.shape[0],):
        raise ValueError(
            f"The batch has {A.shape[0]} rows but {tuple(rows.shape)} class "
            "indices were given; give one per row."
        )
    if offset < 0 or offset + n > state.shape[1]:
        raise ValueError(
            f"The statistics have {state.shape[1]} columns, but a block of {n} "
            f"columns at offset {offset} was counted: every batch must have the "
            "columns of the first one."
        )
    for name, tensor, shape in others:
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(
                f"The counting state '{name}' has shape {tuple(tensor.shape)}, "
                f"not {tuple(shape)}: it does not belong to these statistics."
            )
    # Class indices: on the CPU, here; on CUDA, torch's own device checks
    # (looking here would wait for the device at every block).
    if rows.is_cpu and len(rows):
        low, high = torch.aminmax(rows)
        if low < 0 or high >= state.shape[0]:
            raise IndexError(
                f"A class index is outside [0, {state.shape[0]}): the rows' "
                "classes do not belong to these statistics."
            )


def _numba_ready(*tensors):
    """Whether the numba kernels can update these tensors in place."""
    return all(t.is_cpu and t.is_contiguous() for t in tensors)


# -- entry points -------------------------------------------------------------


def first_pass(A, rows, class_max, active, offset=0):
    """Add a batch to per-class maxima and counts of positive values, in place.

    Parameters
    ----------
    A : Tensor of shape (n_samples, n_columns)
        Activations, on the device of the state.
    rows : Tensor of shape (n_samples,), dtype=int64
        Class index of each row, in ``[0, n_classes)``.
    class_max : Tensor of shape (n_classes, n_neurons), dtype=float64
        Largest value of each class and neuron so far, at least 0.
    active : Tensor of shape (n_classes, n_neurons), dtype=int64
        Number of values > 0 so far.
    offset : int, default=0
        The columns of ``A`` are the neurons ``offset .. offset + n_columns``.

    Returns
    -------
    finite : bool
        False when ``A`` holds NaN or infinity, for the caller to raise (the
        state is then partly updated).
    """
    _check_state(A, rows, class_max, offset, ("active", active, class_max.shape))
    if backend(A.device) == "numba" and _numba_ready(class_max, active, rows):
        cmax, act, labels = class_max.numpy(), active.numpy(), rows.numpy()
        finite = True
        for chunk, start in _numpy_chunks(A):
            order, starts = group_rows(labels[start : start + len(chunk)], len(cmax))
            finite &= _first_pass_kernel(chunk, order, starts, offset, cmax, act)
        return bool(finite)
    n, n_classes = A.shape[1], class_max.shape[0]
    cols = slice(offset, offset + n)
    finite = True
    for chunk, start in _torch_chunks(A):
        r = rows[start : start + len(chunk)]
        # A sum is finite when every value is; only when it is not (NaN,
        # infinity or an overflow) is every value looked at.
        if not torch.isfinite(chunk.sum(0)).all():
            finite &= bool(torch.isfinite(chunk).all())
        # The maxima in the data's dtype (exact), then widened.
        m = torch.zeros((n_classes, n), dtype=chunk.dtype, device=chunk.device)
        m.scatter_reduce_(0, r[:, None].expand(-1, n), chunk, reduce="amax")
        class_max[:, cols] = torch.maximum(class_max[:, cols], m.to(torch.float64))
        mask = torch.empty(chunk.shape, dtype=torch.float32, device=A.device)
        torch.gt(chunk, 0, out=mask)
        active[:, cols] += _sum_by_class(mask, r, n_classes)
    return finite


def _sum_by_class(mask, r, n_classes):
    """Per-class sums of a 0/1 float32 (rows, n) mask, as int64: exact, since a
    chunk has fewer than 2**24 rows."""
    out = torch.zeros(
        (n_classes, mask.shape[1]), dtype=torch.float32, device=mask.device
    )
    return out.index_add_(0, r, mask).to(torch.int64)


def count_above(A, rows, T, above, seen_max, offset=0):
    """Count the values of a batch above each threshold, per class, in place.

    ``above[c, k, j]`` gains the values ``v > T[k, j]`` of class ``c`` and
    neuron ``j``; ``seen_max[c, j]`` becomes the largest value seen, for the
    check against the first pass.

    Parameters
    ----------
    A : Tensor of shape (n_samples, n_columns)
        Activations, on the device of the state.
    rows : Tensor of shape (n_samples,), dtype=int64
        Class index of each row.
    T : Tensor of shape (K, n_neurons)
        :func:`thresholds`, in the working dtype of ``A``.
    above : Tensor of shape (n_classes, K, n_neurons), dtype=int64
        The counts, updated in place.
    seen_max : Tensor of shape (n_classes, n_neurons), dtype=float64
        Largest value of each class and neuron so far.
    offset : int, default=0
        The columns of ``A`` are the neurons ``offset .. offset + n_columns``.
    """
    n_classes, n_total = seen_max.shape
    _check_state(
        A,
        rows,
        seen_max,
        offset,
        ("thresholds", T, (T.shape[0], n_total)),
        ("above", above, (n_classes, T.shape[0], n_total)),
    )
    if backend(A.device) == "numba" and _numba_ready(above, seen_max, rows):
        state = (T.numpy(), above.numpy(), seen_max.numpy())
        labels = rows.numpy()
        for chunk, start in _numpy_chunks(A):
            order, starts = group_rows(labels[start : start + len(chunk)], n_classes)
            _above_kernel(chunk, order, starts, offset, *state)
        return
    n = A.shape[1]
    cols = slice(offset, offset + n)
    t = T[:, cols]
    for chunk, start in _torch_chunks(A):
        r = rows[start : start + len(chunk)]
        # NaN kept: torch's maxima propagate it, for the check of the pass.
        m = torch.full((n_classes, n), -torch.inf, dtype=chunk.dtype, device=A.device)
        m.scatter_reduce_(0, r[:, None].expand(-1, n), chunk, reduce="amax")
        seen_max[:, cols] = torch.maximum(seen_max[:, cols], m.to(torch.float64))
        # One comparison and one grouped sum per threshold: no (rows, K, n)
        # temporary, no per-value scatter.
        mask = torch.empty(chunk.shape, dtype=torch.float32, device=A.device)
        for k in range(len(t)):
            torch.gt(chunk, t[k], out=mask)
            above[:, k, cols] += _sum_by_class(mask, r, n_classes)
