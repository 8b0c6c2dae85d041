"""Saving and loading a fitted pipeline (docs/errors.md, "Saving and loading").

Round trips through pickle, joblib and torch.save give identical predictions.
A pipeline whose tensors were on CUDA must load on a CPU-only machine. No GPU
is needed to test that: what differs in a pickle made on a GPU is the location
tag torch writes beside each tensor's storage ("cuda:0" instead of "cpu"), and
torch.serialization.location_tag is what writes it. The tests below tag the
storages of the backbone and of the auxiliary network as CUDA, make those
tensors report a CUDA device, and check that

* a plain pickle of such a module does not load here (so the simulation
  reproduces the real failure), and
* a pickle of a sknap pipeline does, because ``__getstate__`` of
  ActivationExtractor and AuxiliaryClassifier stores CPU copies
  (sknap._device.cpu_copy_if_cuda).
"""

import contextlib
import io
import pickle

import joblib
import pytest
import torch
import torch.serialization
from numpy.testing import assert_array_equal

from sknap import ActivationExtractor, make_nap_pipeline
from sknap.toy import make_mlp

pytestmark = pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")

# The shape of the ``mlp`` fixture (tests/conftest.py).
N_FEATURES, N_CLASSES = 6, 3


@pytest.fixture
def data(make_data):
    return make_data(45, N_FEATURES, N_CLASSES)


@pytest.fixture
def pipe(mlp, data):
    return make_nap_pipeline(mlp, n_neurons=0.5, max_iter=3, random_state=0).fit(*data)


def _assert_same_predictions(loaded, pipe, X):
    assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    assert_array_equal(loaded.predict(X), pipe.predict(X))
    for name in ("extractor", "entropy", "probabilities"):
        assert_array_equal(
            loaded[: [n for n, _ in pipe.steps].index(name) + 1].transform(X),
            pipe[: [n for n, _ in pipe.steps].index(name) + 1].transform(X),
        )


def _storages(*modules):
    return {
        t.untyped_storage().data_ptr()
        for module in modules
        for t in [*module.parameters(), *module.buffers()]
    }


@contextlib.contextmanager
def _as_if_on_cuda(modules, monkeypatch):
    """Make the tensors of ``modules`` look as if they were on CUDA.

    Every tensor reports device cuda:0 (torch.Tensor.device is patched), and
    torch writes the location tag "cuda:0" for the storages of ``modules``,
    as it does for a model on a GPU. Other storages, such as copies made
    while pickling, keep their real tag "cpu".
    """
    cuda = _storages(*modules)
    real_tag = torch.serialization.location_tag

    def location_tag(storage):
        if storage.data_ptr() in cuda:
            return "cuda:0"
        return real_tag(storage)

    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", location_tag)
        patch.setattr(
            torch.Tensor, "device", property(lambda self: torch.device("cuda", 0))
        )
        yield


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


# --- round trips ----------------------------------------------------------------


def test_pickle_round_trip(pipe, data):
    loaded = pickle.loads(pickle.dumps(pipe))
    _assert_same_predictions(loaded, pipe, data[0])
    # The loaded pipeline holds its own backbone.
    assert (
        loaded.named_steps["extractor"].backbone
        is not pipe.named_steps["extractor"].backbone
    )


@pytest.mark.parametrize("compress", [0, 3])
def test_joblib_round_trip(pipe, data, tmp_path, compress):
    path = tmp_path / "pipe.joblib"
    joblib.dump(pipe, path, compress=compress)
    _assert_same_predictions(joblib.load(path), pipe, data[0])


def test_torch_save_round_trip(pipe, data, tmp_path):
    path = tmp_path / "pipe.pt"
    torch.save(pipe, path)
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    _assert_same_predictions(loaded, pipe, data[0])


def test_weights_only_refuses_a_pipeline(pipe, tmp_path):
    # weights_only=True loads tensors and plain containers only: the safe way
    # to load a backbone's state_dict, but it cannot rebuild estimators.
    path = tmp_path / "pipe.pt"
    torch.save(pipe, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path, weights_only=True)


def test_backbone_state_dict_with_weights_only(mlp, data, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(mlp.state_dict(), path)
    other = make_mlp(N_FEATURES, N_CLASSES, hidden=(8, 8), random_state=1)
    other.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    X = data[0]
    assert_array_equal(
        ActivationExtractor(other).fit_transform(X),
        ActivationExtractor(mlp).fit_transform(X),
    )


def test_unfitted_pipeline_round_trip(mlp, data):
    unfitted = make_nap_pipeline(mlp, max_iter=3, random_state=0)
    loaded = pickle.loads(pickle.dumps(unfitted))
    assert_array_equal(
        loaded.fit(*data).predict_proba(data[0]),
        unfitted.fit(*data).predict_proba(data[0]),
    )


def test_pickling_leaves_the_pipeline_as_it_was(pipe, mlp, data):
    expected = pipe.predict_proba(data[0])
    pickle.dumps(pipe)
    assert pipe.named_steps["extractor"].backbone is mlp
    assert_array_equal(pipe.predict_proba(data[0]), expected)


# --- a pipeline from a GPU machine on a CPU-only one ----------------------------


def test_simulation_reproduces_the_cuda_failure(mlp, monkeypatch, cpu_only):
    # A module pickled with CUDA-tagged storages, without sknap's protection,
    # fails to load on a CPU-only machine: the simulation is faithful.
    with _as_if_on_cuda([mlp], monkeypatch):
        blob = pickle.dumps(mlp)
    with pytest.raises(RuntimeError, match="CUDA device but torch.cuda.is_avail"):
        pickle.loads(blob)


def test_cuda_pipeline_loads_on_a_cpu_only_machine(pipe, data, monkeypatch, cpu_only):
    expected = pipe.predict_proba(data[0])
    backbone = pipe.named_steps["extractor"].backbone
    aux_model = pipe.named_steps["auxiliary"].model_
    with _as_if_on_cuda([backbone, aux_model], monkeypatch):
        blob = pickle.dumps(pipe)
        joblib_file = io.BytesIO()
        joblib.dump(pipe, joblib_file)
    # The originals were not replaced by the copies made for the pickle.
    assert pipe.named_steps["extractor"].backbone is backbone
    assert pipe.named_steps["auxiliary"].model_ is aux_model
    for loaded in (pickle.loads(blob), joblib.load(io.BytesIO(joblib_file.getvalue()))):
        for module in (
            loaded.named_steps["extractor"].backbone,
            loaded.named_steps["auxiliary"].model_,
        ):
            assert all(p.device.type == "cpu" for p in module.parameters())
        assert_array_equal(loaded.predict_proba(data[0]), expected)


def test_torch_load_map_location_for_other_cuda_files(mlp, data, tmp_path, monkeypatch):
    # A file that does hold CUDA tensors (say a user's own object around the
    # pipeline) loads with torch.load(map_location="cpu").
    pipe = make_nap_pipeline(mlp, max_iter=2, random_state=0).fit(*data)
    expected = pipe.predict_proba(data[0])
    path = tmp_path / "cuda.pt"
    real_tag = torch.serialization.location_tag
    monkeypatch.setattr(torch.serialization, "location_tag", lambda s: "cuda:0")
    torch.save({"pipeline": pipe}, path)
    monkeypatch.setattr(torch.serialization, "location_tag", real_tag)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="map_location"):
        torch.load(path, weights_only=False)
    loaded = torch.load(path, map_location="cpu", weights_only=False)["pipeline"]
    assert_array_equal(loaded.predict_proba(data[0]), expected)


def test_device_cuda_saved_in_the_parameters(pipe, data, cpu_only):
    # A pipeline set to device="cuda" on a GPU machine loads here; using it
    # says how to switch, and switching works.
    pipe.set_params(extractor__device="cuda", auxiliary__device="cuda")
    loaded = pickle.loads(pickle.dumps(pipe))
    with pytest.raises(ValueError, match="CUDA is not available.*device='auto'"):
        loaded.predict(data[0])
    loaded.set_params(extractor__device="auto", auxiliary__device="auto")
    pipe.set_params(extractor__device="cpu", auxiliary__device="cpu")
    assert_array_equal(loaded.predict_proba(data[0]), pipe.predict_proba(data[0]))
