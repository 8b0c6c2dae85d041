"""Determinism (docs/errors.md, "Determinism").

The same random_state gives bitwise the same results in two runs, whatever
torch's and numpy's global seeds are, and a grid search gives the same
results with n_jobs=2 (processes, or threads) as with n_jobs=1.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sknap import (
    ActivationEntropy,
    ActivationProbabilityFeatures,
    AuxiliaryClassifier,
    make_nap_pipeline,
)

pytestmark = pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")

# The shape of the ``mlp`` fixture (tests/conftest.py).
N_FEATURES, N_CLASSES = 6, 3


@pytest.fixture
def data(make_data):
    return make_data(60, N_FEATURES, N_CLASSES)


def _pipeline(mlp, **params):
    defaults = dict(
        n_neurons=0.5,
        cv=3,
        hidden_layer_sizes=(6, 3),
        max_iter=3,
        random_state=7,
    )
    pipe = make_nap_pipeline(mlp, **{**defaults, **params})
    # Dropout draws random numbers too.
    return pipe.set_params(auxiliary__dropout=0.2)


def _outputs(pipe, X):
    return pipe.predict_proba(X), pipe[:-1].transform(X)


def test_same_random_state_same_results(mlp, data):
    X, y = data
    torch.manual_seed(1)
    np.random.seed(1)  # noqa: NPY002 (the legacy global generator, on purpose)
    first = _outputs(_pipeline(mlp).fit(X, y), X)
    # Other global seeds, and global generators already advanced.
    torch.manual_seed(2)
    np.random.seed(2)  # noqa: NPY002
    torch.rand(5)
    np.random.rand(5)  # noqa: NPY002
    second = _outputs(_pipeline(mlp).fit(X, y), X)
    for a, b in zip(first, second, strict=True):
        assert_array_equal(a, b)


def test_different_random_state_differs(mlp, data):
    X, y = data
    a = _pipeline(mlp, random_state=7).fit(X, y).predict_proba(X)
    b = _pipeline(mlp, random_state=8).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, b)


def test_fit_leaves_the_global_generators_alone(mlp, data):
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()[1].copy()  # noqa: NPY002
    _pipeline(mlp).fit(*data)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert_array_equal(np.random.get_state()[1], numpy_state)  # noqa: NPY002


def test_steps_without_randomness_are_deterministic(rng):
    A = np.maximum(rng.normal(size=(50, 7)), 0)
    y = np.arange(50) % 2
    first = ActivationEntropy(n_outputs=0).fit(A, y)
    second = ActivationEntropy(n_outputs=0).fit(A, y)
    assert_array_equal(first.neuron_entropy_, second.neuron_entropy_)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    features = ActivationProbabilityFeatures(n_outputs=0, cv=cv)
    assert_array_equal(features.fit_transform(A, y), features.fit_transform(A, y))


def test_auxiliary_classifier_with_a_random_state_instance(data):
    X, y = data
    a = AuxiliaryClassifier(max_iter=2, random_state=np.random.RandomState(3))
    b = AuxiliaryClassifier(max_iter=2, random_state=np.random.RandomState(3))
    assert_array_equal(a.fit(X, y).predict_proba(X), b.fit(X, y).predict_proba(X))


def _grid(mlp, n_jobs):
    return GridSearchCV(
        _pipeline(mlp),
        {"entropy__n_bins": [2, 8], "probabilities__alpha": [0.0, 1.0]},
        cv=2,
        n_jobs=n_jobs,
    )


def _assert_same_search(a, b, X):
    assert a.best_params_ == b.best_params_
    for key in ("mean_test_score", "std_test_score", "rank_test_score"):
        assert_array_equal(a.cv_results_[key], b.cv_results_[key])
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.slow  # starts two worker processes that import torch
def test_grid_search_n_jobs_2_processes_equals_n_jobs_1(mlp, data):
    X, y = data
    serial = _grid(mlp, n_jobs=1).fit(X, y)
    parallel = _grid(mlp, n_jobs=2).fit(X, y)
    _assert_same_search(serial, parallel, X)


def test_grid_search_n_jobs_2_threads_equals_n_jobs_1(mlp, data):
    X, y = data
    serial = _grid(mlp, n_jobs=1).fit(X, y)
    with parallel_backend("threading", n_jobs=2):
        threaded = _grid(mlp, n_jobs=2).fit(X, y)
    _assert_same_search(serial, threaded, X)


def test_auxiliary_fits_in_threads_do_not_reseed_each_other(make_data):
    # Threads share torch's global generator, from which initialisation and
    # dropout draw; without a lock around a fit, concurrent fits reseed each
    # other's stream and every result below differs from the serial one.
    X, y = make_data(120, N_FEATURES, N_CLASSES)

    def fit(seed):
        clf = AuxiliaryClassifier((6, 3), dropout=0.2, max_iter=3, random_state=seed)
        return clf.fit(X, y).predict_proba(X)

    serial = [fit(seed) for seed in range(3)]
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(fit, range(3)))
    for a, b in zip(serial, threaded, strict=True):
        assert_array_equal(a, b)
