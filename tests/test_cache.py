"""Activation reuse: the cache keyed on weights, layers, reduction and data."""

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sknap import ActivationExtractor, _device, make_nap_pipeline
from sknap._cache import clear_memory_cache, fingerprint_module
from sknap.toy import make_mlp

pytestmark = pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")


@pytest.fixture(autouse=True)
def _empty_cache():
    clear_memory_cache()
    yield
    clear_memory_cache()


class Counter:
    """Forward passes (one per batch) of the extractor, and their rows: it
    counts the batches sknap copies to the device, one per forward pass.
    (A hook or a counter inside the model would change its cache key.)"""

    def __init__(self, monkeypatch):
        self.passes = []
        to_device = _device.to_device

        def counted(batch, *args, **kwargs):
            self.passes.append(batch.shape[0])
            return to_device(batch, *args, **kwargs)

        monkeypatch.setattr(_device, "to_device", counted)

    def reset(self):
        self.passes.clear()

    @property
    def calls(self):
        return len(self.passes)

    @property
    def rows(self):
        return sum(self.passes)


@pytest.fixture
def data(rng):
    X = rng.normal(size=(200, 12)).astype(np.float32)
    y = rng.integers(0, 3, size=200)
    return X, y


def _search(model, X, y, n_candidates, cache, n_jobs=None):
    pipe = make_nap_pipeline(
        model, n_neurons=0.5, max_iter=1, device="cpu", random_state=0
    )
    pipe.set_params(extractor__cache=cache, extractor__batch_size=64)
    grid = {"entropy__n_bins": [2, 4, 8, 16][:n_candidates]}
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    return GridSearchCV(pipe, grid, cv=cv, n_jobs=n_jobs).fit(X, y)


def test_grid_search_forward_passes_do_not_grow_with_candidates(data, monkeypatch):
    X, y = data
    model = make_mlp(12, 3, hidden=(16, 8), random_state=0)
    counter = Counter(monkeypatch)
    calls, rows = [], []
    for n_candidates in (1, 4):
        clear_memory_cache()
        counter.reset()
        _search(model, X, y, n_candidates, cache="memory")
        calls.append(counter.calls)
        rows.append(counter.rows)
    # Each extra candidate only fits its extractor: one pass over 2 samples
    # per fold (the layout is not cached: nothing but arrays is).
    assert calls[1] - calls[0] == 3 * 5
    assert rows[1] - rows[0] == 3 * 5 * 2
    # Without the cache every candidate runs the backbone again.
    counter.reset()
    _search(model, X, y, 4, cache=None)
    assert counter.rows > 3 * rows[1]


def test_cached_search_gives_the_same_scores(data, tmp_path):
    X, y = data
    model = make_mlp(12, 3, hidden=(16, 8), random_state=0)
    plain = _search(model, X, y, 4, cache=None)
    in_memory = _search(model, X, y, 4, cache="memory")
    on_disk = _search(model, X, y, 4, cache=tmp_path / "cache")
    for search in (in_memory, on_disk):
        assert_array_equal(
            search.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"]
        )
    # One transform per fold (train and test) plus the refit, and fit layouts.
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 5 * 2 + 1
    assert not list((tmp_path / "cache").glob("*.tmp"))


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_grid_search_in_parallel_with_a_disk_cache(data, tmp_path, backend):
    X, y = data
    model = make_mlp(12, 3, hidden=(16, 8), random_state=0)
    plain = _search(model, X, y, 2, cache=None)
    with parallel_backend(backend, n_jobs=2):
        parallel = _search(model, X, y, 2, cache=tmp_path, n_jobs=2)
    assert_array_equal(
        parallel.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"]
    )
    assert parallel.best_params_ == plain.best_params_


def test_cache_key_follows_weights_layers_and_data(data, monkeypatch):
    X, _ = data
    model = make_mlp(12, 3, hidden=(16, 8), random_state=0)
    counter = Counter(monkeypatch)
    extractor = ActivationExtractor(model, device="cpu", cache="memory").fit(X)
    first = extractor.transform(X)
    counter.reset()
    again = extractor.transform(X)
    assert counter.calls == 0
    assert_array_equal(again, first)
    again[:] = 0  # a copy: the cache is not changed through it
    assert_array_equal(extractor.transform(X), first)
    # Other data, other layers, changed weights (even through .data): recomputed.
    extractor.transform(X[:50])
    assert counter.calls == 1
    other = ActivationExtractor(model, layers="relu1", device="cpu", cache="memory")
    other.fit(X).transform(X)
    assert counter.calls == 3  # the fit's probe and one batch
    with torch.no_grad():
        model.fc1.weight.data[0, 0] += 1.0
    counter.reset()
    changed = extractor.transform(X)
    assert counter.calls == 1
    assert not np.array_equal(changed, first)


def test_cache_key_holds_the_column_layout(data, monkeypatch):
    # An entry is for this extractor's columns (blocks, widths), not only for
    # as many columns: another layout misses, even with the same backbone,
    # parameters and data, and the pass then finds that the widths differ
    # (a hit would have returned the stored columns as if they were these).
    import dataclasses

    X, _ = data
    model = make_mlp(12, 3, hidden=(16, 8), random_state=0)
    counter = Counter(monkeypatch)
    extractor = ActivationExtractor(model, device="cpu", cache="memory").fit(X)
    extractor.transform(X)
    layout = extractor.layout_
    widths = (layout.widths[0] - 1, layout.widths[1] + 1)  # the same total
    extractor.layout_ = dataclasses.replace(layout, widths=widths)
    counter.reset()
    with pytest.raises(ValueError, match="columns where fit saw"):
        extractor.transform(X)
    assert counter.calls == 1
    extractor.layout_ = layout
    counter.reset()
    extractor.transform(X)
    assert counter.calls == 0


def test_fingerprint_is_stable_across_copies():
    import copy
    import pickle

    model = make_mlp(4, 3, hidden=(5,), random_state=0)
    digest = fingerprint_module(model)
    assert fingerprint_module(copy.deepcopy(model)) == digest
    assert fingerprint_module(pickle.loads(pickle.dumps(model))) == digest
    assert fingerprint_module(make_mlp(4, 3, hidden=(5,), random_state=1)) != digest


def test_datasets_are_not_cached(data, tmp_path):
    X, _ = data
    model = make_mlp(12, 3, hidden=(16, 8), random_state=0)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(X))
    extractor = ActivationExtractor(model, device="cpu", cache=tmp_path).fit(dataset)
    assert_array_equal(extractor.transform(dataset), extractor.transform(X))
    assert len(list(tmp_path.glob("*.npy"))) == 1  # the array only


def test_a_damaged_file_is_a_miss(data, tmp_path):
    X, _ = data
    model = make_mlp(12, 3, hidden=(16, 8), random_state=0)
    extractor = ActivationExtractor(model, device="cpu", cache=tmp_path).fit(X)
    first = extractor.transform(X)
    (path,) = tmp_path.glob("*.npy")
    path.write_bytes(path.read_bytes()[:100])
    assert_array_equal(extractor.transform(X), first)
