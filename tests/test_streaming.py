"""Exact streaming statistics: kernels, NeuronStatistics, streamed fits, fused path."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from sknap import (
    ActivationEntropy,
    ActivationExtractor,
    ActivationProbabilityFeatures,
    _histogram,
    _kernels,
    make_nap_pipeline,
)
from sknap.fused import fused_transform
from sknap.streaming import HistogramStatistics, NeuronStatistics, compute_statistics
from sknap.toy import make_mlp

BACKENDS = ["numba", "torch"] if _kernels.numba is not None else ["torch"]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Run a test with the numba kernels and again with the torch code."""
    monkeypatch.setenv("SKNAP_DISABLE_NUMBA", "1" if request.param == "torch" else "")
    return request.param


def _reference_counts(A, edges, binning):
    """Bin counts by direct float64 comparison, one neuron at a time."""
    n_bins = edges.shape[1] - 1
    out = np.zeros((A.shape[1], n_bins), dtype=np.int64)
    for j in range(A.shape[1]):
        v = A[:, j].astype(np.float64)
        v = v[v > 0]
        e = edges[j]
        for k in range(n_bins):
            if binning == "reference":
                out[j, k] = np.sum((v > e[k]) & (v < e[k + 1]))
            elif k == n_bins - 1:
                out[j, k] = np.sum(v > e[k])
            else:
                out[j, k] = np.sum((v > e[k]) & (v <= e[k + 1]))
    return out


def _tricky_matrix(rng, dtype, n_bins, binning, n=400, m=33):
    """Random activations with rows exactly on every edge and one ulp around."""
    A = rng.normal(size=(n, m)).astype(dtype)
    A[A < -0.3] = 0
    A[:, 3] = 0  # a dead neuron
    maxima = _histogram.column_max(A)
    edges = _histogram.bin_edges(maxima, n_bins, binning).numpy()
    on = edges.T.astype(dtype)
    A[: n_bins + 1] = on
    A[n_bins + 1 : 2 * n_bins + 2] = np.nextafter(on, dtype(np.inf))
    A[2 * n_bins + 2 : 3 * n_bins + 3] = np.nextafter(on, dtype(-np.inf))
    A[:, 3] = 0
    return A


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_bins", [2, 3, 10, 17])
@pytest.mark.parametrize("binning", ["right", "reference"])
def test_histogram_counts_match_direct_comparison(backend, rng, dtype, n_bins, binning):
    A = _tricky_matrix(rng, dtype, n_bins, binning)
    maxima = _histogram.column_max(A)
    edges = _histogram.bin_edges(maxima, n_bins, binning)
    counts = _histogram.histogram_counts(A, edges, binning).numpy()
    assert_array_equal(counts, _reference_counts(A, edges.numpy(), binning))
    # New data above the fitted maxima, and a neuron dead at fit.
    B = rng.uniform(0, 3, size=(50, A.shape[1])).astype(dtype) * (maxima.numpy() + 1)
    counts = _histogram.histogram_counts(B, edges, binning).numpy()
    assert_array_equal(counts, _reference_counts(B, edges.numpy(), binning))


def test_kernels_read_column_slices_and_half_precision(backend, rng):
    X = np.maximum(rng.normal(size=(300, 20)), 0).astype(np.float32)
    edges = _histogram.bin_edges(_histogram.column_max(X[:, :12]), 5)
    expected = _reference_counts(X[:, :12], edges.numpy(), "right")
    view = torch.from_numpy(X)[:, :12]  # rows 20 apart, not contiguous
    assert_array_equal(_histogram.histogram_counts(view, edges).numpy(), expected)
    half = torch.from_numpy(X[:, :12]).to(torch.bfloat16)
    exact = half.to(torch.float32).numpy()
    edges = _histogram.bin_edges(_histogram.column_max(exact), 5)
    assert_array_equal(
        _histogram.histogram_counts(half, edges).numpy(),
        _reference_counts(exact, edges.numpy(), "right"),
    )
    assert_array_equal(_histogram.column_max(half), _histogram.column_max(exact))


def _first(A, y, n_classes, width=None, offset=0):
    width = A.shape[1] if width is None else width
    cmax = torch.zeros((n_classes, width), dtype=torch.float64)
    active = torch.zeros((n_classes, width), dtype=torch.int64)
    finite = _kernels.first_pass(
        torch.from_numpy(A), torch.from_numpy(y), cmax, active, offset
    )
    return finite, cmax, active


def test_first_pass_kernel(backend, rng):
    A = rng.normal(size=(500, 40)).astype(np.float32)
    y = rng.integers(0, 4, size=500)
    finite, cmax, active = _first(A, y, 4)
    assert finite
    for c in range(4):
        assert_array_equal(cmax[c], np.maximum(A[y == c].max(axis=0), 0))
        assert_array_equal(active[c], (A[y == c] > 0).sum(axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("binning", ["right", "reference"])
def test_state_counts_per_class_with_an_offset(backend, rng, dtype, binning):
    # Per class, neuron and state, against a direct comparison with the
    # edges: the columns 5 .. 42 of the state, an empty class, values on
    # edges and one ulp either side, new data above the maxima.
    n_bins, n_classes, offset = 7, 5, 5
    A = _tricky_matrix(rng, dtype, n_bins, binning, n=3000, m=37)
    A[-5:] *= 3  # above the edges' maximum
    y = rng.integers(0, n_classes, size=len(A))
    y[y == 3] = 4
    edges = _histogram.bin_edges(_histogram.column_max(A[:-5]), n_bins, binning)
    full = torch.cat([torch.ones((offset, n_bins + 1), dtype=torch.float64), edges])
    T = _kernels.thresholds(full, torch.from_numpy(A).dtype, binning)
    above = torch.zeros((n_classes, *T.shape), dtype=torch.int64)
    seen = torch.zeros((n_classes, offset + 37), dtype=torch.float64)
    _kernels.count_above(
        torch.from_numpy(A), torch.from_numpy(y), T, above, seen, offset
    )
    assert not above[:, :, :offset].any() and not seen[:, :offset].any()
    samples = torch.bincount(torch.from_numpy(y), minlength=n_classes)
    counts = _kernels.states_from_above(above, samples, binning)
    for c in range(n_classes):
        rows = A[y == c]
        expected = _reference_counts(rows, edges.numpy(), binning)
        assert_array_equal(counts[c, offset:, 1:], expected)
        assert_array_equal(counts[c, offset:, 0], (rows <= 0).sum(axis=0))
        assert_array_equal(seen[c, offset:], np.maximum(rows.max(axis=0, initial=0), 0))


def test_counts_of_blocks_equal_direct_sums(backend, rng):
    # An extractor pass through the public block protocol: blocks of columns
    # at offsets, batches of several sizes, both passes; each count against
    # a direct sum over all batches.
    blocks = [(0, 37), (37, 16), (53, 5), (58, 70)]  # (offset, width)
    width, n_classes, n_bins = 128, 4, 6
    sizes = [64, 64, 1, 33, 200, 64]
    X = np.maximum(rng.normal(size=(sum(sizes), width)), 0).astype(np.float32)
    X[X > 2.5] = 0  # the largest values of some neurons sit in middle batches
    y = rng.integers(0, n_classes, size=len(X))
    y[y == 2] = 3  # an empty class
    stats = NeuronStatistics()
    for second in (False, True):
        start = 0
        for size in sizes:
            part = slice(start, start + size)
            rows = stats.start_batch(y[part], size, width, torch.device("cpu"))
            for offset, n in reversed(blocks):  # in any order
                block = torch.from_numpy(X[part, offset : offset + n])
                assert stats.count_block(block, rows, offset)
            stats.end_batch(rows)
            start += size
        if not second:
            first = stats
            stats = stats.begin_histograms(n_bins)
    assert first.n_samples_ == len(X)
    assert_array_equal(first.classes_, [0, 1, 3])
    assert_array_equal(first.class_count_, np.bincount(y)[[0, 1, 3]])
    edges = stats.bin_edges_.numpy()
    assert_array_equal(edges[:, -1], X.max(axis=0))
    for c, label in enumerate(first.classes_):
        part = X[y == label]
        assert_array_equal(first.active_count_[c], (part > 0).sum(axis=0))
        assert_array_equal(first.class_max_[c], part.max(axis=0, initial=0))
        assert_array_equal(stats.counts_[c, :, 0], (part <= 0).sum(axis=0))
        assert_array_equal(
            stats.counts_[c, :, 1:], _reference_counts(part, edges, "right")
        )
    stats.check_same_samples()


@pytest.mark.parametrize("where", [(0, 0), (4999, 36), (2500, 17)])
def test_first_pass_finds_nan_anywhere(backend, rng, where):
    A = np.maximum(rng.normal(size=(5000, 37)), 0).astype(np.float32)
    y = rng.integers(0, 3, size=5000)
    for bad in (np.nan, np.inf, -np.inf):
        B = A.copy()
        B[where] = bad
        assert _first(B, y, 3, width=40, offset=3)[0] is False
    finite, _, active = _first(A, y, 3, width=40, offset=3)
    assert finite is True
    assert_array_equal(active[:, 3:].sum(0), (A > 0).sum(0))
    assert not active[:, :3].any()


def test_large_matrix_stays_exact(rng):
    A = np.maximum(rng.normal(size=(2100, 1000)), 0).astype(np.float32)
    edges = _histogram.bin_edges(_histogram.column_max(A), 10)
    counts = _histogram.histogram_counts(A, edges).numpy()
    assert counts.sum() == (A > 0).sum()
    expected = _reference_counts(A[:, :50], edges[:50].numpy(), "right")
    assert_array_equal(counts[:50], expected)


# -- streamed fits equal in-memory fits ---------------------------------------


def _data(rng, n=700, n_neurons=25, n_classes=3, dtype=np.float32):
    A = np.maximum(rng.normal(size=(n, n_neurons)), 0).astype(dtype)
    A[:, 0] = 0  # dead
    y = rng.integers(0, n_classes, size=n)
    proba = rng.dirichlet(np.ones(n_classes), size=n).astype(dtype)
    return np.hstack([A, proba]), y


def _shards(X, y, size=128):
    return [(X[s : s + size], y[s : s + size]) for s in range(0, len(X), size)]


ENTROPY_ATTRIBUTES = [
    "neuron_entropy_",
    "neuron_max_",
    "bin_edges_",
    "dead_neurons_",
    "classes_",
    "class_neuron_entropy_",
    "class_entropy_",
    "selected_neurons_",
    "n_neurons_in_",
    "n_outputs_in_",
    "n_features_in_",
    "entropy_",
    "normalized_entropy_",
]


def _assert_fits_equal(entropy_source, proba_source, X, y, n_bins):
    """Fits from streamed sources equal the in-memory fits on ``(X, y)``.

    Returns the in-memory ActivationEntropy.
    """
    expected = ActivationEntropy(n_bins=n_bins).fit(X, y)
    fitted = ActivationEntropy(n_bins=n_bins).fit(entropy_source)
    for name in ENTROPY_ATTRIBUTES:
        assert_array_equal(getattr(fitted, name), getattr(expected, name), name)
    assert_array_equal(
        ActivationProbabilityFeatures().fit(proba_source).activation_probability_,
        ActivationProbabilityFeatures().fit(X, y).activation_probability_,
    )
    return expected


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("binning", ["right", "reference"])
def test_streamed_entropy_equals_in_memory(backend, rng, dtype, binning):
    X, y = _data(rng, dtype=dtype)
    params = dict(n_bins=7, binning=binning, n_neurons=10)
    expected = ActivationEntropy(**params).fit(X, y)
    streamed = ActivationEntropy(**params).fit(_shards(X, y))
    for name in ENTROPY_ATTRIBUTES:
        assert_array_equal(getattr(streamed, name), getattr(expected, name), name)
    assert_array_equal(streamed.transform(X), expected.transform(X))


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
def test_streamed_entropy_of_tensors_without_labels(rng):
    X, _ = _data(rng)
    A = torch.from_numpy(X[:, :25])
    expected = ActivationEntropy(n_outputs=0).fit(X[:, :25])
    streamed = ActivationEntropy(n_outputs=0).fit([A[:300], A[300:]])
    assert_array_equal(streamed.neuron_entropy_, expected.neuron_entropy_)
    assert not hasattr(streamed, "class_neuron_entropy_")


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_streamed_probabilities_equal_in_memory(rng, alpha):
    X, y = _data(rng)
    expected = ActivationProbabilityFeatures(alpha=alpha).fit(X, y)
    batches = iter(_shards(X, y))  # one pass: an iterator is enough
    streamed = ActivationProbabilityFeatures(alpha=alpha).fit(batches)
    assert_array_equal(
        streamed.activation_probability_, expected.activation_probability_
    )
    assert_array_equal(streamed.class_count_, expected.class_count_)
    assert_array_equal(streamed.classes_, expected.classes_)
    assert_array_equal(streamed.transform(X), expected.transform(X))


def test_streamed_probabilities_with_a_missing_class(rng):
    # Labels are backbone output indices and class 1 never occurs.
    X, y = _data(rng)
    y[y == 1] = 2
    with pytest.warns(UserWarning, match="no training sample"):
        expected = ActivationProbabilityFeatures(n_outputs=3).fit(X, y)
    with pytest.warns(UserWarning, match="no training sample"):
        streamed = ActivationProbabilityFeatures(n_outputs=3).fit(_shards(X, y))
    assert_array_equal(streamed.classes_, [0, 1, 2])
    assert_array_equal(
        streamed.activation_probability_, expected.activation_probability_
    )


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
def test_streamed_fit_from_a_dataloader(rng):
    X, y = _data(rng)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(dataset, batch_size=100)
    expected = ActivationEntropy(n_bins=5).fit(X, y)
    streamed = ActivationEntropy(n_bins=5).fit(loader)
    assert_array_equal(streamed.class_neuron_entropy_, expected.class_neuron_entropy_)


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
@pytest.mark.filterwarnings("ignore::sknap.EmptyClassWarning")
@pytest.mark.parametrize(
    "Estimator", [ActivationEntropy, ActivationProbabilityFeatures]
)
def test_streamed_refit_ignores_names_of_an_earlier_fit(rng, Estimator):
    # An in-memory fit on named columns, then a streamed one without names:
    # the names must not decide the second fit's probability block.
    pd = pytest.importorskip("pandas")
    X, y = _data(rng, n_classes=3)
    y[y == 2] = 1  # two classes in y, three probability columns named in X
    columns = [f"a{j}" for j in range(25)] + ["proba_0", "proba_1", "proba_2"]
    fresh = Estimator().fit(_shards(X, y))
    refit = Estimator().fit(pd.DataFrame(X, columns=columns), y)
    assert refit.n_neurons_in_ == 25
    refit.fit(_shards(X, y))
    assert refit.n_neurons_in_ == fresh.n_neurons_in_ == 26
    assert not hasattr(refit, "feature_names_in_")


def test_streamed_fit_errors(rng):
    X, y = _data(rng)
    with pytest.raises(TypeError, match="two passes"):
        ActivationEntropy().fit(iter(_shards(X, y)))
    with pytest.raises(ValueError, match="labels must come with the batches"):
        ActivationEntropy().fit(_shards(X, y), y)
    with pytest.raises(ValueError, match="same columns"):
        ActivationEntropy().fit([(X[:10], y[:10]), (X[10:20, :5], y[10:20])])
    with pytest.raises(ValueError, match="without labels"):
        ActivationEntropy().fit([(X[:10], y[:10]), X[10:20]])
    bad = X[:10].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ActivationEntropy().fit([bad])
    with pytest.raises(ValueError, match="needs class labels"):
        ActivationProbabilityFeatures().fit([X[:10]])
    stats = NeuronStatistics().update_from(_shards(X, y))
    with pytest.raises(ValueError, match="second-pass"):
        ActivationEntropy().fit(stats)
    with pytest.raises(ValueError, match="n_bins=4"):
        ActivationEntropy(n_bins=10).fit(stats.begin_histograms(4))


# -- merging ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
def test_merged_shards_equal_one_fit(rng):
    X, y = _data(rng, n=900)
    # Shard 1 sees classes 0 and 1 only, shard 2 classes 1 and 2.
    first, second = (y != 2), (y != 0)
    second &= ~first
    parts = [_shards(X[first], y[first]), _shards(X[second], y[second])]
    passes = [NeuronStatistics().update_from(p) for p in parts]
    merged = passes[0] + passes[1]
    assert_array_equal(merged.classes_, [0, 1, 2])
    assert merged.n_samples_ == len(X)
    shards = [merged.begin_histograms(6).update_from(p) for p in parts]
    total = shards[1] + shards[0]
    _assert_fits_equal(total, merged, X, y, n_bins=6)
    # Second passes that started from different first passes do not merge.
    alone = passes[0].begin_histograms(6).update_from(parts[0])
    with pytest.raises(ValueError, match="different first passes"):
        alone + shards[1]
    with pytest.raises(ValueError, match="first-pass with second-pass"):
        merged + shards[0]


def test_begin_histograms_returns_the_second_pass(rng):
    # Two classes, not one class in two modes: the second pass counts bins
    # and never the first pass's maxima or samples.
    X, y = _data(rng, n=300)
    first = NeuronStatistics().update(X, y)
    second = first.begin_histograms(5)
    assert type(second) is HistogramStatistics
    assert not isinstance(second, NeuronStatistics)
    assert not hasattr(second, "begin_histograms")
    assert not hasattr(first, "counts_") and not hasattr(first, "bin_edges_")
    assert (first.second_pass, second.second_pass) == (False, True)
    second.update(X, y)
    assert second.n_samples_ == first.n_samples_ == 300  # not 600
    assert torch.equal(second.class_max_, first.class_max_)
    assert torch.equal(second.class_count_, torch.from_numpy(np.bincount(y)))
    assert int(second.counts_.sum()) == X.size
    assert second.hist_.sum() == (X > 0).sum()
    second.check_same_samples()
    # The first pass grows its classes; the second refuses a new one.
    first.update(X[:5], np.full(5, 7))
    assert_array_equal(first.classes_, [0, 1, 2, 7])
    with pytest.raises(ValueError, match=r"labels \[7\] that the first pass did not"):
        second.update(X[:5], np.full(5, 7))
    with pytest.raises(TypeError, match="begins from the first pass, a Neuron"):
        HistogramStatistics(second, 5)
    with pytest.raises(ValueError, match="needs the first pass"):
        NeuronStatistics().begin_histograms(5)


def test_merging_first_with_second_pass_is_refused(rng):
    X, y = _data(rng, n=200)
    first = NeuronStatistics().update(X, y)
    second = first.begin_histograms(4).update(X, y)
    for a, b in [(first, second), (second, first), (NeuronStatistics(), second)]:
        with pytest.raises(ValueError, match="call begin_histograms on the result"):
            a + b
        with pytest.raises(ValueError, match="first-pass with second-pass"):
            a.merge(b)
    with pytest.raises(TypeError):
        first + 1
    with pytest.raises(TypeError, match="merges with statistics of the same pass"):
        second.merge(X)
    # An empty first pass is the neutral element of first passes.
    assert (NeuronStatistics() + first).n_samples_ == 200
    assert (second + first.begin_histograms(4)).hist_.sum() == (X > 0).sum()


def test_block_protocol_counts_as_update_of_the_whole_batch(rng):
    # One batch cut into column blocks at offsets (and one in a single
    # block): both passes equal direct sums over the whole batch.
    X, y = _data(rng, n=150, n_neurons=20)
    width = X.shape[1]
    cuts = [0, 7, 8, 19, width]

    def count_in_blocks(stats):
        rows = stats.start_batch(y, len(y), width)
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            assert stats.count_block(torch.from_numpy(X[:, lo:hi]), rows, lo)
        stats.end_batch(rows)
        return stats

    first = count_in_blocks(NeuronStatistics())
    second = count_in_blocks(first.begin_histograms(3))
    for c in range(3):
        assert_array_equal(first.active_count_[c], (X[y == c] > 0).sum(axis=0))
        assert_array_equal(first.class_max_[c], X[y == c].max(axis=0))
    assert_array_equal(first.class_count_, np.bincount(y))
    edges = second.bin_edges_.numpy()
    assert_array_equal(second.hist_, _reference_counts(X, edges, "right"))
    second.check_same_samples()
    # The protocol refuses a batch of other columns, before counting it.
    with pytest.raises(ValueError, match="has 5 columns but the earlier ones had 23"):
        first.start_batch(y[:3], 3, 5)
    bad = torch.from_numpy(X[:4, :3]).clone()
    bad[1, 1] = np.nan
    rows = first.start_batch(y[:4], 4, width)
    assert not first.count_block(bad, rows, 0)


def _foreign_private_uses(path):
    """``x._name`` where ``x`` is not self, cls or super() and no code of the
    module defines ``_name``: a private member of another module's object."""
    import ast

    tree = ast.parse(path.read_text())
    own = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name, owner = node.attr, node.value
        if not name.startswith("_") or name.startswith("__") or name in own:
            continue
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super":
            continue
        found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_uses_private_members_of_another():
    # Modules talk through public names: a private method or attribute
    # (self._x, cls._x, super()._x, or one the module itself defines, is
    # fine). Only the torch hook inspection of _cache.py reads torch's.
    from pathlib import Path

    import sknap

    allowed = {
        "_cache.py": {
            "_global_forward_hooks",
            "_global_forward_pre_hooks",
            "_forward_hooks",
            "_forward_pre_hooks",
        }
    }
    found = []
    for path in sorted(Path(sknap.__file__).parent.rglob("*.py")):
        for use in _foreign_private_uses(path):
            if use.rsplit(".", 1)[-1] not in allowed.get(path.name, ()):
                found.append(use)
    assert not found, "\n".join(found)


def test_state_does_not_grow_with_samples(rng):
    X, y = _data(rng, n=2000)
    small = compute_statistics(_shards(X[:200], y[:200]), n_bins=10)
    large = compute_statistics(_shards(X, y), n_bins=10)
    sizes = [
        sum(
            t.numel()
            for t in [*vars(s).values(), *vars(s.first_pass).values()]
            if isinstance(t, torch.Tensor)
        )
        for s in (small, large)
    ]
    assert sizes[0] == sizes[1]
    # Maxima, active counts, edges and counts above each edge, for all samples
    # and for each class: n_columns x (n_classes + 1) x (2 n_bins + 3) at most.
    n_columns, n_classes = X.shape[1], 3
    assert sizes[1] <= n_columns * (n_classes + 1) * (2 * 10 + 3) + n_classes


def test_statistics_copies_are_independent(rng):
    import copy

    A = np.maximum(rng.normal(size=(50, 6)), 0).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    first = NeuronStatistics().update(A, y)
    first.feature_names = np.array([f"n{j}" for j in range(6)], dtype=object)
    second = first.begin_histograms(4)
    twin = copy.deepcopy(first)
    first.update(A * 2, y)
    assert_array_equal(second.max_, twin.max_)
    assert_array_equal(twin.max_, A.max(axis=0))
    assert_array_equal(first.max_, 2 * A.max(axis=0))
    assert second.n_samples_ == twin.n_samples_ == 50
    first.feature_names[0] = "changed"
    assert second.feature_names[0] == twin.feature_names[0] == "n0"


def test_statistics_pickle(rng):
    import pickle

    X, y = _data(rng)
    stats = compute_statistics(_shards(X, y), n_bins=4)
    again = pickle.loads(pickle.dumps(stats))
    assert torch.equal(again.hist_, stats.hist_)
    assert torch.equal(again.class_hist_, stats.class_hist_)
    assert torch.equal(again.active_count_, stats.active_count_)
    assert_array_equal(again.classes_, stats.classes_)
    # The thresholds are rebuilt after loading: counting goes on as before.
    batch = _shards(X, y)[0]
    assert torch.equal(again.update(*batch).hist_, stats.update(*batch).hist_)


@CUDA
def test_statistics_on_cuda_equal_cpu(rng):
    X, y = _data(rng)
    cuda = [
        (torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda())
        for a, b in _shards(X, y)
    ]
    on_gpu = compute_statistics(cuda, n_bins=7)
    on_cpu = compute_statistics(_shards(X, y), n_bins=7)
    assert on_gpu.hist_.device.type == "cuda"
    assert torch.equal(on_gpu.hist_.cpu(), on_cpu.hist_)
    assert torch.equal(on_gpu.class_hist_.cpu(), on_cpu.class_hist_)
    assert torch.equal(on_gpu.active_count_.cpu(), on_cpu.active_count_)


# -- through the extractor ----------------------------------------------------


@pytest.fixture
def mlp_data(rng):
    model = make_mlp(10, 3, hidden=(16, 8), random_state=0)
    X = rng.normal(size=(300, 10)).astype(np.float32)
    y = rng.integers(0, 3, size=300)
    return model, X, y


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
def test_extractor_batches_fit_equals_transform_fit(mlp_data):
    model, X, y = mlp_data
    extractor = ActivationExtractor(model, batch_size=64, device="cpu").fit(X)
    Z = extractor.transform(X)
    batches = extractor.batches(X, y)
    rows = np.concatenate([b.numpy() for b, _ in batches])
    assert_array_equal(rows, Z)
    expected = _assert_fits_equal(batches, batches, Z, y, n_bins=5)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
        batch_size=50,
    )
    from_loader = ActivationEntropy(n_bins=5).fit(extractor.batches(loader))
    assert_array_equal(from_loader.class_entropy_, expected.class_entropy_)


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
def test_fits_from_the_extractor_read_probability_columns_only_as_neurons(mlp_data):
    # The estimators skip the backbone's probabilities when they are laid out
    # as such; with n_outputs=0 they are neurons, and counted as neurons.
    model, X, y = mlp_data
    extractor = ActivationExtractor(model, batch_size=64, device="cpu").fit(X)
    Z = extractor.transform(X)
    expected = ActivationEntropy(n_bins=5, n_outputs=0).fit(Z, y)
    streamed = ActivationEntropy(n_bins=5, n_outputs=0).fit(extractor.batches(X, y))
    assert_array_equal(streamed.neuron_entropy_, expected.neuron_entropy_)
    assert streamed.neuron_entropy_[-3:].sum() > 0
    P = ActivationProbabilityFeatures(n_outputs=0).fit(extractor.batches(X, y))
    assert_array_equal(
        P.activation_probability_,
        ActivationProbabilityFeatures(n_outputs=0).fit(Z, y).activation_probability_,
    )
    stats = compute_statistics(extractor.batches(X, y), n_bins=5)
    assert_array_equal(stats.max_[-3:], Z[:, -3:].max(axis=0))


def test_extractor_batches_errors(mlp_data):
    model, X, y = mlp_data
    extractor = ActivationExtractor(model, device="cpu").fit(X)
    with pytest.raises(ValueError, match="one label per sample"):
        extractor.batches(X, y[:10])


class _ChangedInPlace(torch.nn.Module):
    """fc1's output is changed in place after its hook ran; counts forwards."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(10, 16)
        self.out = torch.nn.Linear(16, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = self.fc1(x)
        h += 1.0
        return self.out(torch.relu(h))


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
def test_streamed_statistics_see_outputs_before_in_place_changes(mlp_data):
    _, X, y = mlp_data
    model = _ChangedInPlace()
    extractor = ActivationExtractor(model, layers=["fc1"], batch_size=64).fit(X)
    Z = extractor.transform(X)
    # The rows hold fc1's output before `h += 1`.
    with torch.no_grad():
        expected = model.fc1(torch.from_numpy(X)).numpy()
    assert_allclose(Z[:, :16], expected, rtol=1e-6, atol=1e-6)
    model.calls = 0
    batches = extractor.batches(X, y)
    streamed = NeuronStatistics().update_from(batches)
    # Counted inside fc1's hook, before `h += 1`: one forward pass per batch.
    assert model.calls == 5
    in_memory = NeuronStatistics().update_from(_shards(Z, y, size=64))
    assert torch.equal(streamed.class_max_, in_memory.class_max_)
    assert torch.equal(streamed.active_count_, in_memory.active_count_)
    _assert_fits_equal(batches, batches, Z, y, n_bins=5)


def test_streamed_statistics_name_the_layer_that_overflows(mlp_data):
    model, X, y = mlp_data
    with torch.no_grad():
        model.fc1.weight.fill_(1.0)
    extractor = ActivationExtractor(model, batch_size=64).fit(X)
    X = X.copy()
    X[100] = 3e38  # finite in float32; fc1's sums of ten overflow
    with pytest.raises(ValueError, match="NaN or infinity in layer 'relu1'"):
        ActivationProbabilityFeatures().fit(extractor.batches(X, y))


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
def test_second_pass_with_labels_moved_is_refused(rng):
    # The same positive values per neuron, in other classes (row 18 of
    # docs/errors.md has the partial second pass).
    X, y = _data(rng)
    first = NeuronStatistics().update_from(_shards(X, y))
    other = first.begin_histograms(5).update_from([(X, np.roll(y, 1))])
    with pytest.raises(ValueError, match="as many positive values as the first"):
        ActivationEntropy(n_bins=5).fit(other)
    complete = first.begin_histograms(5).update_from([(X, y)])
    assert ActivationEntropy(n_bins=5).fit(complete).n_neurons_in_ == 25


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
@pytest.mark.parametrize("n_neurons", [None, 0.5])
def test_fused_transform_equals_pipeline(mlp_data, n_neurons):
    model, X, y = mlp_data
    pipe = make_nap_pipeline(
        model, n_neurons=n_neurons, max_iter=1, device="cpu", random_state=0
    )
    pipe.set_params(extractor__batch_size=64).fit(X, y)
    fused = fused_transform(pipe, X)
    assert fused.dtype == np.float32
    # float32 sums over the neurons on the device, float64 ones in numpy.
    assert_allclose(fused, pipe[:-1].transform(X), rtol=1e-5, atol=1e-6)
    assert_array_equal(pipe[-1].predict(fused), pipe.predict(X))
    with pytest.raises(ValueError, match="fused_transform needs"):
        fused_transform([pipe[-1]], X)


# -- device options -----------------------------------------------------------


def test_device_options_on_the_cpu(rng):
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 3),
    )  # fmt: skip
    X = rng.normal(size=(20, 3, 8, 8)).astype(np.float32)
    base = ActivationExtractor(conv, device="cpu").fit(X).transform(X)
    options = dict(channels_last=True, pin_memory=True)
    same = ActivationExtractor(conv, device="cpu", **options).fit(X).transform(X)
    assert_allclose(same, base, rtol=1e-5, atol=1e-6)
    low = ActivationExtractor(conv, device="cpu", autocast="bfloat16").fit(X)
    assert_allclose(low.transform(X), base, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="autocast"):
        ActivationExtractor(conv, autocast="int8").fit(X)


@CUDA
def test_device_options_on_cuda(rng):
    model = make_mlp(10, 3, hidden=(16,), random_state=0)
    X = rng.normal(size=(50, 10)).astype(np.float32)
    cpu = ActivationExtractor(model, device="cpu").fit(X).transform(X)
    gpu = ActivationExtractor(model, device="cuda").fit(X).transform(X)
    assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
    half = ActivationExtractor(model, device="cuda", autocast="float16").fit(X)
    assert_allclose(half.transform(X), cpu, rtol=0.05, atol=0.05)


def test_kernels_at_every_group_size(backend, rng):
    # The kernels visit a class's rows in groups (of 4 or 8) and then one by
    # one: classes of 0 .. 17 rows, in shuffled order, at an offset, each
    # against direct sums over its rows.
    sizes = np.arange(18)
    y = rng.permutation(np.repeat(np.arange(18), sizes))
    A = rng.normal(size=(len(y), 9)).astype(np.float32)
    finite, cmax, active = _first(A, y, 18, width=12, offset=3)
    assert finite
    edges = _histogram.bin_edges(torch.from_numpy(np.full(12, 2.0)), 4)
    T = _kernels.thresholds(edges, torch.float32)
    above = torch.zeros((18, *T.shape), dtype=torch.int64)
    seen = torch.zeros((18, 12), dtype=torch.float64)
    _kernels.count_above(torch.from_numpy(A), torch.from_numpy(y), T, above, seen, 3)
    for c in range(18):
        rows = A[y == c]
        top = np.maximum(rows.max(axis=0, initial=0), 0)
        assert_array_equal(cmax[c, 3:], top)
        assert_array_equal(seen[c, 3:], top)
        assert_array_equal(active[c, 3:], (rows > 0).sum(axis=0))
        for k, t in enumerate(T[:, 3:].numpy()):
            assert_array_equal(above[c, k, 3:], (rows > t).sum(axis=0))
    assert not cmax[:, :3].any() and not above[:, :, :3].any()


def test_first_pass_finite_values_whose_sum_overflows(backend):
    # The torch code looks at every value only when a column's sum is not
    # finite: large finite values are finite, one infinity or NaN is not.
    A = np.full((6, 2), 3e38, dtype=np.float32)
    y = np.zeros(6, dtype=np.int64)
    assert _first(A, y, 1)[0]
    for bad in (np.inf, -np.inf, np.nan):
        B = A.copy()
        B[4, 1] = bad
        assert not _first(B, y, 1)[0]
