"""Binned activation states (docs/definitions.md, "Binned activation states").

Expected values are worked out by hand from the definitions, in comments:

* state of ``v``: 0 when ``v <= 0``, else ``k + 1`` for ``v`` in the
  right-closed bin ``(k m / R, (k + 1) m / R]`` (``m`` the neuron's maximum
  over the fit data; above ``m``: the last bin, ``R``);
* ``P[c, j, r] = (count + alpha) / (n_c + (R + 1) alpha)``;
* sum form: ``q_c = sum over active j of P[c, j, state_j]``,
  ``Y_proposed = q * Y_predicted / sum`` (``Y_predicted`` if the sum is 0);
* log form: ``Y_proposed = softmax(sum_j log P[c, j, state_j] + log Y_predicted)``.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.model_selection import StratifiedKFold

from sknap import ActivationProbabilityFeatures, make_nap_pipeline
from sknap.fused import fused_transform
from sknap.streaming import NeuronStatistics, compute_statistics

RTOL = 1e-12

# Six samples, two neurons, then the backbone's two probabilities.
# Neuron 0: max 4, R = 2 -> bins (0, 2], (2, 4];
#   values 0, 1, 2 | 4, 3, 0 -> states 0, 1, 1 | 2, 2, 0.
# Neuron 1: max 2, R = 2 -> bins (0, 1], (1, 2];
#   values 1, 0, 1 | 2, -1, 1 -> states 1, 0, 1 | 2, 0, 1.
A6 = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [4.0, 2.0], [3.0, -1.0], [0.0, 1.0]])
PROBA6 = np.array(
    [[0.6, 0.4], [0.7, 0.3], [0.5, 0.5], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]]
)
Z6 = np.hstack([A6, PROBA6])
Y6 = np.array([0, 0, 0, 1, 1, 1])
# Counts per state [inactive, bin 1, bin 2]:
#   class 0: neuron 0 [1, 2, 0], neuron 1 [1, 2, 0]
#   class 1: neuron 0 [1, 0, 2], neuron 1 [1, 1, 1]
COUNTS6 = np.array([[[1, 2, 0], [1, 2, 0]], [[1, 0, 2], [1, 1, 1]]])
P6 = COUNTS6 / 3.0


def test_state_probability_by_hand():
    features = ActivationProbabilityFeatures(n_bins=2).fit(Z6, Y6)
    assert_array_equal(features.state_count_, COUNTS6)
    assert_allclose(features.state_probability_, P6, rtol=RTOL)
    assert_allclose(features.bin_edges_, [[0.0, 2.0, 4.0], [0.0, 1.0, 2.0]])
    # The paper's P is kept alongside: active = 1 - inactive share.
    assert_allclose(features.activation_probability_, [[2 / 3, 2 / 3], [2 / 3, 2 / 3]])
    # alpha = 1: (count + 1) / (3 + 3).
    smoothed = ActivationProbabilityFeatures(n_bins=2, alpha=1.0).fit(Z6, Y6)
    assert_allclose(smoothed.state_probability_, (COUNTS6 + 1) / 6.0, rtol=RTOL)


# a = [1.5, 2.0]: states 1 (1.5 in (0, 2]) and 2 (2.0 in (1, 2]).
# b = [5.0, 0.0]: state 2 (above the maximum 4: last bin) and inactive.
# c = [0.0, -3.0]: both inactive.
NEW = np.array([[1.5, 2.0], [5.0, 0.0], [0.0, -3.0]])
NEW_PROBA = np.array([[0.4, 0.6], [0.5, 0.5], [0.3, 0.7]])


def test_sum_form_by_hand():
    features = ActivationProbabilityFeatures(n_bins=2).fit(Z6, Y6)
    out = features.transform(np.hstack([NEW, NEW_PROBA]))
    expected = np.array(
        [
            # q = [P[0,0,1] + P[0,1,2], P[1,0,1] + P[1,1,2]] = [2/3, 1/3];
            # q * [0.4, 0.6] = [4/15, 3/15] -> [4/7, 3/7].
            [4 / 7, 3 / 7],
            # q = [P[0,0,2], P[1,0,2]] = [0, 2/3] -> [0, 1].
            [0.0, 1.0],
            # No active neuron: q = 0, Y_predicted kept.
            [0.3, 0.7],
        ]
    )
    assert_allclose(out[:, :2], expected, rtol=RTOL)
    assert_allclose(out[:, 2:], NEW_PROBA)


def test_log_form_by_hand():
    features = ActivationProbabilityFeatures(n_bins=2, form="log", alpha=1.0)
    features.fit(Z6, Y6)
    proba = np.array([[0.5, 0.5], [0.5, 0.5], [0.3, 0.7]])
    out = features.transform(np.hstack([NEW, proba]))
    # P = (count + 1) / 6:
    #   class 0: neuron 0 [2, 3, 1]/6, neuron 1 [2, 3, 1]/6
    #   class 1: neuron 0 [2, 1, 3]/6, neuron 1 [2, 2, 2]/6
    # a (states 1, 2): q = [3/6 * 1/6, 1/6 * 2/6] = [3, 2]/36 -> [0.6, 0.4].
    # b (states 2, 0): q = [1/6 * 2/6, 3/6 * 2/6] = [2, 6]/36 -> [0.25, 0.75].
    # c (states 0, 0): q = [2/6 * 2/6, 2/6 * 2/6], equal -> Y_predicted.
    assert_allclose(out[:, :2], [[0.6, 0.4], [0.25, 0.75], [0.3, 0.7]], rtol=1e-12)


def test_log_form_without_smoothing_rules_classes_out_and_never_makes_nan():
    features = ActivationProbabilityFeatures(n_bins=2, form="log").fit(Z6, Y6)
    # P = count / 3 (COUNTS6). A state of probability 0 rules a class out:
    # [3.0, 2.0] (states 2, 2): P[0, 0, 2] = 0; class 1: 2/3 * 1/3 -> [0, 1].
    # [1.0, 0.5] (states 1, 1): class 0: 2/3 * 2/3; P[1, 0, 1] = 0 -> [1, 0].
    # [1.5, 2.0] (states 1, 2): P[0, 1, 2] = 0 and P[1, 0, 1] = 0, every
    #   class ruled out -> Y_predicted, not NaN.
    X = np.array([[3.0, 2.0], [1.0, 0.5], [1.5, 2.0]])
    proba = np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]])
    out = features.transform(np.hstack([X, proba]))
    assert not np.isnan(out).any()
    assert_allclose(out[:, :2], [[0.0, 1.0], [1.0, 0.0], [0.9, 0.1]], atol=1e-15)


def test_log_form_does_not_underflow():
    # 2000 neurons each with P = 1/6 or 2/6: the product underflows float64
    # (6^-2000), the sum of logs does not.
    rng = np.random.default_rng(0)
    A = rng.uniform(0.1, 1.0, size=(60, 2000)) * (rng.random((60, 2000)) > 0.3)
    y = np.arange(60) % 2
    Z = np.hstack([A, np.full((60, 2), 0.5)])
    out = ActivationProbabilityFeatures(n_bins=3, form="log", alpha=1.0)
    out = out.fit(Z, y).transform(Z)
    assert np.isfinite(out).all()
    assert_allclose(out[:, :2].sum(axis=1), 1.0)
    assert not np.allclose(out[:, 0], 0.5)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_one_bin_is_the_paper(rng, alpha):
    A = np.maximum(rng.normal(size=(80, 7)), 0)
    y = rng.integers(0, 3, size=80)
    proba = rng.dirichlet(np.ones(3), size=80)
    Z = np.hstack([A, proba])
    paper = ActivationProbabilityFeatures(alpha=alpha).fit(Z, y)
    one = ActivationProbabilityFeatures(alpha=alpha, n_bins=1).fit(Z, y)
    assert_allclose(
        one.state_probability_[:, :, 1], paper.activation_probability_, rtol=RTOL
    )
    assert_allclose(one.transform(Z), paper.transform(Z), rtol=1e-12, atol=1e-15)
    # The log form of the paper's two states is that of R = 1.
    log_paper = ActivationProbabilityFeatures(alpha=alpha, form="log").fit(Z, y)
    log_one = ActivationProbabilityFeatures(alpha=alpha, form="log", n_bins=1)
    assert_allclose(
        log_one.fit(Z, y).transform(Z), log_paper.transform(Z), rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("form", ["sum", "log"])
def test_streamed_and_merged_fits_equal_the_in_memory_fit(rng, form):
    A = np.maximum(rng.normal(size=(90, 5)), 0)
    y = rng.integers(0, 3, size=90)
    Z = np.hstack([A, rng.dirichlet(np.ones(3), size=90)])
    params = dict(n_bins=4, form=form, alpha=0.5, n_outputs=3)
    in_memory = ActivationProbabilityFeatures(**params).fit(Z, y)
    batches = [(Z[:40], y[:40]), (Z[40:], y[40:])]
    streamed = ActivationProbabilityFeatures(**params).fit(batches)
    shard1, shard2 = batches[:1], batches[1:]
    first = NeuronStatistics().update_from(shard1) + NeuronStatistics().update_from(
        shard2
    )
    second = first.begin_histograms(4).update_from(shard1) + first.begin_histograms(
        4
    ).update_from(shard2)
    merged = ActivationProbabilityFeatures(**params).fit(second)
    for other in (streamed, merged):
        assert_array_equal(other.state_count_, in_memory.state_count_)
        assert_allclose(other.bin_edges_, in_memory.bin_edges_)
        assert_allclose(other.transform(Z), in_memory.transform(Z), rtol=RTOL)


def test_statistics_of_another_kind_are_refused(rng):
    A = np.maximum(rng.normal(size=(30, 3)), 0)
    y = np.arange(30) % 2
    first = NeuronStatistics().update(A, y)
    with pytest.raises(ValueError, match=r"n_bins=3\) needs second-pass.*"):
        ActivationProbabilityFeatures(n_bins=3, n_outputs=0).fit(first)
    second = compute_statistics([(A, y)], n_bins=5)
    with pytest.raises(ValueError, match="counted with n_bins=5.*has n_bins=3"):
        ActivationProbabilityFeatures(n_bins=3, n_outputs=0).fit(second)
    # The paper's features fit from either pass.
    ActivationProbabilityFeatures(n_outputs=0).fit(second)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_bins": 0}, r"'n_bins' parameter.*range \[1, inf\).*Got 0"),
        ({"n_bins": 2.5}, r"'n_bins' parameter.*Got 2.5"),
        ({"form": "product"}, r"'form' parameter.*\{.*'sum'.*\}.*Got 'product'"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        ActivationProbabilityFeatures(**params).fit(Z6, Y6)


@pytest.mark.parametrize("form", ["sum", "log"])
def test_cross_fitting_uses_the_edges_and_counts_of_each_fold(rng, form):
    A = np.maximum(rng.normal(size=(60, 4)), 0)
    y = np.arange(60) % 3
    Z = np.hstack([A, rng.dirichlet(np.ones(3), size=60)])
    cv = StratifiedKFold(3)
    params = dict(n_bins=3, form=form, alpha=0.5)
    out = ActivationProbabilityFeatures(cv=cv, **params).fit_transform(Z, y)
    for train, test in cv.split(Z, y):
        fold = ActivationProbabilityFeatures(**params).fit(Z[train], y[train])
        assert_allclose(out[test], fold.transform(Z[test]), rtol=RTOL)
    # Not the in-sample features.
    assert not np.allclose(
        out, ActivationProbabilityFeatures(**params).fit(Z, y).transform(Z)
    )


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
@pytest.mark.parametrize("form, n_neurons", [("sum", None), ("log", 0.5), ("sum", 5)])
def test_fused_transform_of_binned_features(mlp, make_data, form, n_neurons):
    X, y = make_data(90, 6, 3)
    pipe = make_nap_pipeline(
        mlp,
        binned=True,
        n_bins=4,
        form=form,
        alpha=0.5,
        n_neurons=n_neurons,
        max_iter=1,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert_allclose(fused_transform(pipe, X), pipe[:-1].transform(X), atol=1e-6)


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
def test_fit_from_extractor_batches_equals_transform_fit(mlp, make_data):
    from sknap import ActivationExtractor

    X, y = make_data(70, 6, 3)
    extractor = ActivationExtractor(mlp, batch_size=16, device="cpu").fit(X)
    params = dict(n_bins=3, alpha=0.5)
    streamed = ActivationProbabilityFeatures(**params).fit(extractor.batches(X, y))
    Z = extractor.transform(X)
    in_memory = ActivationProbabilityFeatures(**params).fit(Z, y)
    assert_array_equal(streamed.state_count_, in_memory.state_count_)
    assert_allclose(streamed.transform(Z), in_memory.transform(Z), rtol=1e-6)
