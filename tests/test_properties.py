"""Properties of the method that hold for any data (hypothesis).

* Entropy does not change when the samples are reordered, nor when a neuron
  is scaled by a positive constant (the paper's column normalisation is such
  a scaling). In floating point, v * c / (m * c) can round differently from
  v / m, which moves a value lying exactly on a bin edge; the exact test
  therefore scales by powers of two, and the general one by any constant on
  data without values on an edge.
* 0 <= E_j <= log_b(R), so the normalised entropy lies in [0, 1].
* Activation probabilities lie in [0, 1]; Y_proposed rows are >= 0 and sum
  to 1, without NaN, whatever the activations.
* Statistics gathered batch by batch (sknap.streaming), merged from shards,
  give the same fit as the whole matrix in memory.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal

from sknap import (
    ActivationEntropy,
    ActivationExtractor,
    ActivationProbabilityFeatures,
    activation_entropy,
)
from sknap._probabilities import activation_probability, proposed_proba
from sknap.streaming import NeuronStatistics
from sknap.toy import make_mlp

pytestmark = pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Values with many zeros, negatives (inactive), ties and wide magnitudes.
_values = st.one_of(
    st.just(0.0),
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    st.floats(-10, 1e6, allow_nan=False, allow_infinity=False, width=64),
    st.floats(1e-300, 1e-5),
)


@st.composite
def activations(draw, min_samples=1, max_samples=25, max_neurons=6):
    n = draw(st.integers(min_samples, max_samples))
    d = draw(st.integers(1, max_neurons))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    A = draw(arrays(np.float64, (n, d), elements=_values))
    return A.astype(dtype)


@st.composite
def labelled(draw, n_classes=3):
    A = draw(activations(min_samples=n_classes))
    y = draw(arrays(np.int64, A.shape[0], elements=st.integers(0, n_classes - 1)))
    y[:n_classes] = np.arange(n_classes)  # every class present
    return A, y


def _entropies(A, n_bins, base=2, binning="right"):
    return activation_entropy(A, n_bins, base=base, binning=binning, per_neuron=True)


# --- entropy -------------------------------------------------------------------


@SETTINGS
@given(A=activations(), n_bins=st.integers(2, 12), data=st.data())
def test_entropy_unchanged_by_reordering_samples(A, n_bins, data):
    order = data.draw(st.permutations(range(A.shape[0])))
    assert_array_equal(_entropies(A[order], n_bins), _entropies(A, n_bins))


@SETTINGS
@given(
    A=activations(),
    n_bins=st.integers(2, 12),
    exponent=st.integers(-30, 30),
    binning=st.sampled_from(["right", "reference"]),
    data=st.data(),
)
def test_entropy_unchanged_by_scaling_a_neuron_by_a_power_of_two(
    A, n_bins, exponent, binning, data
):
    A = A.astype(np.float64)
    j = data.draw(st.integers(0, A.shape[1] - 1))
    scaled = A.copy()
    scaled[:, j] *= 2.0**exponent
    # Stay clear of subnormals, where a power of two is not exact either.
    positive = scaled[:, j][scaled[:, j] > 0]
    assume(positive.size == 0 or positive.min() > 1e-290)
    assert_array_equal(
        _entropies(scaled, n_bins, binning=binning),
        _entropies(A, n_bins, binning=binning),
    )


@SETTINGS
@given(
    counts=arrays(np.int64, (30, 4), elements=st.integers(0, 1000)),
    n_bins=st.integers(2, 10),
    scale=st.floats(1e-3, 1e3),
)
def test_entropy_unchanged_by_scaling_by_any_positive_constant(counts, n_bins, scale):
    # Values strictly inside the bins of (0, max], so no value is on an edge:
    # bin k holds (k + 1/2) / n_bins of the maximum, the maximum is in the
    # last bin.
    A = ((counts % n_bins) + 0.5) / n_bins
    A[counts == 0] = 0.0
    A[0] = 1.0
    assert_allclose(
        _entropies(A * scale, n_bins), _entropies(A, n_bins), rtol=0, atol=1e-12
    )


@SETTINGS
@given(
    A=activations(),
    n_bins=st.integers(2, 20),
    base=st.sampled_from([2, np.e, 10, 0.5]),
    binning=st.sampled_from(["right", "reference"]),
)
def test_entropy_between_zero_and_log_of_bins(A, n_bins, base, binning):
    E = _entropies(A, n_bins, base=base, binning=binning)
    bound = abs(np.log(n_bins) / np.log(base))
    if base < 1:
        # A base below 1 flips the sign of every logarithm.
        E, bound = -E, bound
    assert np.all(E >= -1e-12)
    assert np.all(E <= bound + 1e-9)
    if base > 1:
        est = ActivationEntropy(n_bins, base=base, binning=binning, n_outputs=0)
        with np.errstate(all="raise"):
            normalized = est.fit(A).normalized_entropy_
        assert -1e-12 <= normalized <= 1 + 1e-9


# --- activation probabilities and the proposed prediction -------------------------


@SETTINGS
@given(data=labelled(), alpha=st.floats(0, 10))
def test_activation_probability_within_zero_and_one(data, alpha):
    A, y = data
    P = activation_probability(A, y, 3, alpha)
    assert np.isfinite(P).all()
    assert np.all((P >= 0) & (P <= 1))
    if alpha == 0:
        # Eq. 14 on its own: a fraction of each class's samples.
        for c in range(3):
            assert_allclose(P[c], (A[y == c] > 0).mean(axis=0))


@SETTINGS
@given(data=labelled(), alpha=st.floats(0, 10), logits=st.data())
def test_proposed_rows_sum_to_one(data, alpha, logits):
    A, y = data
    z = logits.draw(arrays(np.float64, (A.shape[0], 3), elements=st.floats(-30, 30)))
    proba = torch.softmax(torch.from_numpy(z), dim=1).numpy()
    P = activation_probability(A, y, 3, alpha)
    Y = proposed_proba(A, proba, P)
    assert np.isfinite(Y).all()
    assert np.all(Y >= 0)
    assert_allclose(Y.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    # The estimator's output: [Y_proposed, Y_predicted], both rows of 1.
    X = np.hstack([A.astype(np.float64), proba])
    features = ActivationProbabilityFeatures(alpha=alpha, n_outputs=3).fit(X, y)
    out = features.transform(X)
    assert_allclose(out[:, :3].sum(axis=1), 1.0, rtol=0, atol=1e-9)
    assert_allclose(out[:, 3:], proba)


# --- streaming and in-memory fits ------------------------------------------------


def _cuts(draw, n):
    """Sorted cut points splitting n rows into at least one non-empty batch."""
    cuts = draw(st.lists(st.integers(1, max(1, n - 1)), max_size=4, unique=True))
    return [0, *sorted(c for c in cuts if 0 < c < n), n]


@SETTINGS
@given(
    data=labelled(),
    n_bins=st.integers(2, 8),
    binning=st.sampled_from(["right", "reference"]),
    draw=st.data(),
)
def test_streaming_and_in_memory_fits_agree(data, n_bins, binning, draw):
    A, y = data
    cuts = _cuts(draw.draw, A.shape[0])
    batches = [(A[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    # Shards: each batch gathered apart, then merged by addition.
    first = NeuronStatistics().update(*batches[0])
    for batch in batches[1:]:
        first = first + NeuronStatistics().update(*batch)
    second = first.begin_histograms(n_bins, binning=binning)
    for batch in batches:
        second.update(*batch)

    params = dict(n_bins=n_bins, binning=binning, n_outputs=0)
    streamed = ActivationEntropy(**params).fit(second)
    in_memory = ActivationEntropy(**params).fit(A, y)
    assert_array_equal(streamed.neuron_max_, in_memory.neuron_max_)
    assert_array_equal(streamed.bin_edges_, in_memory.bin_edges_)
    assert_allclose(streamed.neuron_entropy_, in_memory.neuron_entropy_, atol=1e-12)
    assert_allclose(
        streamed.class_neuron_entropy_, in_memory.class_neuron_entropy_, atol=1e-12
    )

    streamed_p = ActivationProbabilityFeatures(n_outputs=0).fit(first)
    in_memory_p = ActivationProbabilityFeatures(n_outputs=0).fit(A, y)
    assert_array_equal(
        streamed_p.activation_probability_, in_memory_p.activation_probability_
    )
    assert_array_equal(streamed_p.class_count_, in_memory_p.class_count_)


@settings(max_examples=10, deadline=None)
@given(
    n_samples=st.integers(1, 40),
    batch_size=st.integers(1, 16),
    seed=st.integers(0, 2**16),
)
def test_extractor_batches_and_transform_agree(n_samples, batch_size, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 4)).astype(np.float32)
    y = np.arange(n_samples) % 3
    net = make_mlp(4, 3, hidden=(5, 5), random_state=0)
    extractor = ActivationExtractor(net, batch_size=batch_size).fit(X)
    rows = [z.cpu().numpy() for z, _ in extractor.batches(X, y)]
    # The same forward passes in the same batches: the same rows.
    assert_array_equal(np.concatenate(rows), extractor.transform(X))
