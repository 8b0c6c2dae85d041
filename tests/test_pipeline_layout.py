"""The extractor's column layout, read by the later steps instead of guessed.

make_nap_pipeline gives ActivationEntropy and ActivationProbabilityFeatures
the fitted extractor's layout at fit (``<step>__layout``), so that the number
of probability columns is the backbone's number of outputs, whatever the
classes of y. Small MLPs, a few epochs of the auxiliary network.
"""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline

from sknap import (
    ActivationEntropy,
    ActivationExtractor,
    ActivationProbabilityFeatures,
    make_nap_pipeline,
)
from sknap.toy import make_mlp

pytestmark = [
    pytest.mark.filterwarnings("ignore::sknap.EmptyClassWarning"),
    pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning"),
]

N_FEATURES = 6


@pytest.fixture
def net10():
    """A backbone of 10 outputs."""
    return make_mlp(N_FEATURES, 10, hidden=(8,), random_state=0)


@pytest.fixture
def data3(make_data):
    """Labels of 3 classes only, 0..2: outputs 3..9 have no sample."""
    return make_data(60, N_FEATURES, 3)


def _pipeline(net, **params):
    return make_nap_pipeline(net, max_iter=2, random_state=0, **params)


def test_cross_val_score_with_a_fold_missing_a_class(net10, make_data):
    # All 10 classes, but the first training fold has no sample of class 9:
    # "auto" counted 9 classes in y and stopped. The layout says 10 outputs,
    # the same as n_outputs=10 set by hand.
    X, y = make_data(100, N_FEATURES, 10)
    nines = np.flatnonzero(y == 9)
    rest = np.flatnonzero(y != 9)
    folds = [
        (rest[:70], np.concatenate([rest[70:], nines])),
        (np.concatenate([rest[20:], nines]), rest[:20]),
    ]
    auto = cross_val_score(_pipeline(net10), X, y, cv=folds, error_score="raise")
    fixed = cross_val_score(
        _pipeline(net10, n_outputs=10), X, y, cv=folds, error_score="raise"
    )
    assert_array_equal(auto, fixed)


def test_the_steps_read_the_number_of_outputs_from_the_extractor(net10, data3):
    pipe = _pipeline(net10).fit(*data3)
    assert pipe["entropy"].n_outputs_in_ == 10
    assert pipe["entropy"].n_neurons_in_ == 8
    assert_array_equal(pipe["probabilities"].classes_, np.arange(10))
    assert_array_equal(pipe["probabilities"].class_count_[3:], 0)
    # The parameters are left as given.
    assert pipe["entropy"].n_outputs == "auto"
    assert pipe["probabilities"].n_outputs == "auto"


def test_a_selecting_entropy_step_passes_on_the_columns_it_keeps(net10, data3):
    # The probability step sees 3 of the 8 neurons and the 10 outputs.
    pipe = _pipeline(net10, n_neurons=3, binned=True, n_bins=4).fit(*data3)
    assert pipe["probabilities"].n_neurons_in_ == 3
    assert pipe["probabilities"].n_features_in_ == 13
    features = pipe[:3].fit_transform(*data3)
    assert features.shape == (60, 20)


def test_streamed_pipeline_reads_the_layout(net10, data3):
    pipe = _pipeline(net10, streaming=True, n_neurons=0.5).fit(*data3)
    assert pipe["entropy"].n_outputs_in_ == 10
    assert pipe["probabilities"].n_neurons_in_ == 4
    in_memory = _pipeline(net10, n_neurons=0.5).fit(*data3)
    assert_allclose(
        pipe["probabilities"].activation_probability_,
        in_memory["probabilities"].activation_probability_,
    )


def test_grid_search_over_n_bins_with_the_layout(net10, data3):
    pipe = _pipeline(net10, n_neurons=0.5)
    search = GridSearchCV(
        pipe, {"entropy__n_bins": [3, 5]}, cv=2, error_score="raise"
    ).fit(*data3)
    assert type(search.best_estimator_) is type(pipe)
    assert search.best_estimator_["entropy"].n_outputs_in_ == 10
    assert search.best_params_["entropy__n_bins"] in (3, 5)


def test_clone_keeps_the_pipeline_class_and_its_fit(net10, data3):
    pipe = _pipeline(net10)
    cloned = clone(pipe)
    assert type(cloned) is type(pipe)
    assert cloned.fit(*data3)["entropy"].n_outputs_in_ == 10


def test_fit_transform_and_fit_predict_only_where_pipeline_has_them(net10):
    # The auxiliary classifier has neither transform nor fit_predict.
    pipe = _pipeline(net10)
    assert not hasattr(pipe, "fit_transform")
    assert not hasattr(pipe, "fit_predict")
    assert hasattr(pipe[:3], "fit_transform")


def test_memory_caching_swaps_in_fitted_clones(net10, data3, tmp_path, monkeypatch):
    # The layout enters the cache key by its value, so a second fit of the
    # same data is a hit: the entropy step is fitted once.
    fits = []
    fit = ActivationEntropy.fit
    monkeypatch.setattr(
        ActivationEntropy, "fit", lambda *a, **k: fits.append(1) or fit(*a, **k)
    )
    pipe = _pipeline(net10, n_neurons=3).set_params(memory=str(tmp_path))
    first = pipe.fit(*data3)["probabilities"].activation_probability_
    again = pipe.fit(*data3)
    assert len(fits) == 1
    assert again["entropy"].n_outputs_in_ == 10
    assert_array_equal(again["probabilities"].activation_probability_, first)


def test_a_plain_pipeline_of_the_same_steps(net10, data3, mlp, make_data):
    # No layout is given: n_outputs set by hand, or "auto" from y.
    steps = _pipeline(net10, n_outputs=10).steps
    plain = Pipeline(steps).fit(*data3)
    assert plain["entropy"].n_outputs_in_ == 10
    X, y = make_data(60, N_FEATURES, 3)
    auto = Pipeline(_pipeline(mlp).steps).fit(X, y)
    assert auto["entropy"].n_outputs_in_ == 3
    with pytest.raises(ValueError, match="backbone has 10 outputs, not one per"):
        Pipeline(_pipeline(net10).steps).fit(*data3)


def test_metadata_routing_falls_back_to_auto(net10, data3, mlp, make_data):
    with sklearn.config_context(enable_metadata_routing=True):
        X, y = make_data(60, N_FEATURES, 3)
        assert _pipeline(mlp).fit(X, y)["entropy"].n_outputs_in_ == 3
        with pytest.raises(ValueError, match="backbone has 10 outputs, not one per"):
            _pipeline(net10).fit(*data3)


def test_a_layout_given_to_the_pipeline_wins(net10, data3):
    other = ActivationExtractor(make_mlp(N_FEATURES, 10, hidden=(5,))).fit(data3[0])
    with pytest.raises(ValueError, match="has 15 columns.*but X has 18"):
        _pipeline(net10).fit(*data3, entropy__layout=other.layout_)


def test_n_outputs_that_disagrees_with_the_layout(net10, data3):
    with pytest.raises(ValueError, match=r"n_outputs=3, but the layout.*has 10 prob"):
        _pipeline(net10, n_outputs=3).fit(*data3)
    extractor = ActivationExtractor(net10).fit(data3[0])
    Z = extractor.transform(data3[0])
    for step in (ActivationEntropy, ActivationProbabilityFeatures):
        with pytest.raises(ValueError, match="Set n_outputs='auto'.*n_outputs=10"):
            step(n_outputs=0).fit(Z, data3[1], layout=extractor.layout_)


def test_a_layout_of_another_width(net10, data3):
    extractor = ActivationExtractor(net10).fit(data3[0])
    Z = extractor.transform(data3[0])
    for step in (ActivationEntropy, ActivationProbabilityFeatures):
        with pytest.raises(ValueError, match=r"has 18 columns \(8 activations, 10 p"):
            step().fit(Z[:, 1:], data3[1], layout=extractor.layout_)


def test_the_steps_take_a_layout_or_a_function_returning_one(net10, data3):
    X, y = data3
    extractor = ActivationExtractor(net10).fit(X)
    Z = extractor.transform(X)
    entropy = ActivationEntropy().fit(Z, y, layout=lambda: extractor.layout_)
    assert entropy.n_outputs_in_ == 10
    out = ActivationEntropy().fit_transform(Z, layout=extractor.layout_)
    assert out.shape == Z.shape
    features = ActivationProbabilityFeatures(cv=2)
    F = features.fit_transform(Z, y, layout=extractor.layout_)
    assert F.shape == (60, 20)
    assert_array_equal(features.classes_, np.arange(10))
    with pytest.raises(TypeError, match="got layout of type str; expected"):
        ActivationEntropy().fit(Z, y, layout="proba")


def test_batches_give_the_extractor_layout_not_their_names(net10, data3):
    # Without names, "auto" would count the 3 classes in y.
    X, y = data3
    extractor = ActivationExtractor(net10).fit(X)
    batches = extractor.batches(X, y)
    batches.feature_names = None
    assert ActivationEntropy().fit(batches).n_outputs_in_ == 10
    features = ActivationProbabilityFeatures().fit(batches)
    assert features.n_neurons_in_ == 8
    assert_array_equal(features.classes_, np.arange(10))
    # An int n_outputs wins over the batches' layout, as over names.
    assert ActivationEntropy(n_outputs=0).fit(batches).n_neurons_in_ == 18
