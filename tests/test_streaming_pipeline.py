"""make_nap_pipeline(streaming=True): batches between the steps, no matrix."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from sknap import ActivationMemoryError, _device, make_nap_pipeline
from sknap.streaming import ActivationBatches
from sknap.toy import make_mlp

pytestmark = pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")


@pytest.fixture
def problem(make_data):
    X, y = make_data(150, 6, 3)
    return X, y, make_mlp(6, 3, hidden=(16, 8), random_state=0)


@pytest.mark.parametrize("n_neurons", [None, 0.5])
@pytest.mark.parametrize("binned", [False, True])
def test_streaming_gives_the_in_memory_predictions(problem, n_neurons, binned):
    X, y, model = problem
    params = dict(n_neurons=n_neurons, binned=binned, device="cpu", random_state=0)
    plain = make_nap_pipeline(model, **params).fit(X, y)
    streamed = make_nap_pipeline(model, streaming=True, **params).fit(X, y)
    assert_array_equal(streamed.predict(X), plain.predict(X))
    assert_allclose(streamed.predict_proba(X), plain.predict_proba(X), rtol=1e-6)
    assert_allclose(
        streamed["entropy"].neuron_entropy_, plain["entropy"].neuron_entropy_
    )
    assert isinstance(streamed["extractor"].transform(X), ActivationBatches)


def test_streaming_on_a_dataset_never_builds_the_matrix(make_data, monkeypatch):
    X, y = make_data(2000, 6, 3)
    model = make_mlp(6, 3, hidden=(16, 8), random_state=0)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    plain = make_nap_pipeline(model, device="cpu", random_state=0).fit(X, y)
    expected = plain.predict(X)
    # Room for the counts (about 20 KB), not for the matrix (216 KB).
    monkeypatch.setattr(_device, "available_memory", lambda: 100_000)
    with pytest.raises(ActivationMemoryError, match="streaming=True"):
        make_nap_pipeline(model, device="cpu", random_state=0).fit(dataset, y)
    pipe = make_nap_pipeline(model, streaming=True, device="cpu", random_state=0)
    assert_array_equal(pipe.fit(dataset, y).predict(dataset), expected)


def test_streaming_refuses_cross_fitting(problem):
    X, y, model = problem
    pipe = make_nap_pipeline(model, streaming=True, cv=3, device="cpu")
    with pytest.raises(ValueError, match="Use cv=None when streaming"):
        pipe.fit(X, y)


def test_batches_with_other_labels_are_refused(problem):
    X, y, model = problem
    pipe = make_nap_pipeline(model, streaming=True, device="cpu")
    batches = pipe["extractor"].fit(X).batches(X, y)
    with pytest.raises(ValueError, match="labels must come with the batches"):
        pipe["entropy"].fit(batches, np.roll(y, 1))
