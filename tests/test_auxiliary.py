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
