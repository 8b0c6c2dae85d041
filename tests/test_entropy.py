"""Numeric tests of activation-pattern entropy (docs/definitions.md).

Every expected value is worked out by hand from the definition, with the
computation in a comment: for each neuron, keep its values > 0, cut
``(0, m]`` into ``R`` right-closed bins ``(k m / R, (k + 1) m / R]``,
``h = counts / counts.sum()`` and ``E = -sum h log_b h``. Three entropies come
back often:

* counts ``[1, 1]`` (or any two equal counts): ``E = log2 2 = 1`` bit;
* counts ``[3, 1]``: ``3/4 log2(4/3) + 1/4 log2 4 = 3/4 (2 - log2 3) + 1/2``
  ``= 2 - 3/4 log2 3 = 0.811278`` bits;
* counts ``[2, 1]``: ``2/3 log2(3/2) + 1/3 log2 3 = log2 3 - 2/3 = 0.918296``.
"""

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from sknap import (
    ActivationEntropy,
    DeadNeuronWarning,
    LayoutWarning,
    activation_entropy,
)

# float32-suitable tolerance: inputs may come as float32 activations.
RTOL = 1e-6
ATOL = 1e-6

H_1_1 = 1.0  # counts [1, 1]: -(1/2 log2 1/2) * 2 = 1
H_3_1 = 2 - 0.75 * math.log2(3)  # counts [3, 1]: 0.811278 (see module docstring)
H_2_1 = math.log2(3) - 2 / 3  # counts [2, 1]: 0.918296 (see module docstring)


def column(*values):
    """One neuron as an (n_samples, 1) float64 matrix."""
    return np.asarray(values, dtype=np.float64)[:, None]


# --- right-closed bins -------------------------------------------------------


def test_values_on_every_edge_fall_in_the_bin_below():
    # m = 4, R = 4: edges 0, 1, 2, 3, 4. Each value lies exactly on the right
    # edge of its bin: 1 in (0, 1], 2 in (1, 2], 3 in (2, 3], 4 in (3, 4].
    # counts [1, 1, 1, 1] -> E = log2 4 = 2 bits.
    A = column(1, 2, 3, 4)
    est = ActivationEntropy(n_bins=4, n_outputs=0).fit(A)
    assert_array_equal(est.bin_edges_, [[0, 1, 2, 3, 4]])
    assert_array_equal(est.histograms(A), [[1, 1, 1, 1]])
    assert_allclose(est.neuron_entropy_, [2.0], rtol=RTOL)
    assert_allclose(activation_entropy(A, n_bins=4), 2.0, rtol=RTOL)


def test_value_on_an_edge_goes_left_not_right():
    # m = 4, R = 4, values 1, 1, 2, 4: 1 and 1 in (0, 1], 2 in (1, 2] (not in
    # (2, 3], which a left-closed bin would give), 4 in (3, 4].
    # counts [2, 1, 0, 1], h = [1/2, 1/4, 0, 1/4]
    # E = 1/2 * 1 + 1/4 * 2 + 1/4 * 2 = 1.5 bits.
    A = column(1, 1, 2, 4)
    est = ActivationEntropy(n_bins=4, n_outputs=0).fit(A)
    assert_array_equal(est.histograms(A), [[2, 1, 0, 1]])
    assert_allclose(est.entropy_, 1.5, rtol=RTOL)


def test_values_on_stored_edges_with_awkward_maxima(rng):
    # Maxima that are not multiples of anything, R = 7. Row k - 1 of the new
    # data puts every neuron exactly on its stored edge k (k = 1..7), the
    # right end of bin k - 1, so each bin gets exactly one value:
    # counts [1] * 7 -> E = log2 7 = 2.807355 bits for every neuron.
    m = rng.uniform(0.1, 10.0, size=6)
    est = ActivationEntropy(n_bins=7, n_outputs=0).fit(m[None, :])
    edges = est.bin_edges_
    assert_array_equal(edges[:, -1], m)
    on_edges = edges[:, 1:].T
    assert_array_equal(est.histograms(on_edges), np.ones((6, 7)))
    assert_allclose(est.entropy_of(on_edges), [math.log2(7)] * 6, rtol=RTOL)
    # One ulp above stored edge k (k = 0..6) is inside bin k: again one each.
    above = np.nextafter(edges[:, :-1], np.inf).T
    assert_array_equal(est.histograms(above), np.ones((6, 7)))


def test_tiny_maximum():
    # m = 1e-310 (a subnormal double), R = 10: edges k * 1e-311. 1e-311 lies on
    # edge 1 -> bin 0; 1e-310 -> bin 9. counts [1, 0, ..., 0, 1] -> 1 bit.
    A = column(1e-310, 1e-311)
    est = ActivationEntropy(n_outputs=0).fit(A)
    expected = np.zeros((1, 10), dtype=int)
    expected[0, [0, 9]] = 1
    assert_array_equal(est.histograms(A), expected)
    assert_allclose(est.entropy_, 1.0, rtol=RTOL)


@pytest.mark.parametrize("units", [1, 2, 3, 7, 9, 11])
def test_subnormal_maximum_in_the_last_bin(units):
    # m = units x the smallest subnormal double, R = 10: the values 1 .. units
    # (in that unit) are the only ones in (0, m], and m k / R rounds to them.
    # Whatever the rounding, the maximum is in the last bin and every value
    # in exactly one bin.
    tiny = np.nextafter(0.0, 1.0)
    A = column(*(tiny * np.arange(1, units + 1)))
    est = ActivationEntropy(n_outputs=0).fit(A)
    counts = est.histograms(A)[0]
    assert counts.sum() == units
    assert counts[-1] >= 1
    assert est.histograms(column(units * tiny))[0, -1] == 1
    assert np.all(est.bin_edges_[0, :-1] < units * tiny)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_maximum_lands_in_the_last_bin(dtype):
    # m = 0.7 is not a multiple of anything nice: R = 3 gives edges
    # 0, 0.7/3, 1.4/3, 0.7 and the last edge is the maximum itself, so 0.7 is
    # in bin 2 and 0.1 (< 0.7/3 = 0.2333) in bin 0. counts [1, 0, 1] -> 1 bit.
    A = np.array([[0.7], [0.1]], dtype=dtype)
    est = ActivationEntropy(n_bins=3, n_outputs=0).fit(A)
    assert est.bin_edges_[0, -1] == np.float64(dtype(0.7))
    assert_allclose(est.bin_edges_[0], [0, 0.7 / 3, 1.4 / 3, 0.7], rtol=RTOL)
    assert_array_equal(est.histograms(A), [[1, 0, 1]])
    assert_allclose(est.entropy_, H_1_1, rtol=RTOL)


def test_maximum_in_last_bin_of_ten():
    # m = 10, R = 10: edges 0, 1, ..., 10. 1 in (0, 1] = bin 0; 10 in
    # (9, 10] = bin 9; 9.5 also in bin 9. counts [1, 0, ..., 0, 2]
    # -> counts {1, 2} -> H_2_1 = 0.918296 bits.
    A = column(1, 10, 9.5)
    est = ActivationEntropy(n_outputs=0).fit(A)
    expected = np.zeros((1, 10), dtype=int)
    expected[0, 0], expected[0, 9] = 1, 2
    assert_array_equal(est.histograms(A), expected)
    assert_allclose(est.entropy_, H_2_1, rtol=RTOL)


def test_negative_values_are_ignored():
    # Only 1 and 2 are > 0; m = 2 (not 5 = max |v|), R = 2: edges 0, 1, 2.
    # 1 in (0, 1], 2 in (1, 2] -> counts [1, 1] -> 1 bit.
    A = column(-5, -1, 0, 1, 2)
    est = ActivationEntropy(n_bins=2, n_outputs=0).fit(A)
    assert_array_equal(est.neuron_max_, [2.0])
    assert_array_equal(est.histograms(A), [[1, 1]])
    assert_allclose(est.entropy_, H_1_1, rtol=RTOL)


def test_single_active_sample_has_zero_entropy():
    # One positive value: counts [0, ..., 0, 1], h = [0, ..., 1] -> E = 0, and
    # the neuron is not dead.
    A = column(0, 0, 3, 0)
    est = ActivationEntropy(n_outputs=0).fit(A)
    assert_allclose(est.neuron_entropy_, [0.0], atol=ATOL)
    assert_array_equal(est.dead_neurons_, [False])
    assert est.n_dead_neurons_ == 0


def test_dead_neurons():
    # Columns: all zeros (dead), only negatives (dead), 1, 2, 3 with R = 3
    # (edges 0, 1, 2, 3: counts [1, 1, 1] -> log2 3 = 1.584963 bits).
    A = np.array([[0, -1, 1], [0, -2, 2], [0, 0, 3]], dtype=np.float64)
    with pytest.warns(DeadNeuronWarning, match="2 of 3 neurons"):
        est = ActivationEntropy(n_bins=3, n_outputs=0).fit(A)
    assert_allclose(est.neuron_entropy_, [0, 0, math.log2(3)], rtol=RTOL)
    assert_array_equal(est.dead_neurons_, [True, True, False])
    assert est.n_dead_neurons_ == 2
    assert_array_equal(est.neuron_max_, [0, 0, 3])
    # The function gives the same E_j = 0 for dead neurons (it does not warn).
    assert_allclose(
        activation_entropy(A, n_bins=3, per_neuron=True),
        [0, 0, math.log2(3)],
        rtol=RTOL,
    )


def test_no_dead_neuron_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeadNeuronWarning)
        ActivationEntropy(n_bins=2, n_outputs=0).fit(column(1, 2))


# --- base, total and normalized entropy --------------------------------------


def _three_neurons():
    # Neuron 0: 1, 2, 3, 4 with R = 4 -> counts [1, 1, 1, 1].
    # Neuron 1: 1, 1, 1, 4 with R = 4 (edges 0, 1, 2, 3, 4) -> counts [3, 0, 0, 1].
    # Neuron 2: dead.
    return np.array(
        [[1, 1, 0], [2, 1, 0], [3, 1, 0], [4, 4, 0]],
        dtype=np.float64,
    )


@pytest.mark.parametrize(
    "base, expected",
    [
        # bits: E = log2 4 + (2 - 3/4 log2 3) + 0 = 2 + 0.811278 = 2.811278
        (2, 2 + H_3_1),
        # nats: ln 4 + (3/4 ln(4/3) + 1/4 ln 4) = 1.386294 + (0.215762 + 0.346574)
        #       = 1.386294 + 0.562335 = 1.948629
        (math.e, math.log(4) + 0.75 * math.log(4 / 3) + 0.25 * math.log(4)),
        # bans: the bits divided by log2 10 = 3.321928 -> 0.846276
        (10, (2 + H_3_1) / math.log2(10)),
    ],
)
def test_base_and_normalized_entropy(base, expected):
    with pytest.warns(DeadNeuronWarning):
        est = ActivationEntropy(n_bins=4, base=base, n_outputs=0).fit(_three_neurons())
    assert_allclose(est.entropy_, expected, rtol=RTOL)
    # Normalized: E / (n_neurons * log_b R); in bits 2.811278 / (3 * 2) =
    # 0.468546, the same in every base since both sides scale by 1 / ln b.
    assert_allclose(est.normalized_entropy_, (2 + H_3_1) / 6, rtol=RTOL)
    assert_allclose(
        activation_entropy(_three_neurons(), n_bins=4, base=base), expected, rtol=RTOL
    )


def test_activation_entropy_function_returns_sum_or_per_neuron():
    A = _three_neurons()
    # per neuron: [2, 0.811278, 0] (hand values above); sum 2.811278
    per_neuron = activation_entropy(A, n_bins=4, per_neuron=True)
    assert per_neuron.shape == (3,)
    assert_allclose(per_neuron, [2, H_3_1, 0], rtol=RTOL, atol=ATOL)
    total = activation_entropy(A, n_bins=4)
    assert isinstance(total, float)
    assert_allclose(total, 2 + H_3_1, rtol=RTOL)


def test_activation_entropy_accepts_a_tensor():
    # Same numbers as above, given as a float32 tensor.
    A = torch.tensor(_three_neurons(), dtype=torch.float32)
    assert_allclose(activation_entropy(A, n_bins=4), 2 + H_3_1, rtol=RTOL)


def test_docstring_example_by_hand():
    # Neuron 0: 0.5, 1, 1 with m = 1, R = 2 (edges 0, 0.5, 1): counts [1, 2]
    # -> 0.918296. Neuron 1: 1, 2, 3, 4, edges 0, 2, 4: counts [2, 2] -> 1 bit.
    A = np.array([[0.0, 1.0], [0.5, 2.0], [1.0, 3.0], [1.0, 4.0]])
    assert_allclose(
        activation_entropy(A, n_bins=2, per_neuron=True), [H_2_1, 1.0], rtol=RTOL
    )


# --- per class ---------------------------------------------------------------


def _per_class_data():
    # Samples 0-1 are class "cat", samples 2-5 class "dog".
    A = np.array(
        [
            [1, 0],
            [2, 5],
            [10, 1],
            [20, 1],
            [30, 0],
            [35, 3],
        ],
        dtype=np.float64,
    )
    y = np.array(["cat", "cat", "dog", "dog", "dog", "dog"])
    return A, y


def test_per_class_entropy_uses_the_neurons_shared_edges():
    # docs/definitions.md: each class is counted on the edges of the neuron's
    # maximum over ALL fit data, so the class histograms sum to the global one.
    A, y = _per_class_data()
    est = ActivationEntropy(n_bins=2, n_outputs=0).fit(A, y)
    assert_array_equal(est.classes_, ["cat", "dog"])
    # All samples, R = 2:
    #   neuron 0: m = 35, edges 0, 17.5, 35: 1, 2, 10 | 20, 30, 35 -> [3, 3] -> 1
    #   neuron 1: values 5, 1, 1, 3, m = 5, edges 0, 2.5, 5: 1, 1 | 5, 3 -> 1
    assert_allclose(est.neuron_entropy_, [1.0, 1.0], rtol=RTOL)
    # cat, neuron 0: 1, 2 on the shared edges 0, 17.5, 35 -> [2, 0] -> 0
    #   (with the class's own maximum 2 they would be [1, 1] -> 1)
    # cat, neuron 1: only 5 is > 0 -> [0, 1] -> 0
    # dog, neuron 0: 10 | 20, 30, 35 on 0, 17.5, 35 -> [1, 3] -> 0.811278
    # dog, neuron 1: 1, 1 | 3 on 0, 2.5, 5 -> [2, 1] -> 0.918296
    assert_allclose(
        est.class_neuron_entropy_,
        [[0.0, 0.0], [H_3_1, H_2_1]],
        rtol=RTOL,
        atol=ATOL,
    )
    # cat: 0 + 0 = 0; dog: 0.811278 + 0.918296 = 1.729574
    assert_allclose(est.class_entropy_, [0.0, H_3_1 + H_2_1], rtol=RTOL, atol=ATOL)


def test_per_class_entropy_with_a_class_below_the_top_bin():
    # R = 4, one neuron: class a holds 1, 2, 3, 4 and class b holds 8, 8.
    # Shared edges from m = 8: 0, 2, 4, 6, 8, right-closed.
    #   a: 1, 2 -> (0, 2]; 3, 4 -> (2, 4] -> [2, 2, 0, 0] -> E = 1 bit
    #   b: 8, 8 -> (6, 8] -> [0, 0, 0, 2] -> E = 0
    #   all: [2, 2, 0, 2] -> E = log2(3) = 1.584963
    A = np.array([[1.0], [2.0], [3.0], [4.0], [8.0], [8.0]])
    y = np.array(["a", "a", "a", "a", "b", "b"])
    est = ActivationEntropy(n_bins=4, n_outputs=0).fit(A, y)
    assert_allclose(est.class_neuron_entropy_, [[1.0], [0.0]], atol=ATOL)
    assert_allclose(est.neuron_entropy_, [math.log2(3)], rtol=RTOL)


def test_per_class_off_or_without_y():
    A, y = _per_class_data()
    est = ActivationEntropy(n_bins=2, n_outputs=0, per_class=False).fit(A, y)
    assert not hasattr(est, "class_neuron_entropy_")
    est = ActivationEntropy(n_bins=2, n_outputs=0).fit(A)
    assert not hasattr(est, "class_entropy_")


# --- reference (authors' code) binning ---------------------------------------


def test_reference_mode_drops_the_maximum_when_it_lies_on_the_last_edge():
    # m = 4, R = 4, w = 4 / 4 = 1 exactly; open bins (0, 1), (1, 2), (2, 3),
    # (3, 4). 0.5, 1.5, 2.5 fall inside bins 0, 1, 2; 4 = 4 w is on an edge
    # and counted nowhere. counts [1, 1, 1, 0] -> log2 3 = 1.584963.
    # Right-closed bins count 4 in (3, 4]: [1, 1, 1, 1] -> 2 bits.
    A = column(0.5, 1.5, 2.5, 4)
    ref = ActivationEntropy(n_bins=4, binning="reference", n_outputs=0).fit(A)
    right = ActivationEntropy(n_bins=4, n_outputs=0).fit(A)
    assert_array_equal(ref.histograms(A), [[1, 1, 1, 0]])
    assert_allclose(ref.entropy_, math.log2(3), rtol=RTOL)
    assert_allclose(right.entropy_, 2.0, rtol=RTOL)
    assert_allclose(
        activation_entropy(A, n_bins=4, binning="reference"), math.log2(3), rtol=RTOL
    )


def test_reference_mode_counts_nothing_when_every_value_is_on_an_edge():
    # m = 4, R = 4, w = 1: 1, 2, 3, 4 all lie on edges k w. No count at all,
    # so the neuron has E = 0 (it is not dead: its maximum is 4).
    A = column(1, 2, 3, 4)
    est = ActivationEntropy(n_bins=4, binning="reference", n_outputs=0).fit(A)
    assert_array_equal(est.histograms(A), [[0, 0, 0, 0]])
    assert_allclose(est.neuron_entropy_, [0.0], atol=ATOL)
    assert est.n_dead_neurons_ == 0


def test_reference_mode_edges_are_computed_in_floating_point():
    # m = 1, R = 10: w = 1 / 10 = 0.1 (the double nearest 0.1).
    # Edges k * w in floating point: 2 * 0.1 == 0.2 but 3 * 0.1 ==
    # 0.30000000000000004 > 0.3, and 10 * 0.1 == 1.0.
    assert 2 * 0.1 == 0.2 and 3 * 0.1 > 0.3 and 10 * 0.1 == 1.0
    # Values 0.2, 0.3, 0.55, 1.0:
    # reference: 0.2 on edge 2 w -> nowhere; 0.3 inside (2 w, 3 w) -> bin 2;
    #   0.55 in (5 w, 6 w) -> bin 5; 1.0 on edge 10 w -> nowhere.
    #   counts: bin 2: 1, bin 5: 1 -> 1 bit.
    # right: 0.2 in (0.1, 0.2] -> bin 1; 0.3 in (0.2, 0.3] -> bin 2;
    #   0.55 -> bin 5; 1.0 -> bin 9. Four bins of one -> log2 4 = 2 bits.
    A = column(0.2, 0.3, 0.55, 1.0)
    ref = ActivationEntropy(binning="reference", n_outputs=0).fit(A)
    assert_array_equal(ref.bin_edges_[0], np.arange(11) * (1.0 / 10))
    expected_ref = np.zeros((1, 10), dtype=int)
    expected_ref[0, [2, 5]] = 1
    assert_array_equal(ref.histograms(A), expected_ref)
    assert_allclose(ref.entropy_, 1.0, rtol=RTOL)

    right = ActivationEntropy(n_outputs=0).fit(A)
    expected_right = np.zeros((1, 10), dtype=int)
    expected_right[0, [1, 2, 5, 9]] = 1
    assert_array_equal(right.histograms(A), expected_right)
    assert_allclose(right.entropy_, 2.0, rtol=RTOL)


# --- stored edges and new data -----------------------------------------------


def test_new_data_uses_fitted_edges_and_overflow_goes_to_last_bin():
    # Fit: 1, 2, 3, 4 with R = 4 -> edges 0, 1, 2, 3, 4.
    # New: 0.5 -> bin 0; 4 -> bin 3; 5 and 100 are above the fitted max and
    # go to bin 3; 0 and -1 are inactive. counts [1, 0, 0, 3] -> 0.811278.
    # (With edges refitted on the new data, m = 100, edges 0, 25, 50, 75, 100,
    # the counts would be [3, 0, 0, 1]: the same entropy, so check counts.)
    est = ActivationEntropy(n_bins=4, n_outputs=0).fit(column(1, 2, 3, 4))
    new = column(0.5, 4, 5, 100, 0, -1)
    assert_array_equal(est.histograms(new), [[1, 0, 0, 3]])
    assert_allclose(est.entropy_of(new), [H_3_1], rtol=RTOL)
    # New data does not change the fitted state.
    assert_array_equal(est.bin_edges_, [[0, 1, 2, 3, 4]])


def test_new_data_entropy_differs_from_refitting():
    # Fit on 1, 2, 3, 4 (edges 0, 1, 2, 3, 4). New data 1, 2, 8, 8:
    # with the fitted edges: 1 -> bin 0, 2 -> bin 1, 8 and 8 -> bin 3
    #   -> counts [1, 1, 0, 2] -> h = [1/4, 1/4, 0, 1/2] -> 0.5 + 0.5 + 0.5 = 1.5
    # refitted (m = 8, edges 0, 2, 4, 6, 8): 1, 2 -> bin 0, 8, 8 -> bin 3
    #   -> [2, 0, 0, 2] -> 1 bit.
    est = ActivationEntropy(n_bins=4, n_outputs=0).fit(column(1, 2, 3, 4))
    new = column(1, 2, 8, 8)
    assert_allclose(est.entropy_of(new), [1.5], rtol=RTOL)
    assert_allclose(activation_entropy(new, n_bins=4), 1.0, rtol=RTOL)


def test_new_data_on_a_neuron_dead_at_fit_goes_to_last_bin():
    # Neuron 0 is dead at fit: m = 0, all edges 0. Any positive value on new
    # data is above the fitted maximum, so it goes to the last bin (bin 3).
    # Neuron 1: fit 1, 2 with R = 4 -> edges 0, 0.5, 1, 1.5, 2; new 3 -> bin 3
    # (overflow), 0.5 -> bin 0 (on the edge 0.5, right-closed).
    with pytest.warns(DeadNeuronWarning):
        est = ActivationEntropy(n_bins=4, n_outputs=0).fit(
            np.array([[0.0, 1.0], [0.0, 2.0]])
        )
    new = np.array([[3.0, 3.0], [5.0, 0.5]])
    assert_array_equal(est.histograms(new), [[0, 0, 0, 2], [1, 0, 0, 1]])
    # Neuron 0: [0, 0, 0, 2] -> 0; neuron 1: [1, 0, 0, 1] -> 1 bit.
    assert_allclose(est.entropy_of(new), [0.0, 1.0], rtol=RTOL, atol=ATOL)


def test_histograms_ignore_the_probability_block():
    # Neuron: 1, 2, 3, 4, R = 2, edges 0, 2, 4 -> counts [2, 2].
    X = np.array([[1, 0.5, 0.5], [2, 1, 0], [3, 0, 1], [4, 0.5, 0.5]])
    est = ActivationEntropy(n_bins=2, n_outputs=2).fit(X)
    assert_array_equal(est.histograms(X), [[2, 2]])
    assert_allclose(est.entropy_of(X), [1.0], rtol=RTOL)


# --- layers ------------------------------------------------------------------


def _two_layers():
    # fc1__0: 1, 2, 3, 4, R = 4 -> [1, 1, 1, 1] -> 2 bits
    # fc1__1: 1, 1, 1, 4, R = 4 -> [3, 0, 0, 1] -> 0.811278
    # fc2__0: 1, 2, 0, 0, m = 2, R = 4, edges 0, .5, 1, 1.5, 2
    #         -> 1 in bin 1, 2 in bin 3 -> 1 bit
    X = np.array(
        [
            [1, 1, 1, 0.5, 0.5],
            [2, 1, 2, 1.0, 0.0],
            [3, 1, 0, 0.0, 1.0],
            [4, 4, 0, 0.3, 0.7],
        ]
    )
    names = ["fc1__0", "fc1__1", "fc2__0", "proba_0", "proba_1"]
    return X, names


def test_layer_entropy_with_feature_names():
    X, names = _two_layers()
    est = ActivationEntropy(n_bins=4, n_outputs=2).fit(X)
    totals = est.layer_entropy(names)
    # fc1: 2 + 0.811278 = 2.811278; fc2: 1
    assert list(totals) == ["fc1", "fc2"]
    assert_allclose(totals["fc1"], 2 + H_3_1, rtol=RTOL)
    assert_allclose(totals["fc2"], 1.0, rtol=RTOL)
    assert_allclose(sum(totals.values()), est.entropy_, rtol=RTOL)


def test_layer_entropy_needs_names():
    X, names = _two_layers()
    est = ActivationEntropy(n_bins=4, n_outputs=2).fit(X)
    with pytest.raises(ValueError, match="feature_names"):
        est.layer_entropy()
    with pytest.raises(ValueError, match="feature_names has 4 names"):
        est.layer_entropy(names[:4])


def test_layer_entropy_from_dataframe_names():
    pd = pytest.importorskip("pandas")
    X, names = _two_layers()
    est = ActivationEntropy(n_bins=4).fit(pd.DataFrame(X, columns=names))
    # n_outputs='auto' found the two proba_ columns from the names.
    assert est.n_outputs_in_ == 2
    totals = est.layer_entropy()
    assert_allclose([totals["fc1"], totals["fc2"]], [2 + H_3_1, 1.0], rtol=RTOL)


# --- neuron selection --------------------------------------------------------


def _selection_data():
    # R = 2. Entropies by hand:
    #   n0: 1, 2 (m = 2, edges 0, 1, 2) -> [1, 1] -> 1
    #   n1: dead -> 0, ranked last
    #   n2: 5 alone -> 0 (not dead)
    #   n3: 3, 6 (edges 0, 3, 6) -> [1, 1] -> 1 (ties with n0)
    #   n4: 1, 1, 1, 2 (edges 0, 1, 2) -> [3, 1] -> 0.811278
    # then two probability columns.
    return np.array(
        [
            [1, 0, 0, 0, 1, 0.50, 0.50],
            [2, 0, 5, 0, 1, 1.00, 0.00],
            [0, 0, 0, 3, 1, 0.25, 0.75],
            [0, 0, 0, 6, 2, 0.00, 1.00],
        ]
    )


@pytest.mark.parametrize(
    "n_neurons, expected",
    [
        # lowest entropy first: n2 (0), n4 (0.811), then the tie n0/n3 (1)
        # broken by position (n0 first), then n3, then the dead n1.
        (1, [2]),
        (2, [2, 4]),
        (3, [0, 2, 4]),
        (4, [0, 2, 3, 4]),
        (5, [0, 1, 2, 3, 4]),
        (9, [0, 1, 2, 3, 4]),  # more than there are: all of them
        (0.4, [2, 4]),  # round(0.4 * 5) = 2
        (0.6, [0, 2, 4]),  # round(0.6 * 5) = 3
        (0.01, [2]),  # at least one
        (1.0, [0, 1, 2, 3, 4]),
        (None, [0, 1, 2, 3, 4]),
    ],
)
def test_selection_lowest_entropy_first_dead_last(n_neurons, expected):
    X = _selection_data()
    with pytest.warns(DeadNeuronWarning):
        est = ActivationEntropy(n_bins=2, n_neurons=n_neurons, n_outputs=2).fit(X)
    assert_allclose(est.neuron_entropy_, [1, 0, 0, 1, H_3_1], rtol=RTOL, atol=ATOL)
    assert_array_equal(est.selected_neurons_, expected)
    # transform keeps the selected activation columns, then columns 5 and 6
    # (the probability block) untouched.
    Xt = est.transform(X)
    assert_array_equal(Xt, X[:, expected + [5, 6]])
    # get_support says which, as a scikit-learn feature selector does.
    assert_array_equal(est.get_support(indices=True), expected + [5, 6])
    assert_array_equal(est.get_support(), np.isin(np.arange(7), expected + [5, 6]))
    names = [f"x{i}" for i in expected + [5, 6]]
    assert_array_equal(est.get_feature_names_out(), names)
    custom = np.array(["a__0", "a__1", "b__0", "b__1", "b__2", "proba_0", "proba_1"])
    assert_array_equal(
        est.get_feature_names_out(custom), custom[expected + [5, 6]].tolist()
    )


def test_n_bins_changes_which_neurons_are_selected():
    # Neuron A: 2.5, 3, 3.5, 4; neuron B: 2, 4, 4, 4 (m = 4 for both).
    # R = 2, edges 0, 2, 4:
    #   A: all in (2, 4] -> [0, 4] -> 0
    #   B: 2 in (0, 2], 4, 4, 4 in (2, 4] -> [1, 3] -> 0.811278
    #   keep 1 -> A (index 0).
    # R = 4, edges 0, 1, 2, 3, 4:
    #   A: 2.5, 3 in (2, 3]; 3.5, 4 in (3, 4] -> [0, 0, 2, 2] -> 1
    #   B: 2 in (1, 2]; 4, 4, 4 in (3, 4] -> [0, 1, 0, 3] -> 0.811278
    #   keep 1 -> B (index 1).
    A = np.array([[2.5, 2], [3, 4], [3.5, 4], [4, 4]])
    est2 = ActivationEntropy(n_bins=2, n_neurons=1, n_outputs=0).fit(A)
    est4 = ActivationEntropy(n_bins=4, n_neurons=1, n_outputs=0).fit(A)
    assert_allclose(est2.neuron_entropy_, [0, H_3_1], rtol=RTOL, atol=ATOL)
    assert_allclose(est4.neuron_entropy_, [1, H_3_1], rtol=RTOL)
    assert_array_equal(est2.selected_neurons_, [0])
    assert_array_equal(est4.selected_neurons_, [1])
    assert_array_equal(est2.transform(A), A[:, [0]])
    assert_array_equal(est4.transform(A), A[:, [1]])


# --- n_outputs and the probability block -------------------------------------


def test_n_outputs_int():
    X, _ = _two_layers()
    est = ActivationEntropy(n_bins=4, n_outputs=2).fit(X)
    assert est.n_neurons_in_ == 3
    assert est.n_outputs_in_ == 2
    assert_array_equal(est.transform(X)[:, -2:], X[:, -2:])


def test_n_outputs_from_y():
    # y has 2 classes, so the last 2 columns are probabilities.
    X, _ = _two_layers()
    est = ActivationEntropy(n_bins=4).fit(X, [0, 1, 1, 0])
    assert est.n_outputs_in_ == 2
    assert est.n_neurons_in_ == 3
    assert_allclose(est.entropy_, 2 + H_3_1 + 1.0, rtol=RTOL)


def test_n_outputs_from_dataframe_names_takes_precedence_over_y():
    pd = pytest.importorskip("pandas")
    X, names = _two_layers()
    # y has 3 classes but the names say 2 probability columns.
    est = ActivationEntropy(n_bins=4).fit(pd.DataFrame(X, columns=names), [0, 1, 2, 0])
    assert est.n_outputs_in_ == 2
    assert_array_equal(
        est.get_feature_names_out(),
        ["fc1__0", "fc1__1", "fc2__0", "proba_0", "proba_1"],
    )


def test_n_outputs_auto_without_y_or_names_is_an_error():
    X, _ = _two_layers()
    with pytest.raises(ValueError, match="got no y.*without y"):
        ActivationEntropy().fit(X)


def test_n_outputs_leaving_no_activation_is_an_error():
    X, _ = _two_layers()
    with pytest.raises(ValueError, match="Set n_outputs"):
        ActivationEntropy(n_outputs=5).fit(X)


def test_layout_warning_when_probabilities_do_not_sum_to_one():
    # Last two columns: rows sum to 1.0 and 1.1.
    X = np.array([[1.0, 0.5, 0.5], [2.0, 0.5, 0.6]])
    with pytest.warns(LayoutWarning, match=r"\[1, 1.1\] instead of 1"):
        ActivationEntropy(n_bins=2, n_outputs=2).fit(X)


def test_no_layout_warning_for_a_softmax_block():
    X, _ = _two_layers()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutWarning)
        ActivationEntropy(n_bins=4, n_outputs=2).fit(X)


# --- parameter validation ----------------------------------------------------


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_bins": 1}, r"'n_bins' parameter of ActivationEntropy.*\[2, inf\).*Got 1"),
        ({"n_bins": 2.5}, r"'n_bins' parameter of ActivationEntropy.*Got 2.5"),
        ({"base": 1}, r"'base' parameter of ActivationEntropy.*Got 1"),
        ({"base": 0}, r"'base' parameter of ActivationEntropy"),
        ({"binning": "foo"}, r"'binning' parameter of ActivationEntropy.*'foo'"),
        ({"n_neurons": 0}, r"'n_neurons' parameter of ActivationEntropy"),
        ({"n_neurons": 1.5}, r"'n_neurons' parameter of ActivationEntropy"),
        ({"n_outputs": -1}, r"'n_outputs' parameter of ActivationEntropy"),
    ],
)
def test_bad_parameters(params, match):
    X, _ = _two_layers()
    with pytest.raises(ValueError, match=match):
        ActivationEntropy(**{"n_outputs": 2, **params}).fit(X)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_bins": 1}, r"'n_bins' parameter.*Got 1"),
        ({"n_bins": 2.5}, r"'n_bins' parameter.*Got 2.5"),
        ({"base": 1}, r"'base' parameter.*Got 1"),
        ({"binning": "foo"}, r"'binning' parameter.*'foo'"),
    ],
)
def test_activation_entropy_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        activation_entropy(column(1, 2), **params)


# --- comparison with a straightforward implementation ------------------------


def _loop_entropy(A, n_bins, base=2.0, binning="right", maxima=None):
    """E_j by an explicit loop over neurons, values and bins.

    ``"right"``: exact rational edges ``k m / R`` (``fractions.Fraction``) and
    right-closed bins. ``"reference"``: ``w = m / R`` in floating point, edges
    ``k * w`` and open bins, as the authors' code does. ``m`` is the column's
    maximum, or ``maxima[j]`` (the shared edges of per-class entropy).
    """
    out = np.zeros(A.shape[1])
    for j in range(A.shape[1]):
        v = [float(x) for x in A[:, j] if x > 0]
        if not v:
            continue
        m = max(v) if maxima is None else float(maxima[j])
        counts = [0] * n_bins
        for x in v:
            for k in range(n_bins):
                if binning == "right":
                    lo = Fraction(m) * k / n_bins
                    hi = Fraction(m) * (k + 1) / n_bins
                    inside = lo < Fraction(x) <= hi
                else:
                    w = m / n_bins
                    inside = k * w < x < (k + 1) * w
                if inside:
                    counts[k] += 1
                    break
        total = sum(counts)
        if total == 0:
            continue
        out[j] = -sum(c / total * math.log(c / total, base) for c in counts if c > 0)
    return out


@pytest.mark.parametrize("binning", ["right", "reference"])
@pytest.mark.parametrize("n_bins", [2, 3, 4, 10])
def test_matches_a_loop_on_data_with_ties_on_edges(rng, binning, n_bins):
    # Multiples of 1/4 between -1 and 6: many values lie exactly on edges
    # k m / R, and many neurons share values. Two columns are dead.
    A = rng.integers(-4, 25, size=(40, 12)) / 4.0
    A[:, 3] = 0.0
    A[:, 7] = -1.0
    A[:20, 5] = 0.0  # a neuron active in half the samples
    y = rng.integers(0, 3, size=40)
    with pytest.warns(DeadNeuronWarning):
        est = ActivationEntropy(n_bins=n_bins, binning=binning, n_outputs=0).fit(A, y)
    assert_allclose(
        est.neuron_entropy_, _loop_entropy(A, n_bins, binning=binning), atol=1e-12
    )
    for c in range(3):
        assert_allclose(
            est.class_neuron_entropy_[c],
            _loop_entropy(A[y == c], n_bins, binning=binning, maxima=A.max(axis=0)),
            atol=1e-12,
        )


@pytest.mark.parametrize("base", [2, math.e])
def test_matches_a_loop_on_continuous_float32_data(rng, base):
    A = rng.standard_normal((50, 8)).astype(np.float32)
    est = ActivationEntropy(n_bins=5, base=base, n_outputs=0).fit(A)
    expected = _loop_entropy(A.astype(np.float64), 5, base=base)
    assert_allclose(est.neuron_entropy_, expected, rtol=RTOL, atol=ATOL)
    assert_allclose(
        activation_entropy(A, n_bins=5, base=base), expected.sum(), rtol=RTOL
    )
