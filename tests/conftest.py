import numpy as np
import pytest
import torch

from sknap.toy import make_mlp


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)


@pytest.fixture
def make_data(rng):
    """Factory of ``(X, y)``: standard normal float32 rows, labels cycling.

    ``make_data(n_samples, n_features, n_classes)`` draws ``X`` from ``rng``
    and sets ``y = [0, 1, ..., n_classes - 1, 0, 1, ...]``, so every class
    has ``n_samples // n_classes`` samples or one more.
    """

    def make(n_samples, n_features, n_classes):
        X = rng.normal(size=(n_samples, n_features)).astype(np.float32)
        y = np.arange(n_samples) % n_classes
        return X, y

    return make


@pytest.fixture
def mlp():
    """A fresh MLP: 6 inputs, two hidden ReLU layers of 8, 3 outputs."""
    return make_mlp(6, 3, hidden=(8, 8), random_state=0)
