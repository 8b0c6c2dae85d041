"""The counting engine at its edges: labels on every path, huge values,
huge n_bins, second passes over other data, merges of other columns."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import DataConversionWarning

from sknap import (
    ActivationEntropy,
    ActivationMemoryError,
    ActivationProbabilityFeatures,
)
from sknap.streaming import NeuronStatistics

BAD_LABELS = {
    "nan": (np.array([0.0, np.nan, 1.0, 1.0, 0.0, 1.0]), "Input y contains NaN"),
    "continuous": (
        np.array([0.5, 1.3, 2.2, 0.1, 3.7, 9.9]),
        "Unknown label type: continuous",
    ),
    "none": (np.array([0, None, 1, 1, 0, 1], dtype=object), r"y\[1\] is None"),
    "object nan": (np.array([0, 1, np.nan, 1, 0, 1], dtype=object), "contains NaN"),
    "column of two": (np.array([[0, 1]] * 6), "y should be a 1d array"),
    "mixed": (np.array(["a", 1, "a", 1, "b", 1], dtype=object), "mixes labels"),
    "string then none": (
        np.array(["a", None, "a", "b", "a", "b"], dtype=object),
        r"y\[1\] is None",
    ),
}


@pytest.mark.parametrize("path", ["in memory", "streamed", "update"])
def test_column_vector_labels_are_raveled_with_a_warning_on_every_path(path):
    # As scikit-learn's validate_data: (n, 1) labels are n labels, with a
    # DataConversionWarning; the fit equals that of the 1-D labels.
    A = np.abs(np.random.default_rng(0).normal(size=(6, 3)))
    y = np.array([0, 1, 0, 1, 1, 0])
    with pytest.warns(DataConversionWarning):
        fitted = _fits(ActivationProbabilityFeatures)[path](A, y[:, None])
    expected = _fits(ActivationProbabilityFeatures)[path](A, y)
    if path == "update":
        assert_array_equal(fitted.active_count_, expected.active_count_)
    else:
        assert_array_equal(
            fitted.activation_probability_, expected.activation_probability_
        )


def _fits(Estimator):
    """The in-memory fit, the streamed fit and NeuronStatistics.update."""
    params = {"n_outputs": 0}
    return {
        "in memory": lambda A, y: Estimator(**params).fit(A, y),
        "streamed": lambda A, y: Estimator(**params).fit(
            [(A[:3], y[:3]), (A[3:], y[3:])]
        ),
        "update": lambda A, y: NeuronStatistics().update(A, y),
    }


@pytest.mark.parametrize("case", list(BAD_LABELS))
@pytest.mark.parametrize(
    "Estimator", [ActivationEntropy, ActivationProbabilityFeatures]
)
@pytest.mark.parametrize("path", ["in memory", "streamed", "update"])
def test_bad_labels_give_the_same_error_on_every_path(case, Estimator, path):
    A = np.abs(np.random.default_rng(0).normal(size=(6, 3)))
    y, match = BAD_LABELS[case]
    with pytest.raises(ValueError, match=match):
        _fits(Estimator)[path](A, y)


def test_labels_of_other_types_across_batches():
    A = np.abs(np.random.default_rng(0).normal(size=(6, 3)))
    stats = NeuronStatistics().update(A[:3], np.array([0, 1, 0]))
    with pytest.raises(
        ValueError, match="string labels but earlier batches had number"
    ):
        stats.update(A[3:], np.array(["a", "b", "a"]))


def test_float_labels_that_are_integers_are_classes():
    A = np.abs(np.random.default_rng(0).normal(size=(6, 3)))
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    memory = ActivationProbabilityFeatures(n_outputs=0).fit(A, y)
    streamed = ActivationProbabilityFeatures(n_outputs=0).fit(
        [(A[:3], y[:3]), (A[3:], y[3:])]
    )
    assert_allclose(streamed.activation_probability_, memory.activation_probability_)
    assert list(streamed.classes_) == [0.0, 1.0]


@pytest.mark.parametrize("scale", [1.0, 1e300, np.finfo(np.float64).max / 4])
def test_entropy_of_values_near_the_largest_float64(scale):
    # Values m/4, m/2, 3m/4, m with R = 4: one in each bin, E = 2 bits,
    # however large m is (m k / R must not overflow).
    top = np.finfo(np.float64).max if scale != 1.0 else 4.0
    A = np.array([[top / 4], [top / 2], [top * 0.75], [top]])
    if scale == 1e300:
        A = np.array([[2.5e299], [5e299], [7.5e299], [1e300]])
    est = ActivationEntropy(n_bins=4, n_outputs=0).fit(A)
    assert np.isfinite(est.bin_edges_).all()
    assert_allclose(est.neuron_entropy_, [2.0])


def test_huge_n_bins_is_a_memory_error_before_allocating():
    A = np.abs(np.random.default_rng(0).normal(size=(10, 1000)))
    with pytest.raises(ActivationMemoryError, match=r"n_bins=1000000000000.*GiB"):
        ActivationEntropy(n_bins=10**12, n_outputs=0).fit(A)
    first = NeuronStatistics().update(A)
    with pytest.raises(ActivationMemoryError, match="smaller n_bins"):
        first.begin_histograms(10**12)


def test_second_pass_over_other_data_of_the_same_signs_is_refused():
    rng = np.random.default_rng(0)
    A = np.abs(rng.normal(size=(50, 4))) + 0.1
    y = rng.integers(0, 2, size=50)
    first = NeuronStatistics().update(A, y)
    other = first.begin_histograms(5).update(A * 0.5, y)
    with pytest.raises(ValueError, match="largest value"):
        ActivationEntropy(n_bins=5).fit(other)
    same = first.begin_histograms(5).update(A, y)
    assert ActivationEntropy(n_bins=5).fit(same).n_neurons_in_ == 2


def test_merging_statistics_of_other_columns_is_refused():
    rng = np.random.default_rng(0)
    A = np.abs(rng.normal(size=(20, 4)))
    a, b = NeuronStatistics().update(A), NeuronStatistics().update(A)
    a.feature_names = np.array(["fc1__0", "fc1__1", "fc1__2", "proba_0"], dtype=object)
    b.feature_names = np.array(["fc2__0", "fc2__1", "fc2__2", "proba_0"], dtype=object)
    with pytest.raises(ValueError, match="column 0 is 'fc1__0' in one and 'fc2__0'"):
        a + b
    b.feature_names = a.feature_names.copy()
    merged = a + b
    assert merged.n_samples_ == 40
    with pytest.raises(ValueError, match="4 and 3 columns"):
        a + NeuronStatistics().update(A[:, :3])


def test_per_class_counts_sum_to_the_histogram():
    rng = np.random.default_rng(0)
    A = np.maximum(rng.normal(size=(300, 6)), 0)
    y = rng.integers(0, 3, size=300)
    stats = NeuronStatistics().update(A, y).begin_histograms(4).update(A, y)
    assert torch.equal(stats.class_hist_.sum(dim=0), stats.hist_)
    assert int(stats.hist_.sum()) == int((A > 0).sum())
    assert math.isclose(float(stats.counts_.sum()), A.size)


@pytest.fixture(params=["numba", "torch"])
def backend(request, monkeypatch):
    monkeypatch.setenv("SKNAP_DISABLE_NUMBA", "1" if request.param == "torch" else "0")
    return request.param


def test_nan_in_the_second_pass_is_refused_on_every_path(backend):
    A = np.abs(np.random.default_rng(0).normal(size=(20, 3)))
    first = NeuronStatistics().update_from([A])
    other = A.copy()
    other[5, 1] = np.nan
    second = first.begin_histograms(4).update_from([other])
    with pytest.raises(ValueError, match="second pass"):
        ActivationEntropy(n_bins=4, n_outputs=0).fit(second)


def test_the_kernels_refuse_a_state_that_does_not_fit(backend):
    from sknap import _kernels

    A = torch.ones((4, 3))
    rows = torch.tensor([0, 1, 2, 1])  # class 2 has no row in the state
    class_max = torch.zeros((2, 3), dtype=torch.float64)
    active = torch.zeros((2, 3), dtype=torch.int64)
    with pytest.raises((IndexError, RuntimeError)):
        _kernels.first_pass(A, rows, class_max, active)
    with pytest.raises(ValueError, match="'active' has shape"):
        _kernels.first_pass(A, rows[:4] * 0, class_max, active[:, :2])
    T = torch.zeros((2, 3))
    with pytest.raises(ValueError, match="a block of 3 columns at offset 1"):
        _kernels.count_above(A, rows * 0, T, torch.zeros((2, 2, 3)), class_max, 1)
