"""Counting kernels behind the histograms and the streaming statistics.

Everything sknap computes on top of a forward pass is counting: the largest
value of each neuron, how many of its values are positive (per class), and how
many exceed each of a few thresholds (the bin edges). On the CPU these run as
numba kernels when numba is installed: each reads a row once, keeps its
counters in cache, and the columns are split over threads. Elsewhere (CUDA,
or no numba) the same counts come from torch operations on chunks. Both give
the same integers.

Exactness without copies: for a float32 value ``v`` and a float64 edge ``e``,
``v > e`` holds exactly when ``v > floor32(e)``, where ``floor32(e)`` is the
largest float32 not above ``e``. So the edges are rounded once, downwards, to
the data's dtype, and the data is compared as it is, never converted to
float64. A histogram bin is a difference of two such counts.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

try:  # numba is optional: without it the torch code below does the same work.
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

__all__ = [
    "accumulate_class_stats",
    "backend",
    "bins_from_counts",
    "column_max",
    "count_above",
    "histogram_counts",
    "thresholds",
    "working_dtype",
]

# Elements per chunk of the torch code, and below which the CPU kernels run
# on one thread (a thread pool costs more than it saves on small batches).
_CHUNK_ELEMENTS = 1 << 22
_PARALLEL_ELEMENTS = 1 << 20
# Rows per kernel call, so that indices stay far from overflow.
_MAX_ROWS = 1 << 30


def backend(device="cpu"):
    """``"numba"`` where the compiled CPU kernels run, else ``"torch"``.

    Setting the environment variable ``SKNAP_DISABLE_NUMBA=1`` forces the
    torch code, which the tests use to check that both agree.
    """
    if torch.device(device).type != "cpu" or _NUMBA is None:
        return "torch"
    if os.environ.get("SKNAP_DISABLE_NUMBA", "") not in ("", "0"):
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


# -- thresholds ---------------------------------------------------------------


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
    """Thresholds of shape (..., K, n_neurons) from edges (..., n_neurons, R + 1).

    ``count_above`` counts the values ``> t`` for each threshold ``t``; the
    bins are differences of those counts (:func:`bins_from_counts`).

    ``"right"``: ``K = R`` thresholds ``floor(e_0) .. floor(e_{R-1})``, so that
    count ``k`` is ``#{v > e_k}`` (``e_0 = 0``: the positive values).
    ``"reference"``: ``K = 2 R``: the same ``R``, then ``R`` more for
    ``#{v >= e_k}``, ``k = 1 .. R`` (``v >= e`` is ``v > prev(ceil(e))``),
    restricted to positive values.
    """
    edges = edges.to(torch.float64)
    lower = _round_down(edges[..., :-1], dtype)
    if binning == "reference":
        up = _round_up(edges[..., 1:], dtype)
        at_or_above = torch.nextafter(up, torch.full_like(up, -torch.inf))
        lower = torch.cat([lower, at_or_above.clamp_min(0)], dim=-1)
    return lower.transpose(-1, -2).contiguous()


def bins_from_counts(counts, n_bins, binning="right"):
    """Bin counts (..., n_neurons, R) from the counts above the thresholds.

    ``counts`` has shape (..., K, n_neurons), as :func:`count_above` fills it
    with the thresholds of :func:`thresholds`.
    """
    if binning == "reference":
        bins = (counts[..., :n_bins, :] - counts[..., n_bins:, :]).clamp_min(0)
    else:
        bins = counts.clone()
        bins[..., :-1, :] -= counts[..., 1:, :]
    return bins.transpose(-1, -2).contiguous()


# -- the numba kernels --------------------------------------------------------


def _compile(numba):
    """The CPU kernels; each works on the columns ``j0 .. j1`` of a row-major
    buffer ``a`` of ``rows`` rows, ``lda`` elements apart.

    Inner loops index slices from 0 so that numba knows the index is not
    negative: that is what lets LLVM vectorise them.
    """
    njit = numba.njit(nogil=True, cache=True)

    @njit
    def column_max(a, rows, lda, out, nan, j0, j1):
        # nan[j] stays 0 unless a value is NaN or infinite (v * 0 is NaN then):
        # the finiteness check costs nothing in this memory-bound loop.
        o = out[j0:j1]
        z = nan[j0:j1]
        for i in range(rows):
            row = a[i * lda + j0 : i * lda + j1]
            for j in range(j1 - j0):
                v = row[j]
                o[j] = max(o[j], v)
                z[j] += v * 0

    @njit
    def class_stats(a, rows, lda, y, cmax, active, j0, j1):
        for i in range(rows):
            row = a[i * lda + j0 : i * lda + j1]
            m = cmax[y[i], j0:j1]
            n = active[y[i], j0:j1]
            for j in range(j1 - j0):
                v = row[j]
                m[j] = max(m[j], v)
                n[j] += np.int64(v > 0)

    @njit
    def count_rows(a, lda, idx, t, out, acc, j0, j1):
        # out[k, j] += #{rows i in idx : a[i, j] > t[k, j]}. Byte counters
        # (acc, zero on entry and exit) emptied into out every 252 rows, four
        # rows per update: the stores bound this loop, so fewer and narrower
        # stores make it faster.
        width = j1 - j0
        for start in range(0, len(idx), 252):
            stop = min(len(idx), start + 252)
            p = start
            while p + 4 <= stop:
                b0, b1, b2, b3 = (
                    idx[p] * lda,
                    idx[p + 1] * lda,
                    idx[p + 2] * lda,
                    idx[p + 3] * lda,
                )
                r0 = a[b0 + j0 : b0 + j1]
                r1 = a[b1 + j0 : b1 + j1]
                r2 = a[b2 + j0 : b2 + j1]
                r3 = a[b3 + j0 : b3 + j1]
                for k in range(t.shape[0]):
                    tk = t[k, j0:j1]
                    c = acc[k]
                    for j in range(width):
                        x = tk[j]
                        c[j] += (np.uint8(r0[j] > x) + np.uint8(r1[j] > x)) + (
                            np.uint8(r2[j] > x) + np.uint8(r3[j] > x)
                        )
                p += 4
            while p < stop:
                b0 = idx[p] * lda
                r0 = a[b0 + j0 : b0 + j1]
                for k in range(t.shape[0]):
                    tk = t[k, j0:j1]
                    c = acc[k]
                    for j in range(width):
                        c[j] += np.uint8(r0[j] > tk[j])
                p += 1
            for k in range(t.shape[0]):
                o = out[k, j0:j1]
                c = acc[k]
                for j in range(width):
                    o[j] += c[j]
                    c[j] = 0

    @njit
    def count_above(a, rows, lda, order, bounds, groups, t1, out1, t2, out2, j0, j1):
        # Shared thresholds over all rows; then, for each group g, the rows
        # order[bounds[g]:bounds[g + 1]] against t2[groups[g]].
        width = j1 - j0
        if t1.shape[0]:
            acc = np.zeros((t1.shape[0], width), np.uint8)
            count_rows(a, lda, np.arange(rows), t1, out1, acc, j0, j1)
        if t2.shape[1]:
            acc = np.zeros((t2.shape[1], width), np.uint8)
            for g in range(len(groups)):
                rows_g = order[bounds[g] : bounds[g + 1]]
                c = groups[g]
                count_rows(a, lda, rows_g, t2[c], out2[c], acc, j0, j1)

    return {
        "column_max": column_max,
        "class_stats": class_stats,
        "count_above": count_above,
    }


_NUMBA = _compile(numba) if numba is not None else None


def _threads():
    """Threads of the CPU kernels: ``SKNAP_NUM_THREADS``, else torch's count.

    On machines of 2 or 3 logical cores one thread is used: there a second
    thread mostly competes with other work (or a sibling hyperthread) for
    the same core, and measured slower than one.
    """
    value = os.environ.get("SKNAP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    if _CPU_COUNT < 4:
        return 1
    return max(1, torch.get_num_threads())


_CPU_COUNT = os.cpu_count() or 1


def _run_over_columns(kernel, args, rows, n):
    """Run ``kernel(*args, j0, j1)`` over column ranges, in threads when large."""
    n_threads = min(_threads(), n // 64)
    if n_threads < 2 or rows * n < _PARALLEL_ELEMENTS:
        kernel(*args, 0, n)
        return
    bounds = [(n * p // n_threads) // 16 * 16 for p in range(n_threads)] + [n]
    with ThreadPoolExecutor(n_threads) as pool:
        futures = [
            pool.submit(kernel, *args, j0, j1)
            for j0, j1 in zip(bounds[:-1], bounds[1:], strict=True)
            if j1 > j0
        ]
        for future in futures:
            future.result()


def _cpu_blocks(A):
    """Yield ``(buffer, rows, lda, start)`` views of the CPU tensor ``A``.

    A float32 or float64 matrix whose rows are contiguous is read in place
    (a column slice ``X[:, :k]`` too); anything else is converted in chunks.
    """
    rows, n = A.shape
    wd = working_dtype(A.dtype)
    direct = A.dtype == wd and (A.stride(1) == 1 or n == 1) and rows > 0
    if direct:
        lda = A.stride(0) if rows > 1 else n
        for start in range(0, rows, _MAX_ROWS):
            part = A[start : start + _MAX_ROWS]
            extent = (part.shape[0] - 1) * lda + n
            flat = torch.as_strided(part, (extent,), (1,)).numpy()
            yield flat, part.shape[0], lda, start
        return
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, rows, step):
        part = A[start : start + step].to(wd).contiguous()
        yield part.reshape(-1).numpy(), part.shape[0], n, start


def _torch_chunks(A, per_row=1):
    """Yield ``(chunk, start)`` in the working dtype, about 4M elements each."""
    rows, n = A.shape
    wd = working_dtype(A.dtype)
    step = max(1, _CHUNK_ELEMENTS // max(n * per_row, 1))
    for start in range(0, rows, step):
        yield A[start : start + step].to(wd), start


# -- public entry points ------------------------------------------------------


def column_max(A, check_finite=False):
    """Largest value of each column, at least 0, as float64 of shape (n,).

    With ``check_finite``, raise a ValueError when ``A`` holds NaN or
    infinity, in the same pass.
    """
    n = A.shape[1]
    if backend(A.device) == "numba" and A.shape[0] > 0:
        dtype = np.float64 if working_dtype(A.dtype) == torch.float64 else np.float32
        out = np.zeros(n, dtype=dtype)
        nan = np.zeros(n, dtype=dtype)
        for flat, rows, lda, _ in _cpu_blocks(A):
            args = (flat, rows, lda, out, nan)
            _run_over_columns(_NUMBA["column_max"], args, rows, n)
        finite = not np.isnan(nan).any()
        maxima = torch.from_numpy(out.astype(np.float64))
    elif A.shape[0] == 0:
        finite = True
        maxima = torch.zeros(n, dtype=torch.float64, device=A.device)
    else:
        finite = not check_finite or bool(torch.isfinite(A).all())
        maxima = A.amax(dim=0).to(torch.float64).clamp_min(0.0)
    if check_finite and not finite:
        raise ValueError(
            "Input X contains NaN or infinity. Remove or impute those values "
            "before computing the entropy."
        )
    return maxima


def accumulate_class_stats(A, y, class_max, active):
    """Add a batch to per-class maxima and counts of positive values, in place.

    Parameters
    ----------
    A : Tensor of shape (n_samples, n_neurons)
        Activations, on the device of the state.
    y : Tensor of shape (n_samples,), dtype=int64
        Class index of each row, in ``[0, n_classes)``.
    class_max : Tensor of shape (n_classes, n_neurons), dtype=float64
        Largest value of each class and neuron so far (0 when none is
        positive); updated in place.
    active : Tensor of shape (n_classes, n_neurons), dtype=int64
        Number of values > 0 so far; updated in place.
    """
    n = A.shape[1]
    if backend(A.device) == "numba":
        cmax, act, labels = class_max.numpy(), active.numpy(), y.numpy()
        for flat, rows, lda, start in _cpu_blocks(A):
            _run_over_columns(
                _NUMBA["class_stats"],
                (flat, rows, lda, labels[start : start + rows], cmax, act),
                rows,
                n,
            )
        return
    for chunk, start in _torch_chunks(A):
        yc = y[start : start + len(chunk)]
        index = yc[:, None].expand(-1, n)
        class_max.scatter_reduce_(0, index, chunk.to(torch.float64), reduce="amax")
        active.index_add_(0, yc, (chunk > 0).to(torch.int64))


def count_above(A, thresholds1, out1, y=None, thresholds2=None, out2=None):
    """Count, in place, the values of each column above each threshold.

    ``out1[k, j] += #{i : A[i, j] > thresholds1[k, j]}`` for thresholds
    shared by all rows, and, when ``y`` is given,
    ``out2[g, k, j] += #{i : y[i] = g, A[i, j] > thresholds2[g, k, j]}``
    for thresholds that depend on each row's group (its class). Thresholds
    are in :func:`working_dtype` of ``A``; both sets are counted in one pass.
    """
    n = A.shape[1]
    grouped = y is not None and thresholds2 is not None and thresholds2.shape[1] > 0
    if backend(A.device) == "numba":
        t1, o1 = thresholds1.numpy(), out1.numpy()
        if grouped:
            t2, o2, labels = thresholds2.numpy(), out2.numpy(), y.numpy()
        else:
            t2 = np.zeros((1, 0, n), dtype=t1.dtype)
            o2 = np.zeros((1, 0, n), dtype=np.int64)
        none = np.zeros(0, dtype=np.int64)
        for flat, rows, lda, start in _cpu_blocks(A):
            order = bounds = groups = none
            if grouped:
                # Rows sorted by group, so that each group's rows are counted
                # against its thresholds as the shared ones are.
                part = labels[start : start + rows]
                order = np.argsort(part, kind="stable")
                groups, first = np.unique(part[order], return_index=True)
                bounds = np.append(first, rows).astype(np.int64)
            args = (flat, rows, lda, order, bounds, groups, t1, o1, t2, o2)
            _run_over_columns(_NUMBA["count_above"], args, rows, n)
        return
    per_row = max(thresholds1.shape[0], thresholds2.shape[1] if grouped else 0)
    for chunk, start in _torch_chunks(A, per_row=per_row):
        if thresholds1.shape[0]:
            out1 += (chunk[:, None, :] > thresholds1).sum(0)
        if grouped:
            yc = y[start : start + len(chunk)]
            above = (chunk[:, None, :] > thresholds2[yc]).to(torch.int64)
            out2.index_add_(0, yc, above)


def histogram_counts(A, edges, binning="right"):
    """Counts of shape (n_neurons, R) of ``A``'s positive values in the bins."""
    n, n_bins = edges.shape[0], edges.shape[1] - 1
    if n == 0:
        return torch.zeros((0, n_bins), dtype=torch.int64, device=A.device)
    t = thresholds(edges.to(A.device), working_dtype(A.dtype), binning)
    counts = torch.zeros(t.shape, dtype=torch.int64, device=A.device)
    count_above(A, t, counts)
    return bins_from_counts(counts, n_bins, binning)
