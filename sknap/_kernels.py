"""Counting kernels behind the histograms and the streaming statistics.

Everything sknap computes on top of a forward pass is counting: the largest
value of each neuron, how many of its values are positive (per class), and how
many exceed each of a few thresholds (the bin edges). On the CPU these run as
numba kernels when numba is installed. They take one vector register of
columns at a time (16 float32 with AVX-512) and stream the rows through it,
the counters of up to a dozen thresholds held in registers meanwhile; the
rows of each class are sorted together first (a counting sort), for the
counts per class; blocks narrower than a vector are transposed first.
Columns are split over threads for large inputs. A pass over a data set
calls the kernels once per layer and batch through ``*_counter``, which
check the state once per pass. Elsewhere (CUDA, or no numba) the same counts
come from torch operations on chunks. Both give the same integers.

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
# Rows per kernel call, so that indices stay far from overflow, and so do the
# int32 counters of the kernels.
_MAX_ROWS = 1 << 30
# Bytes of data count_above reads per chunk of rows: it reads each chunk once
# for every vector of columns, so the chunk should stay in the L2 cache (256
# KB measured best with a 2 MB L2, on 60,000 rows). The rows of each class
# are counted in chunks of _GROUP_BYTES, larger since each chunk adds the
# counts of every class to the output once more.
_CHUNK_BYTES = 1 << 18
_GROUP_BYTES = 1 << 21


def backend(device="cpu"):
    """``"numba"`` where the compiled CPU kernels run, else ``"torch"``.

    Setting the environment variable ``SKNAP_DISABLE_NUMBA=1`` forces the
    torch code, which the tests use to check that both agree.
    """
    if not isinstance(device, torch.device):
        device = torch.device(device)
    if device.type != "cpu" or _NUMBA is None or _numba_disabled():
        return "torch"
    return "numba"


try:
    _DISABLE_KEY = os.environ.encodekey("SKNAP_DISABLE_NUMBA")
    _NOT_DISABLED = (None, os.environ.encodevalue(""), os.environ.encodevalue("0"))
except AttributeError:  # pragma: no cover - an os.environ other than CPython's
    _DISABLE_KEY = None


def _numba_disabled():
    """Whether ``SKNAP_DISABLE_NUMBA`` is set, read on every call (the tests
    set it per test).

    The dict behind ``os.environ`` is read directly: ``os.environ.get`` raises
    and catches a KeyError when the variable is unset, which after a forward
    pass (cold caches) costs about 10 us, a tenth of a kernel call on a batch.
    """
    data = getattr(os.environ, "_data", None)
    if data is None or _DISABLE_KEY is None:  # pragma: no cover - see above
        return os.environ.get("SKNAP_DISABLE_NUMBA", "") not in ("", "0")
    return data.get(_DISABLE_KEY) not in _NOT_DISABLED


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


def _vector_shape(numba):
    """Bytes per vector register, and vector registers, of the CPU numba
    compiles for.

    The same features as numba's own (``NUMBA_CPU_FEATURES``, else the
    host's), which are part of its cache key: a cached kernel always matches.
    """
    features = numba.config.CPU_FEATURES
    if features is None:
        try:
            from numba.core.codegen import get_host_cpu_features

            features = get_host_cpu_features()
        except Exception:  # pragma: no cover - a failure only costs speed
            features = ""
    if "+avx512f" in features:
        return 64, 32
    if "+avx" in features:
        return 32, 16
    return 16, 16


def _prefetch_name(binding):
    """LLVM's name of its prefetch intrinsic, mangled after the pointer type
    (which depends on the LLVM version and its settings), or None."""
    for name in ("llvm.prefetch.p0", "llvm.prefetch.p0i8"):
        code = (
            f'declare void @"{name}"(i8*, i32, i32, i32)\n'
            "define void @f(i8* %p) {\n"
            f'  call void @"{name}"(i8* %p, i32 0, i32 3, i32 1)\n'
            "  ret void\n}\n"
        )
        try:
            binding.parse_assembly(code).verify()
        except RuntimeError:
            continue
        return name
    return None  # pragma: no cover - then the kernels do not prefetch


def _intrinsics(numba):
    """The vector loops of the kernels, written in LLVM IR: ``view``,
    ``count_block``, ``stats_block``, and the shape they are written for.

    Module globals for the kernels (see below).
    """
    from llvmlite import binding, ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    vector_bytes, registers = _vector_shape(numba)
    masked = vector_bytes == 64
    # Thresholds per pass over the rows: each holds two registers (itself
    # and its counter); the row, a vector of ones and a mask need the rest.
    max_chunk = (registers - 4) // 2
    # Vectors of columns per pass of class_stats: three registers each.
    stat_vectors = 4
    prefetch_name = _prefetch_name(binding)
    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)

    def vector_ptr(builder, data, vty, offset):
        return builder.bitcast(builder.gep(data, [offset]), vty.as_pointer())

    def splat(builder, value, vty):
        vec = builder.insert_element(ir.Constant(vty, None), value, i32(0))
        lanes = ir.Constant(ir.VectorType(i32, vty.count), [0] * vty.count)
        return builder.shuffle_vector(vec, vec, lanes)

    def ones(builder, lda, cty):
        # 1 in every lane, from a value LLVM cannot see is 1 (lda >= 0): with
        # a constant it turns the masked add of the kernels into a move of
        # the mask to a vector and a subtraction, three instructions for two.
        one = builder.trunc(builder.xor(builder.lshr(lda, i64(63)), i64(1)), i32)
        return splat(builder, one, cty)

    def prefetch(builder, data, offset):
        if prefetch_name is None:  # pragma: no cover - see _prefetch_name
            return
        fn = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [i8.as_pointer(), i32, i32, i32]),
            prefetch_name,
        )
        ptr = builder.bitcast(builder.gep(data, [offset]), i8.as_pointer())
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])

    def row_stride(builder, arr, itemsize):
        return builder.sdiv(builder.extract_value(arr.strides, 0), i64(itemsize))

    @intrinsic
    def view(typingctx, address, shape, dtype):
        """The C-contiguous array of ``shape`` at ``address``; ``dtype`` is an
        array of that dtype, or the dtype itself."""
        element = dtype.dtype if isinstance(dtype, types.Array) else dtype.instance_type
        arrty = types.Array(element, len(shape), "C")
        sig = arrty(address, shape, dtype)

        def codegen(context, builder, sig, args):
            address_, shape_, _ = args
            dims = cgutils.unpack_tuple(builder, shape_)
            itemsize = context.get_abi_sizeof(context.get_value_type(element))
            strides, step = [], i64(itemsize)
            for dim in reversed(dims):
                strides.insert(0, step)
                step = builder.mul(step, dim)
            ptr = context.get_value_type(element).as_pointer()
            array = context.make_array(arrty)(context, builder)
            context.populate_array(
                array,
                data=builder.inttoptr(address_, ptr),
                shape=cgutils.pack_array(builder, dims),
                strides=cgutils.pack_array(builder, strides),
                itemsize=i64(itemsize),
                meminfo=None,
            )
            return array._getvalue()

        return sig, codegen

    @intrinsic
    def count_block(typingctx, a, lda, idx, p0, p1, t, k0, kc, out, q, skip, offset):
        """``out[k0 + k, offset + q + l] += #{p in p0 .. p1 : a[r * lda + q + l]
        > t[k0 + k, offset + q + l]}`` for ``k < kc`` and the lanes ``l`` of
        one vector from ``skip`` on, with rows ``r = idx[p]``.

        Written in LLVM vectors because the loop vectoriser cannot do it: the
        ``kc`` counters stay in registers over all rows (it would load and
        store them for every row), and the vectors are as wide as the CPU's
        (it uses 256 bits on AVX-512 machines). ``kc`` is a value at run
        time: one loop is generated for each count up to ``max_chunk``.
        """
        sig = types.void(a, lda, idx, p0, p1, t, k0, kc, out, q, skip, offset)

        def codegen(context, builder, sig, args):
            a_, lda_, idx_, p0_, p1_, t_, k0_, kc_, out_, q_, skip_, offset_ = args
            dtype = sig.args[0].dtype
            itemsize = dtype.bitwidth // 8
            lanes = vector_bytes // itemsize
            vty = ir.VectorType(context.get_value_type(dtype), lanes)
            cty = ir.VectorType(i32, lanes)
            oty = ir.VectorType(i64, lanes)
            arr_a = context.make_array(sig.args[0])(context, builder, a_)
            arr_t = context.make_array(sig.args[5])(context, builder, t_)
            arr_o = context.make_array(sig.args[8])(context, builder, out_)
            arr_i = context.make_array(sig.args[2])(context, builder, idx_)
            t_row = row_stride(builder, arr_t, itemsize)
            o_row = row_stride(builder, arr_o, 8)
            column = builder.add(q_, offset_)
            one = ones(builder, lda_, cty)
            lane = ir.Constant(cty, list(range(lanes)))
            kept = builder.icmp_signed(
                ">=", lane, splat(builder, builder.trunc(skip_, i32), cty)
            )
            counters = [
                cgutils.alloca_once_value(builder, ir.Constant(cty, None))
                for _ in range(max_chunk)
            ]
            done = builder.append_basic_block("count.done")
            switch = builder.switch(kc_, done)
            for chunk in range(1, max_chunk + 1):
                block = builder.append_basic_block(f"count.{chunk}")
                switch.add_case(i64(chunk), block)
                builder.position_at_end(block)
                limits = []
                for k in range(chunk):
                    at = builder.add(
                        builder.mul(builder.add(k0_, i64(k)), t_row), column
                    )
                    ptr = vector_ptr(builder, arr_t.data, vty, at)
                    limits.append(builder.load(ptr, align=itemsize))
                    builder.store(ir.Constant(cty, None), counters[k])
                with cgutils.for_range(builder, p1_, start=p0_) as loop:
                    r = builder.load(builder.gep(arr_i.data, [loop.index]))
                    at = builder.add(builder.mul(r, lda_), q_)
                    # Two vectors ahead: the next one is already on its way (a
                    # vector load spans two cache lines).
                    prefetch(builder, arr_a.data, builder.add(at, i64(2 * lanes)))
                    v = builder.load(
                        vector_ptr(builder, arr_a.data, vty, at), align=itemsize
                    )
                    for k in range(chunk):
                        above = builder.fcmp_ordered(">", v, limits[k])
                        c = builder.load(counters[k])
                        if masked:
                            c = builder.select(above, builder.add(c, one), c)
                        else:
                            c = builder.sub(c, builder.sext(above, cty))
                        builder.store(c, counters[k])
                for k in range(chunk):
                    at = builder.add(
                        builder.mul(builder.add(k0_, i64(k)), o_row), column
                    )
                    ptr = vector_ptr(builder, arr_o.data, oty, at)
                    c = builder.select(
                        kept, builder.load(counters[k]), ir.Constant(cty, None)
                    )
                    total = builder.add(
                        builder.load(ptr, align=8), builder.zext(c, oty)
                    )
                    builder.store(total, ptr, align=8)
                builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def stats_block(
        typingctx, a, lda, idx, p0, p1, q0, done, qmax, base, best, count, zero, c,
        check,
    ):  # fmt: skip
        """Over the rows ``r = idx[p0:p1]``, for the four vectors of columns
        ``q = min(q0 + v lanes, qmax)``: their largest values merged into
        ``best[c, q - base + ..]``, their numbers of positive values added to
        ``count[c, ..]`` but for columns below ``done`` or counted by the
        vector before, and, with ``check``, the sum of ``v * 0`` added to
        ``zero[..]``. In registers over the rows, as in count_block.
        """
        sig = types.void(
            a, lda, idx, p0, p1, q0, done, qmax, base, best, count, zero, c, check
        )

        def codegen(context, builder, sig, args):
            (
                a_,
                lda_,
                idx_,
                p0_,
                p1_,
                q0_,
                done_,
                qmax_,
                base_,
                best_,
                count_,
                zero_,
                c_,
                check_,
            ) = args
            dtype = sig.args[0].dtype
            itemsize = dtype.bitwidth // 8
            lanes = vector_bytes // itemsize
            vty = ir.VectorType(context.get_value_type(dtype), lanes)
            cty = ir.VectorType(i32, lanes)
            arr_a = context.make_array(sig.args[0])(context, builder, a_)
            arr_i = context.make_array(sig.args[2])(context, builder, idx_)
            arr_b = context.make_array(sig.args[9])(context, builder, best_)
            arr_c = context.make_array(sig.args[10])(context, builder, count_)
            arr_z = context.make_array(sig.args[11])(context, builder, zero_)
            b_row = builder.mul(row_stride(builder, arr_b, itemsize), c_)
            c_row = builder.mul(row_stride(builder, arr_c, 4), c_)
            columns, kept = [], []
            lane = ir.Constant(cty, list(range(lanes)))
            for v in range(stat_vectors):
                start = builder.add(q0_, i64(v * lanes))
                q = builder.select(builder.icmp_signed("<", start, qmax_), start, qmax_)
                columns.append(q)
                # Lanes from max(done, start) on are new (at most all).
                first = builder.select(
                    builder.icmp_signed(">", done_, start), done_, start
                )
                skip = builder.trunc(builder.sub(first, q), i32)
                skip = builder.select(
                    builder.icmp_signed("<", skip, i32(lanes)), skip, i32(lanes)
                )
                kept.append(builder.icmp_signed(">=", lane, splat(builder, skip, cty)))
            one = ones(builder, lda_, cty)
            zeros = ir.Constant(vty, [0.0] * lanes)
            fma = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vty, [vty, vty, vty]),
                f"llvm.fmuladd.v{lanes}f{dtype.bitwidth}",
            )
            slots = [
                [cgutils.alloca_once(builder, ty) for ty in (vty, cty, vty)]
                for _ in range(stat_vectors)
            ]
            done = builder.append_basic_block("stats.done")
            variants = [builder.append_basic_block(f"stats.{flag}") for flag in (0, 1)]
            builder.cbranch(check_, variants[1], variants[0])
            for checked, block in enumerate(variants):
                builder.position_at_end(block)
                for m, n, z in slots:
                    builder.store(ir.Constant(vty, [float("-inf")] * lanes), m)
                    builder.store(ir.Constant(cty, None), n)
                    builder.store(zeros, z)
                with cgutils.for_range(builder, p1_, start=p0_) as loop:
                    r = builder.load(builder.gep(arr_i.data, [loop.index]))
                    base = builder.mul(r, lda_)
                    for v in range(stat_vectors):
                        # The columns of the next call, for the same rows.
                        at = builder.add(q0_, i64((stat_vectors + v) * lanes))
                        prefetch(builder, arr_a.data, builder.add(base, at))
                    for q, (m, n, z) in zip(columns, slots, strict=True):
                        ptr = vector_ptr(builder, arr_a.data, vty, builder.add(base, q))
                        x = builder.load(ptr, align=itemsize)
                        old = builder.load(m)
                        builder.store(
                            builder.select(builder.fcmp_ordered(">", x, old), x, old), m
                        )
                        old = builder.load(n)
                        positive = builder.fcmp_ordered(">", x, zeros)
                        builder.store(
                            builder.select(positive, builder.add(old, one), old), n
                        )
                        if checked:
                            # v * 0 + z, one instruction where the CPU has FMA.
                            builder.store(
                                builder.call(fma, [x, zeros, builder.load(z)]), z
                            )
                for q, new, (m, n, z) in zip(columns, kept, slots, strict=True):
                    at = builder.sub(q, base_)
                    ptr = vector_ptr(builder, arr_b.data, vty, builder.add(b_row, at))
                    old, m = builder.load(ptr, align=itemsize), builder.load(m)
                    larger = builder.fcmp_ordered(">", m, old)
                    builder.store(builder.select(larger, m, old), ptr, align=itemsize)
                    ptr = vector_ptr(builder, arr_c.data, cty, builder.add(c_row, at))
                    n = builder.select(new, builder.load(n), ir.Constant(cty, None))
                    total = builder.add(builder.load(ptr, align=4), n)
                    builder.store(total, ptr, align=4)
                    if checked:
                        ptr = vector_ptr(builder, arr_z.data, vty, at)
                        total = builder.fadd(
                            builder.load(ptr, align=itemsize), builder.load(z)
                        )
                        builder.store(total, ptr, align=itemsize)
                builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen

    shape = dict(
        vector_bytes=vector_bytes, max_chunk=max_chunk, stat_vectors=stat_vectors
    )
    return view, count_block, stats_block, shape


# The kernels. The class statistics and the counts work on one column block
# per call, ``(address, lda, n, offset)``: the matrix of ``rows`` rows,
# ``lda`` elements apart, at that address, whose ``n`` columns are the
# state's columns ``offset ..`` (a layer of a network, or the range of
# columns of a matrix that one thread counts). The kernels take the other
# arrays by address as well (see ``_DTYPE_OF``), ``dtype`` an empty array of
# the data's dtype. They are module functions that call each other as
# globals: numba's cache key includes a kernel's closure variables, and a
# dispatcher or an intrinsic pickles differently in each process, which would
# defeat the cache.

if numba is not None:
    _view, _count_block, _stats_block, _SHAPE = _intrinsics(numba)
    _VECTOR_BYTES = _SHAPE["vector_bytes"]
    _MAX_CHUNK = _SHAPE["max_chunk"]
    _STAT_VECTORS = _SHAPE["stat_vectors"]
    _njit = numba.njit(nogil=True, cache=True)
else:  # pragma: no cover - depends on the environment

    def _njit(function):
        return function


@_njit
def _column_max_kernel(a, rows, lda, out, nan, j0, j1):
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


@_njit
def _sort_rows(y, r0, r1, n_groups, bounds, order):
    # Counting sort of the rows r0 .. r1 by group: then the rows of group
    # g are order[bounds[g - 1]:bounds[g]] (from 0 for g = 0).
    bounds[:] = 0
    for i in range(r0, r1):
        if y[i] < 0 or y[i] >= n_groups:
            raise IndexError("class index out of range")
        bounds[y[i] + 1] += 1
    for g in range(n_groups):
        bounds[g + 1] += bounds[g]
    for i in range(r0, r1):
        order[bounds[y[i]]] = i
        bounds[y[i]] += 1


@_njit
def _class_stats_kernel(
    address, lda, n, offset, rows, py, pcmax, pact, n_classes, ldc, check, dtype
):  # fmt: skip
    # For each chunk of rows (see _GROUP_BYTES), the rows sorted by class;
    # then for each class, four vectors of columns at a time over the class's
    # rows (stats_block; plain loops for fewer columns than a vector), into
    # maxima and counts of this call. The state is updated at the end, and
    # not at all when ``check`` finds NaN or inf.
    if n == 0 or rows == 0:
        return True
    y = _view(py, (rows,), np.int64)
    cmax = _view(pcmax, (n_classes, ldc), np.float64)
    active = _view(pact, (n_classes, ldc), np.int64)
    a = _view(address, ((rows - 1) * lda + n,), dtype)
    lanes = _VECTOR_BYTES // dtype.itemsize
    step = _STAT_VECTORS * lanes
    best = np.full((n_classes, n), -np.inf, dtype.dtype)
    count = np.zeros((n_classes, n), np.int32)
    zero = np.zeros(n, dtype.dtype)
    seen = np.zeros(n_classes, np.bool_)
    group_step = _chunk_rows(rows, n * dtype.itemsize, _GROUP_BYTES)
    order = np.empty(group_step, np.int64)
    bounds = np.zeros(n_classes + 1, np.int64)
    for g0 in range(0, rows, group_step):
        g1 = min(rows, g0 + group_step)
        _sort_rows(y, g0, g1, n_classes, bounds, order)
        p0 = 0
        for c in range(n_classes):
            p1 = bounds[c]
            seen[c] |= p1 > p0
            if p1 > p0 and n < lanes:
                m, k = best[c], count[c]
                for p in range(p0, p1):
                    row = a[order[p] * lda : order[p] * lda + n]
                    for j in range(n):
                        v = row[j]
                        m[j] = v if v > m[j] else m[j]
                        k[j] += np.int32(v > 0)
                        zero[j] += v * 0
            elif p1 > p0:
                for q in range(0, n, step):
                    q0 = max(0, min(q, n - step))
                    _stats_block(
                        a, lda, order, p0, p1, q0, q, n - lanes, 0, best, count,
                        zero, c, check,
                    )  # fmt: skip
            p0 = p1
    if check and np.isnan(zero.sum()):
        return False
    for c in range(n_classes):
        if seen[c]:
            m, k = best[c], count[c]
            cm = cmax[c, offset : offset + n]
            ca = active[c, offset : offset + n]
            for j in range(n):
                cm[j] = max(cm[j], np.float64(m[j]))
                ca[j] += k[j]
    return True


@_njit
def _count_narrow(a, lda, n, idx, p0, p1, t, out, offset):
    # For fewer columns than a vector holds: the rows idx[p0:p1] transposed,
    # so that each column's values lie together, then each column against
    # each of its thresholds, a loop the compiler vectorises (the plain loop
    # over rows added to out[k, j] for every value, a chain of dependent
    # stores).
    m = p1 - p0
    if m <= 0:
        return
    columns = np.empty((n, m), a.dtype)
    for p in range(m):
        r = idx[p0 + p] * lda
        for j in range(n):
            columns[j, p] = a[r + j]
    for j in range(n):
        col = columns[j]
        for k in range(t.shape[0]):
            tk = t[k, offset + j]
            c = np.int32(0)
            for p in range(m):
                c += np.int32(col[p] > tk)
            out[k, offset + j] += c


@_njit
def _count_rows(a, lda, n, idx, p0, p1, t, out, offset):
    # count_block over the n columns of a, one vector at a time; the last
    # vector may reach back over counted columns, whose lanes it skips.
    lanes = _VECTOR_BYTES // a.itemsize
    n_thresholds = t.shape[0]
    if n_thresholds == 0 or p1 == p0:
        return
    if n < lanes:
        _count_narrow(a, lda, n, idx, p0, p1, t, out, offset)
        return
    chunks = -(-n_thresholds // _MAX_CHUNK)
    for j in range(0, n, lanes):
        q = min(j, n - lanes)
        k0 = 0
        for s in range(chunks):
            kc = n_thresholds // chunks + (s < n_thresholds % chunks)
            _count_block(a, lda, idx, p0, p1, t, k0, kc, out, q, j - q, offset)
            k0 += kc


@_njit
def _count_above_kernel(
    address, lda, n, offset, rows, py, pt1, pout1, k1, pt2, pout2, n_groups, k2,
    ldt, dtype,
):  # fmt: skip
    # For each chunk of rows (see _GROUP_BYTES), the rows sorted by group;
    # then, in chunks of rows that stay in the L2 cache (see _CHUNK_BYTES),
    # the thresholds shared by all rows, and the rows of each group against
    # its own.
    if n == 0 or rows == 0:
        return
    t1 = _view(pt1, (k1, ldt), dtype)
    out1 = _view(pout1, (k1, ldt), np.int64)
    n_groups = n_groups if k2 else 0
    y = _view(py, (rows if n_groups else 0,), np.int64)
    t2 = _view(pt2, (n_groups, k2, ldt), dtype)
    out2 = _view(pout2, (n_groups, k2, ldt), np.int64)
    a = _view(address, ((rows - 1) * lda + n,), dtype)
    group_step = _chunk_rows(rows, n * dtype.itemsize, _GROUP_BYTES)
    step = _chunk_rows(rows, n * dtype.itemsize, _CHUNK_BYTES)
    order = np.empty(group_step if n_groups else 0, np.int64)
    bounds = np.zeros(n_groups + 1, np.int64)
    every = np.arange(rows)
    for g0 in range(0, rows, group_step):
        g1 = min(rows, g0 + group_step)
        for r0 in range(g0, g1, step):
            _count_rows(a, lda, n, every, r0, min(g1, r0 + step), t1, out1, offset)
        if n_groups:
            _sort_rows(y, g0, g1, n_groups, bounds, order)
        p0 = 0
        for g in range(n_groups):
            p1 = bounds[g]
            _count_rows(a, lda, n, order, p0, p1, t2[g], out2[g], offset)
            p0 = p1


@_njit
def _chunk_rows(rows, row_bytes, chunk_bytes):
    # Rows per chunk: equal chunks of at most chunk_bytes (at least one row).
    n_chunks = max(1, -(-rows * row_bytes // chunk_bytes))
    return max(1, -(-rows // n_chunks))


_NUMBA = None
if numba is not None:
    _NUMBA = {
        "column_max": _column_max_kernel,
        "class_stats": _class_stats_kernel,
        "count_above": _count_above_kernel,
    }


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


def _column_ranges(rows, n):
    """Ranges ``(j0, j1)`` of the columns, one per thread: one unless large."""
    if rows * n < _PARALLEL_ELEMENTS or n < 128:
        return [(0, n)]
    n_threads = min(_threads(), n // 64)
    if n_threads < 2:
        return [(0, n)]
    bounds = [(n * p // n_threads) // 16 * 16 for p in range(n_threads)] + [n]
    return [(j0, j1) for j0, j1 in zip(bounds[:-1], bounds[1:], strict=True) if j1 > j0]


def _in_threads(calls):
    """The results of ``calls``, ``(function, args)`` pairs, run in threads
    when there are several."""
    if len(calls) == 1:
        function, args = calls[0]
        return [function(*args)]
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(function, *args) for function, args in calls]
        return [future.result() for future in futures]


def _column_blocks(part, lda, offset):
    """The CPU matrix ``part`` (rows ``lda`` elements apart), its columns the
    state's from ``offset`` on, as blocks of the kernels: one per range of
    :func:`_column_ranges`."""
    rows, n = part.shape
    address, size = part.data_ptr(), part.element_size()
    return [
        (address + j0 * size, lda, j1 - j0, offset + j0)
        for j0, j1 in _column_ranges(rows, n)
    ]


def _cpu_blocks(A):
    """``(buffer, rows, lda, start)`` numpy views of the CPU tensor ``A``.

    A float32 or float64 matrix whose rows are contiguous is read in place
    (a column slice ``X[:, :k]`` too); anything else is converted in chunks.
    """
    for part, lda, start in _row_blocks(A):
        rows, n = part.shape
        flat = torch.as_strided(part, ((rows - 1) * lda + n,), (1,)).numpy()
        yield flat, rows, lda, start


def _row_blocks(A):
    """``(part, lda, start)``: the rows ``start ..`` of the CPU tensor ``A``,
    ``lda`` elements apart in ``part``, in the working dtype.

    A float32 or float64 matrix whose rows are contiguous is read in place
    (a column slice ``X[:, :k]`` too); anything else is converted in chunks.
    """
    rows, n = A.shape
    if rows == 0:
        return ()
    if A.dtype in (torch.float32, torch.float64) and (A.stride(1) == 1 or n == 1):
        lda = A.stride(0) if rows > 1 else n
        if rows <= _MAX_ROWS:  # the common case, without a generator
            return ((A, lda, 0),)
        return ((A[s : s + _MAX_ROWS], lda, s) for s in range(0, rows, _MAX_ROWS))
    return _converted_blocks(A)


def _converted_blocks(A):
    rows, n = A.shape
    wd = working_dtype(A.dtype)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, rows, step):
        yield A[start : start + step].to(wd).contiguous(), n, start


def _torch_chunks(A, per_row=1):
    """Yield ``(chunk, start)`` in the working dtype, about 4M elements each."""
    rows, n = A.shape
    wd = working_dtype(A.dtype)
    step = max(1, _CHUNK_ELEMENTS // max(n * per_row, 1))
    for start in range(0, rows, step):
        yield A[start : start + step].to(wd), start


# The kernels take tensors by address (data_ptr()): right after a forward
# pass each conversion to numpy, function call or generator costs several
# times what it costs alone (see the counters below). These helpers make
# tensors as the kernels take them (CPU, dtype, C-contiguous).

_DTYPE_OF = {
    torch.float32: np.empty(0, np.float32),
    torch.float64: np.empty(0, np.float64),
}


def _kernel_ready(t, dtype):
    """Whether the kernels can take ``t`` as it is."""
    return t.dtype == dtype and t.is_cpu and t.is_contiguous()


def _state(t, dtype):
    """``t`` itself when the kernels can add to it in place, else a copy
    (then copied back)."""
    if _kernel_ready(t, dtype):
        return t
    return t.to("cpu", dtype).contiguous()


def _labels(y):
    """The class of each row, as a contiguous int64 CPU tensor."""
    if _kernel_ready(y, torch.int64):
        return y
    return y.to("cpu", torch.int64).contiguous()


def _as_thresholds(t, dtype):
    """Thresholds in the data's dtype, C-contiguous on the CPU.

    Others are rounded down to it, which keeps ``v > t`` as it was.
    """
    if _kernel_ready(t, dtype):
        return t
    if t.dtype != dtype:
        t = _round_down(t.to("cpu", torch.float64), dtype)
    return t.to("cpu").contiguous()


def _raise_columns(width, offset, n):
    """Raise the error for columns ``offset .. offset + n`` out of ``width``."""
    raise ValueError(
        f"The state has {width} columns; columns {offset} .. {offset + n} were "
        "asked for."
    )


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
        kernel = _NUMBA["column_max"]
        for flat, rows, lda, _ in _cpu_blocks(A):
            ranges = _column_ranges(rows, n)
            _in_threads([(kernel, (flat, rows, lda, out, nan, *r)) for r in ranges])
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


def accumulate_class_stats(A, y, class_max, active, check_finite=False, offset=0):
    """Add a batch to per-class maxima and counts of positive values, in place.

    Parameters
    ----------
    A : Tensor of shape (n_samples, n_columns)
        Activations, on the device of the state.
    y : Tensor of shape (n_samples,), dtype=int64
        Class index of each row, in ``[0, n_classes)``.
    class_max : Tensor of shape (n_classes, n_neurons), dtype=float64
        Largest value of each class and neuron so far (0 when none is
        positive); updated in place.
    active : Tensor of shape (n_classes, n_neurons), dtype=int64
        Number of values > 0 so far; updated in place.
    check_finite : bool, default=False
        Look for NaN and infinity in the same pass.
    offset : int, default=0
        The columns of ``A`` are the neurons ``offset .. offset + n_columns``.

    Returns
    -------
    finite : bool
        False when ``check_finite`` found NaN or infinity, for the caller to
        raise: the state may then be partly updated. True otherwise.
    """
    rows, n = A.shape
    n_classes, width = class_max.shape
    if active.shape != (n_classes, width) or y.shape[0] != rows:
        raise ValueError("y, class_max and active do not match the batch.")
    if offset < 0 or offset + n > width:
        _raise_columns(width, offset, n)
    if A.is_cpu and _NUMBA is not None and not _numba_disabled():
        kernel = _NUMBA["class_stats"]
        cmax, act = _state(class_max, torch.float64), _state(active, torch.int64)
        labels = _labels(y)
        finite = True
        for part, lda, start in _row_blocks(A):
            args = (
                part.shape[0], labels.data_ptr() + 8 * start, cmax.data_ptr(),
                act.data_ptr(), n_classes, width, bool(check_finite),
                _DTYPE_OF[part.dtype],
            )  # fmt: skip
            blocks = _column_blocks(part, lda, offset)
            finite = all(_in_threads([(kernel, (*b, *args)) for b in blocks]))
            if not finite:
                break
        if cmax is not class_max:
            class_max.copy_(cmax)
        if act is not active:
            active.copy_(act)
        return finite
    if check_finite and A.numel() and not bool(torch.isfinite(A).all()):
        return False
    cmax, act = class_max[:, offset : offset + n], active[:, offset : offset + n]
    for chunk, start in _torch_chunks(A):
        yc = y[start : start + len(chunk)]
        index = yc[:, None].expand(-1, n)
        cmax.scatter_reduce_(0, index, chunk.to(torch.float64), reduce="amax")
        act.index_add_(0, yc, (chunk > 0).to(torch.int64))
    return True


def _above_state(thresholds1, out1, thresholds2, out2):
    """``(k1, width, n_groups, k2)`` of the state of :func:`count_above`,
    checked; ``k2`` is 0 without thresholds per group."""
    k1, width = thresholds1.shape
    if out1.shape != (k1, width):
        raise ValueError("thresholds1 and out1 have different shapes.")
    if thresholds2 is None or thresholds2.shape[1] == 0:
        return k1, width, 0, 0
    n_groups, k2, width2 = thresholds2.shape
    if out2.shape != (n_groups, k2, width) or width2 != width:
        raise ValueError("thresholds2 and out2 do not match thresholds1.")
    return k1, width, n_groups, k2


def count_above(A, thresholds1, out1, y=None, thresholds2=None, out2=None, offset=0):
    """Count, in place, the values of each column above each threshold.

    ``out1[k, j] += #{i : A[i, j] > thresholds1[k, j]}`` for thresholds
    shared by all rows, and, when ``y`` is given,
    ``out2[g, k, j] += #{i : y[i] = g, A[i, j] > thresholds2[g, k, j]}``
    for thresholds that depend on each row's group (its class). Thresholds
    are in :func:`working_dtype` of ``A``; both sets are counted in one pass.
    The columns of ``A`` are the columns ``offset .. offset + n`` of the
    thresholds and counts.
    """
    rows, n = A.shape
    k1, width, n_groups, k2 = _above_state(
        thresholds1, out1, None if y is None else thresholds2, out2
    )
    grouped = k2 > 0
    if grouped and y.shape[0] != rows:
        raise ValueError("y does not match the batch.")
    if offset < 0 or offset + n > width:
        _raise_columns(width, offset, n)
    if A.is_cpu and _NUMBA is not None and not _numba_disabled():
        kernel = _NUMBA["count_above"]
        wd = working_dtype(A.dtype)
        t1, o1 = _as_thresholds(thresholds1, wd), _state(out1, torch.int64)
        t2 = o2 = t1
        if grouped:
            t2, o2 = _as_thresholds(thresholds2, wd), _state(out2, torch.int64)
            labels = _labels(y)
        for part, lda, start in _row_blocks(A):
            args = (
                part.shape[0], labels.data_ptr() + 8 * start if grouped else 0,
                t1.data_ptr(), o1.data_ptr(), k1, t2.data_ptr(), o2.data_ptr(),
                n_groups, k2, width, _DTYPE_OF[part.dtype],
            )  # fmt: skip
            blocks = _column_blocks(part, lda, offset)
            _in_threads([(kernel, (*b, *args)) for b in blocks])
        if o1 is not out1:
            out1.copy_(o1)
        if grouped and o2 is not out2:
            out2.copy_(o2)
        return
    per_row = max(thresholds1.shape[0], thresholds2.shape[1] if grouped else 0)
    t1, o1 = thresholds1[:, offset : offset + n], out1[:, offset : offset + n]
    if grouped:
        t2 = thresholds2[:, :, offset : offset + n]
        o2 = out2[:, :, offset : offset + n]
    for chunk, start in _torch_chunks(A, per_row=per_row):
        if t1.shape[0]:
            o1 += (chunk[:, None, :] > t1).sum(0)
        if grouped:
            yc = y[start : start + len(chunk)]
            above = (chunk[:, None, :] > t2[yc]).to(torch.int64)
            o2.index_add_(0, yc, above)


# -- per-batch entry points of the streaming statistics -------------------------
#
# A pass over a data set calls the kernels once per layer and batch, right
# after the forward pass wrote the layer. Everything about the state is
# checked once, when the pass starts; each call then checks only its batch
# and goes straight to the kernel.


def _kernel_batch(A, offset, width):
    """Whether the kernels take batch ``A`` of columns ``offset ..`` as it is
    (a small float CPU matrix with contiguous rows, within the state)."""
    rows, n = A.shape
    return (
        A.dtype in _DTYPE_OF
        and A.is_cpu
        and A.stride(1) == 1
        and 1 < rows * n < _PARALLEL_ELEMENTS
        and 0 <= offset
        and offset + n <= width
    )


def labels_of(y, start=0):
    """The labels argument of the counters: ``y[start:]`` with its address
    when the kernels can read it (an int64, contiguous CPU tensor), else 0.

    A pass builds one per batch from its labels tensor by arithmetic, with
    no tensor made per batch.
    """
    ready = y.dtype == torch.int64 and y.is_cpu and y.is_contiguous()
    return y, start, y.data_ptr() + 8 * start if ready and len(y) else 0


def _label_address(labels, rows):
    """The address of the ``rows`` labels of a batch, or 0 when the kernels
    cannot read them (or there are fewer)."""
    y, start, address = labels
    return address if address and start + rows <= len(y) else 0


def _label_rows(labels, rows):
    y, start, _ = labels
    return y[start : start + rows]


def _numba_state(*tensors):
    """Whether the numba kernels can update these state tensors in place."""
    return (
        _NUMBA is not None
        and not _numba_disabled()
        and all(t.is_cpu and t.is_contiguous() for t in tensors)
    )


def class_stats_counter(class_max, active, check_finite=False):
    """``accumulate(A, labels, offset) -> finite``:
    :func:`accumulate_class_stats` into this state, for many batches;
    ``labels`` from :func:`labels_of`.

    The state is checked here once; it must stay the same tensors.
    """
    n_classes, width = class_max.shape
    if active.shape != (n_classes, width):
        raise ValueError("class_max and active have different shapes.")

    def general(A, labels, offset):
        y = _label_rows(labels, A.shape[0])
        return accumulate_class_stats(A, y, class_max, active, check_finite, offset)

    if not (
        _numba_state(class_max, active)
        and class_max.dtype == torch.float64
        and active.dtype == torch.int64
    ):
        return general
    kernel = _NUMBA["class_stats"]
    pmax, pact, check = class_max.data_ptr(), active.data_ptr(), bool(check_finite)

    def accumulate(A, labels, offset):
        rows = A.shape[0]
        address = _label_address(labels, rows)
        if not (address and _kernel_batch(A, offset, width)):
            return general(A, labels, offset)
        return kernel(
            A.data_ptr(), A.stride(0), A.shape[1], offset, rows, address,
            pmax, pact, n_classes, width, check, _DTYPE_OF[A.dtype],
        )  # fmt: skip

    accumulate.state = (class_max, active)  # the kernel writes to their memory
    return accumulate


def count_above_counter(thresholds1, out1, thresholds2=None, out2=None):
    """``count(A, labels, offset)``: :func:`count_above` with these
    thresholds and counts (``labels`` from :func:`labels_of`, used with
    ``thresholds2`` only), for the batches of a pass.

    The state is checked here once; it must stay the same tensors.
    """
    k1, width, n_groups, k2 = _above_state(thresholds1, out1, thresholds2, out2)
    grouped = k2 > 0
    t2, o2 = (thresholds2, out2) if grouped else (thresholds1, out1)

    def general(A, labels, offset):
        if grouped:
            y = _label_rows(labels, A.shape[0])
            count_above(A, thresholds1, out1, y, thresholds2, out2, offset)
        else:
            count_above(A, thresholds1, out1, offset=offset)

    dtype = thresholds1.dtype
    if not (
        _numba_state(thresholds1, out1, t2, o2)
        and dtype in _DTYPE_OF
        and t2.dtype == dtype
        and out1.dtype == o2.dtype == torch.int64
    ):
        return general
    kernel = _NUMBA["count_above"]
    state = (
        thresholds1.data_ptr(), out1.data_ptr(), k1, t2.data_ptr(), o2.data_ptr(),
        n_groups, k2, width, _DTYPE_OF[dtype],
    )  # fmt: skip

    def count(A, labels, offset):
        rows = A.shape[0]
        address = _label_address(labels, rows) if grouped else 0
        if not (
            A.dtype == dtype
            and _kernel_batch(A, offset, width)
            and (address or not grouped)
        ):
            general(A, labels, offset)
            return
        kernel(
            A.data_ptr(), A.stride(0), A.shape[1], offset, rows, address,
            *state,
        )  # fmt: skip

    count.state = (thresholds1, out1, t2, o2)  # the kernel writes to their memory
    return count


def histogram_counts(A, edges, binning="right"):
    """Counts of shape (n_neurons, R) of ``A``'s positive values in the bins."""
    n, n_bins = edges.shape[0], edges.shape[1] - 1
    if n == 0:
        return torch.zeros((0, n_bins), dtype=torch.int64, device=A.device)
    t = thresholds(edges.to(A.device), working_dtype(A.dtype), binning)
    counts = torch.zeros(t.shape, dtype=torch.int64, device=A.device)
    count_above(A, t, counts)
    return bins_from_counts(counts, n_bins, binning)
