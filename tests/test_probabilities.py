"""Numeric tests of activation probabilities and Y_proposed (docs/definitions.md).

Every expected value is worked out by hand from the definitions, with the
computation in a comment:

* ``P[c, j] = (active + alpha) / (n_c + 2 alpha)`` where ``active`` counts the
  class-``c`` samples with ``a_j > 0`` (Eq. 14 when ``alpha = 0``);
* ``u = (a > 0)``, ``q = P @ u``, ``Y_proposed = q * Y_predicted / sum``, and
  ``Y_predicted`` itself when that sum is 0.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sknap import ActivationProbabilityFeatures, EmptyClassWarning, LayoutWarning
from sknap._probabilities import activation_probability, proposed_proba

RTOL = 1e-6
ATOL = 1e-7

# Five samples, three neurons. Class 0: samples 0-2, class 1: samples 3-4.
A5 = np.array(
    [
        [1.0, 0.0, 2.0],
        [3.0, 0.0, 0.0],
        [0.0, 0.0, -1.0],  # -1 is inactive
        [0.0, 1.0, 1.0],
        [2.0, 0.0, 5.0],
    ]
)
Y5 = np.array([0, 0, 0, 1, 1])
# Class 0 (3 samples): neuron 0 active in samples 0, 1 -> 2/3; neuron 1 never
#   -> 0; neuron 2 in sample 0 only -> 1/3.
# Class 1 (2 samples): neuron 0 in sample 4 -> 1/2; neuron 1 in sample 3
#   -> 1/2; neuron 2 in both -> 1.
P5 = np.array([[2 / 3, 0.0, 1 / 3], [1 / 2, 1 / 2, 1.0]])


# --- activation_probability --------------------------------------------------


def test_activation_probability_by_hand():
    assert_allclose(activation_probability(A5, Y5, 2), P5, rtol=RTOL)


def test_activation_probability_with_smoothing():
    # alpha = 1: class 0 -> [(2+1)/(3+2), (0+1)/5, (1+1)/5] = [0.6, 0.2, 0.4]
    #            class 1 -> [(1+1)/(2+2), (1+1)/4, (2+1)/4] = [0.5, 0.5, 0.75]
    assert_allclose(
        activation_probability(A5, Y5, 2, alpha=1.0),
        [[0.6, 0.2, 0.4], [0.5, 0.5, 0.75]],
        rtol=RTOL,
    )
    # alpha = 0.5: class 0 -> [2.5/4, 0.5/4, 1.5/4] = [0.625, 0.125, 0.375]
    assert_allclose(
        activation_probability(A5, Y5, 2, alpha=0.5)[0],
        [0.625, 0.125, 0.375],
        rtol=RTOL,
    )


def test_activation_probability_of_a_class_without_sample():
    # n_classes = 3, class 2 has no sample: n_c = 0.
    # alpha = 0 -> 0/0, defined as a row of zeros; alpha = 1 -> (0+1)/(0+2) = 1/2.
    assert_allclose(activation_probability(A5, Y5, 3)[2], [0, 0, 0])
    assert_allclose(activation_probability(A5, Y5, 3, alpha=1.0)[2], [0.5] * 3)
    assert_allclose(activation_probability(A5, Y5, 3)[:2], P5, rtol=RTOL)


# --- proposed_proba ----------------------------------------------------------


@pytest.mark.parametrize(
    "a, proba, expected",
    [
        # u = [1, 0, 1]: q = [2/3 + 1/3, 1/2 + 1] = [1, 1.5];
        # q * [0.6, 0.4] = [0.6, 0.6] -> [0.5, 0.5]
        ([5.0, 0.0, 1.0], [0.6, 0.4], [0.5, 0.5]),
        # u = [0, 0, 1] (negatives inactive): q = [1/3, 1];
        # q * [0.5, 0.5] = [1/6, 1/2], sum 2/3 -> [0.25, 0.75]
        ([-1.0, -1.0, 3.0], [0.5, 0.5], [0.25, 0.75]),
        # u = [1, 1, 1]: q = [1, 2]; q * [0.8, 0.2] = [0.8, 0.4] -> [2/3, 1/3]
        ([1.0, 1.0, 1.0], [0.8, 0.2], [2 / 3, 1 / 3]),
        # u = [0, 1, 0]: q = [0, 1/2]; q * [0.6, 0.4] = [0, 0.2] -> [0, 1]
        ([0.0, 2.0, 0.0], [0.6, 0.4], [0.0, 1.0]),
        # no active neuron: q = [0, 0], sum 0 -> fall back to Y_predicted
        ([0.0, 0.0, -3.0], [0.6, 0.4], [0.6, 0.4]),
        # u = [0, 1, 0]: q = [0, 1/2], but Y_predicted = [1, 0] puts all mass on
        # the class with q = 0: q * Y = [0, 0] -> fall back to [1, 0]
        ([0.0, 2.0, 0.0], [1.0, 0.0], [1.0, 0.0]),
    ],
)
def test_proposed_proba_by_hand(a, proba, expected):
    out = proposed_proba(np.array([a]), np.array([proba]), P5)
    assert_allclose(out, [expected], rtol=RTOL, atol=ATOL)
    assert not np.isnan(out).any()
    assert_allclose(out.sum(axis=1), 1.0, rtol=RTOL)


def test_proposed_proba_never_nan_with_zero_probabilities():
    # P all zeros (e.g. every class empty): q = 0 for every sample -> fallback.
    proba = np.array([[0.3, 0.7], [1.0, 0.0]])
    out = proposed_proba(A5[:2], proba, np.zeros((2, 3)))
    assert_array_equal(out, proba)


# --- ActivationProbabilityFeatures -------------------------------------------


def _with_proba(A, proba):
    return np.hstack([A, np.asarray(proba, dtype=np.float64)])


# Backbone probabilities for the five samples of A5.
PROBA5 = np.array([[0.6, 0.4], [0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.7, 0.3]])


def test_features_by_hand():
    X = _with_proba(A5, PROBA5)
    est = ActivationProbabilityFeatures().fit(X, Y5)
    assert_allclose(est.activation_probability_, P5, rtol=RTOL)
    assert_array_equal(est.class_count_, [3, 2])
    assert_array_equal(est.classes_, [0, 1])
    assert est.n_neurons_in_ == 3
    # Y_proposed by hand, row by row (P5 as above):
    # 0: u = [1, 0, 1], q = [1, 1.5], q * [.6, .4] = [.6, .6] -> [1/2, 1/2]
    # 1: u = [1, 0, 0], q = [2/3, 1/2], q * [.9, .1] = [.6, .05] -> [12/13, 1/13]
    # 2: u = [0, 0, 0], q = [0, 0] -> Y_predicted [.5, .5]
    # 3: u = [0, 1, 1], q = [1/3, 3/2], q * [.2, .8] = [1/15, 6/5]
    #    sum 19/15 -> [1/19, 18/19]
    # 4: u = [1, 0, 1], q = [1, 1.5], q * [.7, .3] = [.7, .45] -> [14/23, 9/23]
    proposed = [
        [1 / 2, 1 / 2],
        [12 / 13, 1 / 13],
        [1 / 2, 1 / 2],
        [1 / 19, 18 / 19],
        [14 / 23, 9 / 23],
    ]
    out = est.transform(X)
    assert_allclose(out[:, :2], proposed, rtol=RTOL)
    assert_array_equal(out[:, 2:], PROBA5)
    assert_allclose(out[:, :2].sum(axis=1), 1.0, rtol=RTOL)
    assert_array_equal(
        est.get_feature_names_out(),
        ["proposed_0", "proposed_1", "predicted_0", "predicted_1"],
    )
    assert_allclose(proposed_proba(A5, PROBA5, P5), proposed, rtol=RTOL)


def test_features_with_smoothing():
    # alpha = 1: P = [[.6, .2, .4], [.5, .5, .75]] (see the smoothing test).
    # Row 2 (u = 0): q = [0, 0] still falls back to Y_predicted [.5, .5].
    # Row 1: u = [1, 0, 0], q = [.6, .5], q * [.9, .1] = [.54, .05]
    #        -> [54/59, 5/59]
    X = _with_proba(A5, PROBA5)
    out = ActivationProbabilityFeatures(alpha=1.0).fit_transform(X, Y5)
    assert_allclose(out[1, :2], [54 / 59, 5 / 59], rtol=RTOL)
    assert_allclose(out[2, :2], [0.5, 0.5], rtol=RTOL)


def test_string_labels():
    # Same data; labels "ant" (class 0) and "bee" (class 1): column k of the
    # probability block is classes_[k] in sorted order.
    X = _with_proba(A5, PROBA5)
    y = np.array(["ant", "ant", "ant", "bee", "bee"])
    est = ActivationProbabilityFeatures().fit(X, y)
    assert_array_equal(est.classes_, ["ant", "bee"])
    assert_allclose(est.activation_probability_, P5, rtol=RTOL)
    assert_array_equal(
        est.get_feature_names_out(),
        ["proposed_ant", "proposed_bee", "predicted_ant", "predicted_bee"],
    )
    # Row 1: [12/13, 1/13] as in test_features_by_hand.
    assert_allclose(est.transform(X)[1, :2], [12 / 13, 1 / 13], rtol=RTOL)


def test_integer_labels_that_skip_a_class():
    # y in {0, 2}, three probability columns: class 1 has no sample. n_outputs
    # must say 3 (with "auto", y's two classes would mean two columns).
    # Class 0 = samples 0-2, class 2 = samples 3-4, so P rows 0 and 2 are the
    # rows of P5 and row 1 is zeros.
    proba = np.array(
        [
            [0.6, 0.1, 0.3],
            [0.8, 0.1, 0.1],
            [0.2, 0.4, 0.4],
            [0.1, 0.1, 0.8],
            [0.5, 0.25, 0.25],
        ]
    )
    X = _with_proba(A5, proba)
    y = np.array([0, 0, 0, 2, 2])
    with pytest.warns(EmptyClassWarning, match=r"Classes \[1\]"):
        est = ActivationProbabilityFeatures(n_outputs=3).fit(X, y)
    assert_array_equal(est.classes_, [0, 1, 2])
    assert_array_equal(est.class_count_, [3, 0, 2])
    assert_allclose(est.activation_probability_, [P5[0], [0, 0, 0], P5[1]], rtol=RTOL)
    out = est.transform(X)
    # Row 0: u = [1, 0, 1], q = [1, 0, 1.5], q * [.6, .1, .3] = [.6, 0, .45]
    #        -> [4/7, 0, 3/7]
    assert_allclose(out[0, :3], [4 / 7, 0, 3 / 7], rtol=RTOL, atol=ATOL)
    # Class 1 never gets proposed mass where any other class has some.
    assert_array_equal(out[[0, 1, 3, 4], 1], 0.0)
    assert_array_equal(out[:, 3:], proba)
    assert_array_equal(
        est.get_feature_names_out()[:3], ["proposed_0", "proposed_1", "proposed_2"]
    )


def test_missing_class_with_auto_n_outputs():
    # Three probability columns, y in {0, 2}. Without names, "auto" counts two
    # classes in y and takes the last two columns, whose rows do not sum to 1:
    # an error, which finds that the last three do. With DataFrame names the
    # three proba_ columns are found and class 1 is reported empty.
    proba = np.array([[0.6, 0.1, 0.3]] * 3 + [[0.1, 0.1, 0.8]] * 2)
    X = _with_proba(A5, proba)
    y = np.array([0, 0, 0, 2, 2])
    with pytest.raises(ValueError, match="last 2 columns.*Set n_outputs=3"):
        ActivationProbabilityFeatures().fit(X, y)
    pd = pytest.importorskip("pandas")
    names = ["fc__0", "fc__1", "fc__2", "proba_0", "proba_1", "proba_2"]
    with pytest.warns(EmptyClassWarning, match=r"Classes \[1\]"):
        est = ActivationProbabilityFeatures().fit(pd.DataFrame(X, columns=names), y)
    assert est.n_neurons_in_ == 3
    assert_array_equal(est.classes_, [0, 1, 2])


def test_string_labels_with_fewer_classes_than_columns_is_an_error():
    X = _with_proba(A5, np.full((5, 3), 1 / 3))
    y = np.array(["a", "a", "a", "b", "b"])
    with pytest.raises(ValueError, match="y has 2 classes but X has 3"):
        ActivationProbabilityFeatures(n_outputs=3).fit(X, y)


def test_n_outputs_zero_uses_a_uniform_prediction():
    # X holds activations only; Y_predicted = [1/2, 1/2] for every sample, so
    # Y_proposed = q / sum(q).
    # Row 0: q = [1, 1.5], sum 2.5 -> [0.4, 0.6]; row 3: u = [0, 1, 1],
    # q = [1/3, 3/2] = [2/6, 9/6], sum 11/6 -> [2/11, 9/11];
    # row 2: q = 0 -> uniform [1/2, 1/2].
    est = ActivationProbabilityFeatures(n_outputs=0).fit(A5, Y5)
    out = est.transform(A5)
    assert out.shape == (5, 4)
    assert_allclose(out[0, :2], [0.4, 0.6], rtol=RTOL)
    assert_allclose(out[3, :2], [2 / 11, 9 / 11], rtol=RTOL)
    assert_allclose(out[2, :2], [0.5, 0.5], rtol=RTOL)
    assert_allclose(out[:, 2:], 0.5)


def test_n_outputs_zero_with_three_classes():
    # Three classes: Y_predicted = [1/3, 1/3, 1/3].
    y = np.array([0, 1, 2, 2, 1])
    est = ActivationProbabilityFeatures(n_outputs=0).fit(A5, y)
    assert_allclose(est.transform(A5)[:, 3:], 1 / 3, rtol=RTOL)


def test_float32_is_preserved():
    X = _with_proba(A5, PROBA5).astype(np.float32)
    out = ActivationProbabilityFeatures().fit(X, Y5).transform(X)
    assert out.dtype == np.float32
    assert_allclose(out[1, :2], [12 / 13, 1 / 13], rtol=RTOL)


def test_layout_warning():
    # Row 0 of the probability block sums to 0.6 + 0.6 = 1.2.
    proba = PROBA5.copy()
    proba[0] = [0.6, 0.6]
    with pytest.warns(LayoutWarning, match="sum to values"):
        ActivationProbabilityFeatures().fit(_with_proba(A5, proba), Y5)


def test_no_warning_on_clean_data():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ActivationProbabilityFeatures().fit(_with_proba(A5, PROBA5), Y5)


def test_n_outputs_from_dataframe_names():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(
        _with_proba(A5, PROBA5),
        columns=["fc__0", "fc__1", "fc__2", "proba_0", "proba_1"],
    )
    est = ActivationProbabilityFeatures().fit(X, Y5)
    assert est.n_neurons_in_ == 3
    assert_allclose(est.activation_probability_, P5, rtol=RTOL)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alpha": -1.0}, r"'alpha' parameter of ActivationProbabilityFeatures"),
        ({"n_outputs": -1}, r"'n_outputs' parameter"),
        ({"n_outputs": "many"}, r"'n_outputs' parameter"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        ActivationProbabilityFeatures(**params).fit(_with_proba(A5, PROBA5), Y5)


# --- cross-fitting -----------------------------------------------------------

# Four samples, two neurons, two classes.
A4 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
Y4 = np.array([0, 0, 1, 1])
PROBA4 = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
# In-sample P: class 0 = {s0, s1}: neuron 0 in s0 -> 1/2, neuron 1 in s1 -> 1/2
#              class 1 = {s2, s3}: neuron 0 in s2 -> 1/2, neuron 1 in both -> 1
P4 = np.array([[0.5, 0.5], [0.5, 1.0]])


def test_cross_fitting_by_hand():
    # Leave-one-out folds as an explicit iterable of (train, test) pairs.
    folds = [
        (np.array([1, 2, 3]), np.array([0])),
        (np.array([0, 2, 3]), np.array([1])),
        (np.array([0, 1, 3]), np.array([2])),
        (np.array([0, 1, 2]), np.array([3])),
    ]
    X = _with_proba(A4, PROBA4)
    est = ActivationProbabilityFeatures(cv=folds)
    out = est.fit_transform(X, Y4)
    # Row 0 (u = [1, 0]), P without s0: class 0 = {s1} -> [0, 1];
    #   class 1 = {s2, s3} -> [1/2, 1]. q = [0, 1/2];
    #   q * [.8, .2] = [0, .1] -> [0, 1]  (in-sample P would give [.8, .2])
    # Row 1 (u = [0, 1]), P without s1: class 0 = {s0} -> [1, 0];
    #   class 1 -> [1/2, 1]. q = [0, 1]; q * [.6, .4] = [0, .4] -> [0, 1]
    # Row 2 (u = [1, 1]), P without s2: class 0 -> [1/2, 1/2];
    #   class 1 = {s3} -> [0, 1]. q = [1, 1]; q * [.3, .7] -> [.3, .7]
    # Row 3 (u = [0, 1]), P without s3: class 0 -> [1/2, 1/2];
    #   class 1 = {s2} -> [1, 1]. q = [1/2, 1]; q * [.5, .5] = [.25, .5]
    #   -> [1/3, 2/3]
    expected = [
        [0.0, 1.0, 0.8, 0.2],
        [0.0, 1.0, 0.6, 0.4],
        [0.3, 0.7, 0.3, 0.7],
        [1 / 3, 2 / 3, 0.5, 0.5],
    ]
    assert_allclose(out, expected, rtol=RTOL, atol=ATOL)
    # P itself is refitted on all samples.
    assert_allclose(est.activation_probability_, P4, rtol=RTOL)
    # A later transform uses the in-sample P:
    # Row 0: q = [1/2, 1/2], q * [.8, .2] -> [.8, .2]
    # Row 1: u = [0, 1], q = [1/2, 1], q * [.6, .4] = [.3, .4] -> [3/7, 4/7]
    # Row 2: u = [1, 1], q = [1, 3/2], q * [.3, .7] = [.3, 1.05] -> [2/9, 7/9]
    # Row 3: q = [1/2, 1], q * [.5, .5] -> [1/3, 2/3]
    assert_allclose(
        est.transform(X)[:, :2],
        [[0.8, 0.2], [3 / 7, 4 / 7], [2 / 9, 7 / 9], [1 / 3, 2 / 3]],
        rtol=RTOL,
    )


def test_without_cv_fit_transform_is_in_sample():
    X = _with_proba(A4, PROBA4)
    est = ActivationProbabilityFeatures()
    out = est.fit_transform(X, Y4)
    assert_allclose(est.activation_probability_, P4, rtol=RTOL)
    assert_allclose(out, est.transform(X), rtol=RTOL)
    # Row 1 in sample: [3/7, 4/7] (see test_cross_fitting_by_hand).
    assert_allclose(out[1, :2], [3 / 7, 4 / 7], rtol=RTOL)


def test_cross_fitting_fold_without_a_class():
    # Folds that leave a whole class out of training: for test = {s0, s1}
    # P is fitted on class 1 only and class 0's row is 0.
    # Row 0: u = [1, 0], q = [0, 1/2] -> [0, 1];
    # Row 1: u = [0, 1], q = [0, 1] -> [0, 1].
    # For test = {s2, s3}, P from class 0 = {s0, s1} -> [1/2, 1/2], class 1
    # row 0. Row 2: q = [1, 0], q * [.3, .7] = [.3, 0] -> [1, 0];
    # Row 3: u = [0, 1], q = [1/2, 0] -> [1, 0].
    folds = [(np.array([2, 3]), np.array([0, 1])), (np.array([0, 1]), np.array([2, 3]))]
    out = ActivationProbabilityFeatures(cv=folds).fit_transform(
        _with_proba(A4, PROBA4), Y4
    )
    assert_allclose(out[:, :2], [[0, 1], [0, 1], [1, 0], [1, 0]], rtol=RTOL, atol=ATOL)
    assert not np.isnan(out).any()


def test_cross_fitting_with_an_int(rng):
    # Stratified folds; each row of Y_proposed still sums to 1.
    A = np.maximum(rng.standard_normal((30, 6)), 0.0)
    y = np.repeat([0, 1, 2], 10)
    proba = rng.dirichlet(np.ones(3), size=30)
    out = ActivationProbabilityFeatures(cv=3).fit_transform(_with_proba(A, proba), y)
    assert out.shape == (30, 6)
    assert_allclose(out[:, :3].sum(axis=1), 1.0, rtol=RTOL)
    assert_allclose(out[:, 3:], proba, rtol=RTOL)


# --- comparison with a straightforward implementation ------------------------


def _loop_features(A_train, y_train, classes, A, proba, alpha=0.0):
    """P and Y_proposed by explicit loops over classes, neurons and samples."""
    P = np.zeros((len(classes), A_train.shape[1]))
    for c, label in enumerate(classes):
        rows = [i for i in range(len(y_train)) if y_train[i] == label]
        for j in range(A_train.shape[1]):
            active = sum(1 for i in rows if A_train[i, j] > 0)
            denominator = len(rows) + 2 * alpha
            P[c, j] = (active + alpha) / denominator if denominator > 0 else 0.0
    out = np.zeros_like(proba)
    for i in range(A.shape[0]):
        q = [
            sum(P[c, j] for j in range(A.shape[1]) if A[i, j] > 0)
            for c in range(len(classes))
        ]
        raw = [q[c] * proba[i, c] for c in range(len(classes))]
        total = sum(raw)
        out[i] = [r / total for r in raw] if total > 0 else proba[i]
    return P, out


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_matches_a_loop(rng, alpha):
    # Sparse ReLU-like activations (many exact zeros, some rows all zero) and
    # a class that is rare.
    A = np.maximum(rng.standard_normal((40, 7)) - 0.5, 0.0)
    A[:3] = 0.0
    y = rng.choice([0, 1, 2, 3], size=40, p=[0.4, 0.3, 0.25, 0.05])
    y[-1] = 3
    proba = rng.dirichlet(np.ones(4), size=40)
    proba[5] = [0.0, 0.0, 0.0, 1.0]
    X = _with_proba(A, proba)
    est = ActivationProbabilityFeatures(alpha=alpha).fit(X, y)
    P, expected = _loop_features(A, y, [0, 1, 2, 3], A, proba, alpha)
    assert_allclose(est.activation_probability_, P, rtol=RTOL)
    assert_allclose(est.transform(X)[:, :4], expected, rtol=RTOL, atol=ATOL)
    assert_allclose(activation_probability(A, y, 4, alpha), P, rtol=RTOL)
