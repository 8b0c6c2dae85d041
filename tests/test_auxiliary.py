"""Tests of AuxiliaryClassifier, the small MLP trained on [Y_proposed, Y_predicted]."""

import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import NotFittedError
from torch import nn

from sknap import AuxiliaryClassifier

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)


@pytest.fixture
def blobs(rng):
    """Three well separated classes in 4 dimensions, 20 samples each."""
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = np.repeat([0, 1, 2], 20)
    X = centers[y] + 0.3 * rng.normal(size=(60, 4))
    return X, y


def _linears(model):
    return [m for m in model if isinstance(m, nn.Linear)]


def test_default_hidden_layer_is_two_per_class(blobs):
    X, y = blobs
    clf = AuxiliaryClassifier(max_iter=2, random_state=0).fit(X, y)
    assert clf.hidden_layer_sizes is None  # the parameter is left as given
    assert clf.hidden_layer_sizes_ == (6,)
    assert [(m.in_features, m.out_features) for m in _linears(clf.model_)] == [
        (4, 6),
        (6, 3),
    ]
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_features_in_ == 4
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert not clf.model_.training


@pytest.mark.parametrize(
    "sizes, expected", [(5, (5,)), ((7,), (7,)), ((6, 3), (6, 3)), ([4, 2], (4, 2))]
)
def test_hidden_layer_sizes_settable(blobs, sizes, expected):
    X, y = blobs
    clf = AuxiliaryClassifier(sizes, max_iter=1, random_state=0).fit(X, y)
    assert clf.hidden_layer_sizes_ == expected
    widths = [m.out_features for m in _linears(clf.model_)]
    assert widths == [*expected, 3]


@pytest.mark.parametrize("sizes", [(0,), (3, -1), (2.5,)])
def test_invalid_hidden_layer_sizes(blobs, sizes):
    X, y = blobs
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        AuxiliaryClassifier(sizes, max_iter=1).fit(X, y)


def test_dropout_layers_and_deterministic_predictions(blobs):
    X, y = blobs
    clf = AuxiliaryClassifier((6, 3), dropout=0.2, max_iter=3, random_state=0)
    clf.fit(X, y)
    dropouts = [m for m in clf.model_ if isinstance(m, nn.Dropout)]
    assert [d.p for d in dropouts] == [0.2, 0.2]
    # Dropout is off at prediction: two calls agree.
    assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    no_dropout = AuxiliaryClassifier((6, 3), max_iter=1, random_state=0).fit(X, y)
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout.model_)


def test_same_random_state_gives_identical_results(blobs):
    X, y = blobs
    params = dict(dropout=0.2, max_iter=3)
    a = AuxiliaryClassifier(random_state=3, **params).fit(X, y)
    b = AuxiliaryClassifier(random_state=3, **params).fit(X, y)
    c = AuxiliaryClassifier(random_state=4, **params).fit(X, y)
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_string_labels(blobs):
    X, y = blobs
    labels = np.array(["cat", "dog", "emu"])[y]
    clf = AuxiliaryClassifier(learning_rate_init=0.01, max_iter=30, random_state=0)
    clf.fit(X, labels)
    assert_array_equal(clf.classes_, ["cat", "dog", "emu"])
    pred = clf.predict(X)
    assert set(pred) <= {"cat", "dog", "emu"}
    assert (pred == labels).mean() == 1.0


def test_predict_proba_rows_sum_to_one(blobs):
    X, y = blobs
    clf = AuxiliaryClassifier(max_iter=2, random_state=0).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (60, 3)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])


def test_predict_before_fit_raises(blobs):
    X, _ = blobs
    clf = AuxiliaryClassifier()
    with pytest.raises(NotFittedError):
        clf.predict(X)
    with pytest.raises(NotFittedError):
        clf.predict_proba(X)


def test_single_class_raises(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="at least 2 classes.*1 class"):
        AuxiliaryClassifier().fit(X, np.zeros(len(X), dtype=int))


def test_loss_decreases_on_easy_problem(blobs):
    X, y = blobs
    clf = AuxiliaryClassifier(learning_rate_init=0.01, max_iter=15, random_state=0)
    clf.fit(X, y)
    assert len(clf.loss_curve_) == 15
    # Cross-entropy of 3 classes starts near log(3) = 1.1.
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert clf.loss_curve_[-1] < clf.loss_curve_[len(clf.loss_curve_) // 2]
    assert clf.score(X, y) == 1.0


def test_wrong_number_of_features_at_predict(blobs):
    X, y = blobs
    clf = AuxiliaryClassifier(max_iter=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3])


def test_parameter_constraints_cover_params():
    params = AuxiliaryClassifier().get_params(deep=False)
    assert set(AuxiliaryClassifier._parameter_constraints) == set(params)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_raises(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="'device'.*CUDA is not available"):
        AuxiliaryClassifier(device="cuda").fit(X, y)


@needs_cuda
def test_cuda_model_pickles_to_cpu(blobs):
    X, y = blobs
    clf = AuxiliaryClassifier(max_iter=2, device="cuda", random_state=0).fit(X, y)
    assert next(clf.model_.parameters()).device.type == "cuda"
    loaded = pickle.loads(pickle.dumps(clf))
    assert next(loaded.model_.parameters()).device.type == "cpu"
    loaded.set_params(device="cpu")
    assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-5)


# --- MLPClassifier's language: weights, stopping, curves ----------------------


def test_weight_two_equals_a_duplicated_row(blobs):
    # With one batch holding every sample the loss is the weighted mean over
    # the batch, so weight 2 on a row is the row twice (the batch order only
    # changes the float sums). The same seed gives the same initialisation.
    X, y = blobs
    weights = np.ones(len(y))
    weights[[0, 25]] = 2.0
    params = dict(batch_size=1000, max_iter=30, learning_rate_init=0.01, tol=0.0)
    weighted = AuxiliaryClassifier(random_state=0, **params).fit(X, y, weights)
    X_dup, y_dup = np.vstack([X, X[[0, 25]]]), np.concatenate([y, y[[0, 25]]])
    duplicated = AuxiliaryClassifier(random_state=0, **params).fit(X_dup, y_dup)
    assert_allclose(weighted.loss_curve_, duplicated.loss_curve_, rtol=1e-5)
    assert_allclose(weighted.predict_proba(X), duplicated.predict_proba(X), atol=1e-5)


def test_zero_weights_ignore_rows(blobs):
    X, y = blobs
    # Row labels flipped, but with weight 0: as if they were not there.
    y_bad = y.copy()
    y_bad[:5] = 2
    weights = np.ones(len(y))
    weights[:5] = 0.0
    params = dict(batch_size=1000, max_iter=20, learning_rate_init=0.01, tol=0.0)
    weighted = AuxiliaryClassifier(random_state=0, **params).fit(X, y_bad, weights)
    dropped = AuxiliaryClassifier(random_state=0, **params).fit(X[5:], y_bad[5:])
    assert_allclose(weighted.loss_curve_, dropped.loss_curve_, rtol=1e-5)
    assert_allclose(weighted.predict_proba(X), dropped.predict_proba(X), atol=1e-5)
    with pytest.raises(ValueError, match="Sample weights must contain at least one"):
        AuxiliaryClassifier().fit(X, y, np.zeros(len(y)))
    with pytest.raises(ValueError, match="[Nn]egative"):
        AuxiliaryClassifier().fit(X, y, -np.ones(len(y)))


def test_training_stops_on_a_loss_plateau(blobs):
    # MLPClassifier's rule: stop once the loss has not improved by tol for
    # n_iter_no_change + 1 epochs. learning_rate_init tiny: the loss hardly
    # moves, so with a large tol every epoch counts as no improvement.
    X, y = blobs
    clf = AuxiliaryClassifier(
        learning_rate_init=1e-8, tol=1.0, n_iter_no_change=3, max_iter=50
    ).fit(X, y)
    # Epoch 1 improves on inf; epochs 2-5 do not: stop after epoch 5.
    assert clf.n_iter_ == 5 < clf.max_iter
    assert len(clf.loss_curve_) == clf.n_iter_
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    # tol=0 and a decreasing loss: every epoch runs.
    full = AuxiliaryClassifier(
        learning_rate_init=0.01, tol=0.0, max_iter=12, random_state=0
    ).fit(X, y)
    assert full.n_iter_ == 12


def test_early_stopping_keeps_the_best_validation_epoch(blobs):
    X, y = blobs
    clf = AuxiliaryClassifier(
        early_stopping=True,
        validation_fraction=0.25,
        n_iter_no_change=2,
        learning_rate_init=0.05,
        max_iter=200,
        random_state=0,
    ).fit(X, y)
    # Separated blobs: validation accuracy reaches 1 and stays, so training
    # stops n_iter_no_change + 1 epochs after the best one.
    assert clf.n_iter_ < clf.max_iter
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_) == 1.0
    best = int(np.argmax(clf.validation_scores_))
    assert clf.n_iter_ == best + 1 + clf.n_iter_no_change + 1
    assert clf.best_loss_ is None
    # 25% of 60 samples, stratified: 15 validation samples, 5 per class; the
    # model trained on the other 45.
    with pytest.raises(ValueError, match="validation set of early_stopping"):
        AuxiliaryClassifier(early_stopping=True, validation_fraction=0.01).fit(X, y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"tol": -1.0}, r"'tol' .*Got -1.0"),
        ({"early_stopping": "yes"}, r"'early_stopping' .*Got 'yes'"),
        ({"validation_fraction": 1.0}, r"'validation_fraction' .*\(0.0, 1.0\)"),
        ({"n_iter_no_change": 0}, r"'n_iter_no_change' .*Got 0"),
    ],
)
def test_new_parameters_are_validated(blobs, params, match):
    with pytest.raises(ValueError, match=match):
        AuxiliaryClassifier(**params).fit(*blobs)
