"""Datasets in cross-validation and grid search (sknap.data)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from torch.utils.data import Dataset, TensorDataset

from sknap import make_nap_pipeline
from sknap.data import IndexedDataset
from sknap.toy import make_mlp

pytestmark = pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")


class _Lazy(Dataset):
    """Items made when asked for, counted: nothing is read up front."""

    def __init__(self, X, y):
        self.X, self.y, self.reads = X, y, 0

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.reads += 1
        return torch.from_numpy(self.X[i]), int(self.y[i])


@pytest.fixture
def problem(make_data):
    X, y = make_data(90, 6, 3)
    return X, y, make_mlp(6, 3, hidden=(8, 8), random_state=0)


def _pipe(model):
    return make_nap_pipeline(model, max_iter=3, device="cpu", random_state=0)


def test_views_index_like_arrays():
    dataset = TensorDataset(torch.arange(10)[:, None])
    view = IndexedDataset(dataset)
    part = view[np.array([7, 2, 5])]
    assert part.shape == (3,) and len(part) == 3
    assert int(part[0][0]) == 7
    assert int(part[np.array([True, False, True])][1][0]) == 5
    assert int(view[(np.array([4]), Ellipsis)][0][0]) == 4
    assert [int(x[0]) for x in part[1:]] == [2, 5]


def test_cross_validation_on_a_dataset_equals_the_arrays(problem):
    X, y, model = problem
    cv = KFold(3, shuffle=True, random_state=0)
    lazy = _Lazy(X, y)
    on_data = cross_val_score(_pipe(model), IndexedDataset(lazy), y, cv=cv)
    on_arrays = cross_val_score(_pipe(model), X, y, cv=cv)
    assert_allclose(on_data, on_arrays, atol=1e-12)
    # Read batch by batch when the backbone runs: no list of every item.
    assert lazy.reads > 0


def test_grid_search_on_a_dataset(problem):
    X, y, model = problem
    grid = GridSearchCV(_pipe(model), {"entropy__n_bins": [2, 5]}, cv=3)
    grid.fit(IndexedDataset(_Lazy(X, y)), y)
    assert grid.best_params_["entropy__n_bins"] in (2, 5)
    assert grid.predict(IndexedDataset(_Lazy(X, y))).shape == (len(X),)


def test_labels_of_a_fold_are_checked_against_y(problem):
    X, y, model = problem
    with pytest.raises(ValueError, match="labels of the Dataset differ from y"):
        cross_val_score(_pipe(model), IndexedDataset(_Lazy(X, y)), y[::-1], cv=3)


def test_skorch_slice_dataset_is_accepted(problem):
    skorch = pytest.importorskip("skorch.helper")
    X, y, model = problem
    cv = KFold(3)
    sliced = skorch.SliceDataset(_Lazy(X, y), idx=0)
    scores = cross_val_score(_pipe(model), sliced, y, cv=cv)
    assert_array_equal(scores, cross_val_score(_pipe(model), X, y, cv=cv))


def test_an_iterable_dataset_cannot_be_indexed():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(range(3))

    with pytest.raises(TypeError, match="map-style Dataset"):
        IndexedDataset(Stream())
