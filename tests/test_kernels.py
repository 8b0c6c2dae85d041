"""The counting kernels where numba and torch could part: NaN in the second
pass, torch's default dtype, tensors that require grad, bad class indices."""

import numpy as np
import pytest
import torch

from sknap import _kernels

BACKENDS = ["numba", "torch"] if _kernels.numba is not None else ["torch"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "torch":
        monkeypatch.setenv("SKNAP_DISABLE_NUMBA", "1")
    else:
        monkeypatch.delenv("SKNAP_DISABLE_NUMBA", raising=False)
    return request.param


def _count_above(A, rows, n_classes=1):
    A = torch.as_tensor(A)
    T = torch.zeros((1, A.shape[1]), dtype=_kernels.working_dtype(A.dtype))
    above = torch.zeros((n_classes, 1, A.shape[1]), dtype=torch.int64)
    seen = torch.zeros((n_classes, A.shape[1]), dtype=torch.float64)
    _kernels.count_above(A, torch.as_tensor(rows), T, above, seen)
    return above, seen


@pytest.mark.parametrize("n_rows", [1, 2, 8, 9, 16, 17])
@pytest.mark.parametrize("at", ["first", "middle", "last"])
def test_second_pass_keeps_nan_in_its_maxima(backend, n_rows, at):
    # A NaN anywhere in a class's rows (in a group of 8 or the rest) leaves
    # NaN as that class's largest value seen, so that the pass's check
    # refuses it; before, numba's max dropped it at the next row.
    A = np.full((n_rows, 3), 0.5, dtype=np.float32)
    i = {"first": 0, "middle": n_rows // 2, "last": n_rows - 1}[at]
    A[i, 1] = np.nan
    _, seen = _count_above(A, np.zeros(n_rows, dtype=np.int64))
    assert torch.isnan(seen[0, 1])
    assert seen[0, 0] == 0.5 and seen[0, 2] == 0.5


def test_nan_where_the_first_pass_saw_zero_is_refused(backend):
    from sknap.streaming import NeuronStatistics

    rng = np.random.default_rng(0)
    X = np.maximum(rng.normal(size=(20, 3)), 0).astype(np.float32)
    X[0, 0] = 0.0
    bad = X.copy()
    bad[0, 0] = np.nan
    second = NeuronStatistics().update(X).begin_histograms(4).update(bad)
    with pytest.raises(ValueError):
        second.check_same_samples()


@pytest.mark.parametrize("default", [torch.bfloat16, torch.float16])
def test_torch_counts_do_not_follow_the_default_dtype(backend, default):
    # 4,097 positive values: bfloat16 and float16 cannot hold 4,097, float32
    # can; the counts must not depend on torch's default dtype.
    A = np.ones((4097, 2), dtype=np.float32)
    rows = np.zeros(4097, dtype=np.int64)
    before = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        above, _ = _count_above(A, rows)
        class_max = torch.zeros((1, 2), dtype=torch.float64)
        active = torch.zeros((1, 2), dtype=torch.int64)
        _kernels.first_pass(
            torch.from_numpy(A), torch.from_numpy(rows), class_max, active
        )
    finally:
        torch.set_default_dtype(before)
    assert above[0, 0].tolist() == [4097, 4097]
    assert active[0].tolist() == [4097, 4097]


def test_blocks_that_require_grad_are_counted(backend):
    A = torch.rand((10, 3), requires_grad=True)
    class_max = torch.zeros((1, 3), dtype=torch.float64)
    active = torch.zeros((1, 3), dtype=torch.int64)
    _kernels.first_pass(A, torch.zeros(10, dtype=torch.int64), class_max, active)
    above, seen = _count_above(A, np.zeros(10, dtype=np.int64))
    assert not class_max.requires_grad and not seen.requires_grad
    expected = A.detach().numpy().max(axis=0)
    np.testing.assert_array_equal(class_max[0].numpy(), expected)
    np.testing.assert_array_equal(above[0, 0].numpy(), [10, 10, 10])


@pytest.mark.parametrize("bad", [-1, 3])
def test_class_index_outside_the_state_is_refused_before_counting(backend, bad):
    # A bad index in a later chunk must not leave earlier chunks counted.
    n = 3 * (_kernels._CHUNK_ELEMENTS // 4)  # two chunks of two columns
    A = torch.ones((n, 2))
    rows = torch.zeros(n, dtype=torch.int64)
    rows[-1] = bad
    class_max = torch.zeros((3, 2), dtype=torch.float64)
    active = torch.zeros((3, 2), dtype=torch.int64)
    with pytest.raises(IndexError, match="outside"):
        _kernels.first_pass(A, rows, class_max, active)
    assert not active.any()


def test_merging_number_with_string_labels_is_refused():
    from sknap.streaming import NeuronStatistics

    A = np.ones((4, 2))
    numbers = NeuronStatistics().update(A, np.array([0, 1, 0, 1]))
    strings = NeuronStatistics().update(A, np.array(["a", "b", "a", "b"]))
    with pytest.raises(ValueError, match="all numbers or all strings"):
        numbers + strings


def test_empty_labelled_batches():
    # Labelled batches without rows: no class yet, maxima of 0, and a clear
    # error from the estimators and compute_statistics instead of torch's.
    from sknap import ActivationEntropy
    from sknap.streaming import NeuronStatistics, compute_statistics

    empty = [(np.zeros((0, 3)), np.array([], dtype=np.int64))]
    first = NeuronStatistics().update_from(empty)
    assert first.max_.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="empty"):
        compute_statistics(empty, n_bins=4)
    with pytest.raises(ValueError, match="no sample"):
        ActivationEntropy(n_outputs=0).fit(empty)


def test_block_protocol_misuse_gets_a_clear_error():
    from sknap.streaming import NeuronStatistics

    stats = NeuronStatistics()
    with pytest.raises(ValueError, match="call start_batch first"):
        stats.count_block(np.ones((2, 3)), torch.zeros(2, dtype=torch.int64))
    rows = stats.start_batch(None, 2, 3)
    assert stats.count_block(np.ones((2, 3)), rows)  # arrays are taken as well
    stats.end_batch(rows)
    assert stats.active_count_.tolist() == [[2, 2, 2]]
