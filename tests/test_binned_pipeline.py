"""The bin count R through make_nap_pipeline(binned=True), metadata routing of
sample_weight and other final estimators."""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sknap import AuxiliaryClassifier, _device, make_nap_pipeline
from sknap._cache import clear_memory_cache
from sknap.toy import digits_mlp, make_mlp

pytestmark = pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")


@pytest.fixture(scope="module")
def weak_digits():
    """An under-trained digits MLP (4 epochs; about 66% test accuracy)."""
    return digits_mlp(epochs=4, random_state=0)


def test_one_key_sets_r_for_entropy_and_features(weak_digits):
    model = weak_digits[0]
    pipe = make_nap_pipeline(model, binned=True, n_bins=5)
    assert pipe["entropy"].n_bins == pipe["probabilities"].n_bins == 5
    pipe.set_params(entropy__n_bins=7)
    assert pipe["probabilities"].n_bins == 7
    # clone and get_params see plain steps and consistent values.
    cloned = clone(pipe).set_params(entropy__n_bins=3)
    params = cloned.get_params()
    assert params["entropy__n_bins"] == params["probabilities__n_bins"] == 3
    assert pipe["probabilities"].n_bins == 7  # the original is untouched
    assert cloned["extractor"].backbone is model
    # An explicit value in the same call wins; the paper's mode is left alone.
    pipe.set_params(entropy__n_bins=4, probabilities__n_bins=1)
    assert (pipe["entropy"].n_bins, pipe["probabilities"].n_bins) == (4, 1)
    paper = make_nap_pipeline(model).set_params(entropy__n_bins=4)
    assert paper["probabilities"].n_bins is None


def test_grid_over_n_bins_gives_different_scores(weak_digits):
    model, X_train, X_test, y_train, y_test = weak_digits
    pipe = make_nap_pipeline(
        model, binned=True, cache="memory", device="cpu", random_state=0
    )
    grid = {"entropy__n_bins": [2, 5, 20]}
    search = GridSearchCV(
        pipe,
        grid,
        cv=StratifiedKFold(3),
        scoring={"accuracy": "accuracy", "log_loss": "neg_log_loss"},
        refit="accuracy",
    ).fit(X_train, y_train)
    accuracy = search.cv_results_["mean_test_accuracy"]
    log_loss = search.cv_results_["mean_test_log_loss"]
    # Seen (CPU, torch 2.14.1): accuracy 0.6358, 0.6681, 0.7194 and log loss
    # -1.738, -1.582, -1.524 for R = 2, 5, 20: the states change the features.
    assert len(np.unique(accuracy)) == 3, accuracy
    assert len(np.unique(log_loss)) == 3, log_loss
    best = search.best_estimator_
    assert best["probabilities"].n_bins == best["entropy"].n_bins
    assert (
        best["probabilities"].state_probability_.shape[-1] == best["entropy"].n_bins + 1
    )
    # The entropy step still reports what users read from it.
    assert best["entropy"].bin_edges_.shape[1] == best["entropy"].n_bins + 1
    assert best["entropy"].entropy_ > 0


def test_one_bin_reproduces_the_paper_pipeline(weak_digits):
    model, X_train, X_test, y_train, _ = weak_digits
    paper = make_nap_pipeline(model, max_iter=2, random_state=0).fit(X_train, y_train)
    binned = make_nap_pipeline(model, binned=True, max_iter=2, random_state=0)
    binned.set_params(probabilities__n_bins=1).fit(X_train, y_train)
    assert_allclose(
        binned[:-1].transform(X_test), paper[:-1].transform(X_test), atol=1e-7
    )
    assert_allclose(
        binned.predict_proba(X_test), paper.predict_proba(X_test), atol=1e-6
    )


class Counter:
    """Rows of every batch the extractor copies to the device (one per
    forward pass), as in tests/test_cache.py."""

    def __init__(self, monkeypatch):
        self.passes = []
        to_device = _device.to_device

        def counted(batch, *args, **kwargs):
            self.passes.append(batch.shape[0])
            return to_device(batch, *args, **kwargs)

        monkeypatch.setattr(_device, "to_device", counted)


def test_binned_grid_runs_the_backbone_once_per_fold(rng, monkeypatch):
    X = rng.normal(size=(200, 12)).astype(np.float32)
    y = rng.integers(0, 3, size=200)
    model = make_mlp(12, 3, hidden=(16, 8), random_state=0)
    rows = []
    for n_candidates in (1, 4):
        clear_memory_cache()
        counter = Counter(monkeypatch)
        pipe = make_nap_pipeline(
            model, binned=True, cache="memory", max_iter=1, device="cpu"
        )
        pipe.set_params(extractor__batch_size=64)
        grid = {"entropy__n_bins": [2, 4, 8, 16][:n_candidates]}
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        GridSearchCV(pipe, grid, cv=cv).fit(X, y)
        rows.append(sum(counter.passes))
    clear_memory_cache()
    # Each extra candidate only fits its extractor (a probe of 2 samples) per
    # fold: the backbone sees every row once per fold and split.
    assert rows[1] - rows[0] == 3 * 5 * 2


def test_sample_weight_is_routed_to_the_auxiliary_model(weak_digits):
    model, X_train, X_test, y_train, _ = weak_digits
    weights = np.where(y_train == 3, 2.0, 1.0)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_nap_pipeline(model, binned=True, max_iter=3, random_state=0)
        pipe["auxiliary"].set_fit_request(sample_weight=True)
        pipe.fit(X_train, y_train, sample_weight=weights)
        routed = pipe.predict_proba(X_test)
    # The same as fitting the auxiliary model on the features with weights.
    Z = pipe[:-1].transform(X_train)
    aux = AuxiliaryClassifier(max_iter=3, random_state=0).fit(Z, y_train, weights)
    assert_allclose(routed, aux.predict_proba(pipe[:-1].transform(X_test)))
    plain = make_nap_pipeline(model, binned=True, max_iter=3, random_state=0)
    assert not np.allclose(plain.fit(X_train, y_train).predict_proba(X_test), routed)


def test_any_classifier_as_final_estimator(weak_digits):
    model, X_train, X_test, y_train, y_test = weak_digits
    logistic = LogisticRegression(max_iter=1000)
    pipe = make_nap_pipeline(model, binned=True, final_estimator=logistic)
    assert pipe["auxiliary"] is logistic
    pipe.fit(X_train, y_train)
    Z = pipe[:-1].transform(X_test)
    assert_array_equal(pipe.predict(X_test), logistic.predict(Z))
    assert pipe.score(X_test, y_test) > 0.5
    assert clone(pipe).get_params()["auxiliary__max_iter"] == 1000
