"""The user's backbone is never changed (docs/errors.md, "The backbone").

After fit, transform, a whole pipeline, cross-validation and grid search, and
after an exception in the middle of a batch: its weights and buffers are
bitwise identical and the same objects, every module's train/eval flag and
every parameter's requires_grad flag are as they were, no gradient was
stored, and no hook is left on any module.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, cross_val_score
from torch import nn
from torch.nn.modules import module as torch_module

from sknap import ActivationExtractor, _device, make_nap_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")

N_FEATURES, N_CLASSES = 5, 3

_HOOK_DICTS = [
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
]
_GLOBAL_HOOKS = [
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
]


class _Net(nn.Module):
    """BatchNorm (running statistics), dropout, an in-place ReLU used twice."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(N_FEATURES, 8)
        self.bn = nn.BatchNorm1d(8)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 8)
        self.out = nn.Linear(8, N_CLASSES)

    def forward(self, x):
        x = self.drop(self.relu(self.bn(self.fc1(x))))
        return self.out(self.relu(self.fc2(x)))


@pytest.fixture
def net():
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.1, 0.1)
    # A mix of flags that must all survive: the root in train mode, one
    # submodule in eval mode, a frozen layer.
    net.train()
    net.drop.eval()
    net.fc1.weight.requires_grad_(False)
    return net


@pytest.fixture
def data(make_data):
    return make_data(60, N_FEATURES, N_CLASSES)


def _snapshot(module):
    tensors = {
        name: (t, t.detach().cpu().clone())
        for name, t in module.state_dict(keep_vars=True).items()
    }
    return {
        "tensors": tensors,
        "training": {name: m.training for name, m in module.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in module.named_parameters()},
        "grads": {n: p.grad for n, p in module.named_parameters()},
        "hooks": _hook_counts(module),
    }


def _hook_counts(module):
    counts = {
        (name, attr): len(getattr(m, attr, {}))
        for name, m in module.named_modules()
        for attr in _HOOK_DICTS
    }
    for attr in _GLOBAL_HOOKS:
        counts[("global", attr)] = len(getattr(torch_module, attr, {}))
    return counts


def _bits(t):
    return t.contiguous().view(torch.uint8) if t.is_floating_point() else t


def _assert_untouched(module, before):
    after = module.state_dict(keep_vars=True)
    assert list(after) == list(before["tensors"])
    for name, (obj, saved) in before["tensors"].items():
        # The same tensor objects, and bitwise the same values.
        assert after[name] is obj, name
        assert obj.dtype == saved.dtype and obj.device == saved.device, name
        assert torch.equal(_bits(obj.detach().cpu()), _bits(saved)), name
    assert {n: m.training for n, m in module.named_modules()} == before["training"]
    assert {n: p.requires_grad for n, p in module.named_parameters()} == before[
        "requires_grad"
    ]
    assert all(p.grad is None for p in module.parameters())
    assert _hook_counts(module) == before["hooks"]


def test_fit_and_transform(net, data):
    before = _snapshot(net)
    extractor = ActivationExtractor(net, layers=["relu", "bn"], batch_size=16)
    Z = extractor.fit(data[0]).transform(data[0])
    extractor.fit_transform(torch.from_numpy(data[0]))
    _assert_untouched(net, before)
    # BatchNorm used its running statistics, not the batch's: the same rows
    # come out whatever the batch size.
    Z1 = ActivationExtractor(net, layers=["relu", "bn"], batch_size=1)
    np.testing.assert_allclose(Z1.fit_transform(data[0]), Z, rtol=1e-5, atol=1e-6)
    _assert_untouched(net, before)


def test_transform_of_a_dataloader_and_other_dtypes(net, data):
    before = _snapshot(net)
    extractor = ActivationExtractor(net).fit(data[0])
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(data[0]))
    extractor.transform(torch.utils.data.DataLoader(dataset, batch_size=7))
    extractor.transform(data[0].astype(np.float64))
    extractor.transform(data[0].astype(np.float16))
    _assert_untouched(net, before)


def test_explicit_cpu_device_and_pickling(net, data):
    before = _snapshot(net)
    extractor = ActivationExtractor(net, device="cpu").fit(data[0])
    extractor.transform(data[0])
    pickle.loads(pickle.dumps(extractor)).transform(data[0])
    _assert_untouched(net, before)


def test_pipeline_fit_predict(net, data):
    before = _snapshot(net)
    pipe = make_nap_pipeline(net, max_iter=2, random_state=0).fit(*data)
    pipe.predict(data[0])
    pipe.predict_proba(data[0])
    _assert_untouched(net, before)


def test_cross_validation(net, data):
    before = _snapshot(net)
    scores = cross_val_score(
        make_nap_pipeline(net, max_iter=2, random_state=0), *data, cv=3
    )
    assert scores.shape == (3,)
    _assert_untouched(net, before)


def test_grid_search(net, data):
    before = _snapshot(net)
    grid = GridSearchCV(
        make_nap_pipeline(net, n_neurons=0.5, max_iter=2, random_state=0),
        {"entropy__n_bins": [2, 5]},
        cv=2,
    ).fit(*data)
    grid.predict(data[0])
    # Cloning shares the backbone rather than copying it.
    assert grid.best_estimator_.named_steps["extractor"].backbone is net
    _assert_untouched(net, before)


class _FailsOnMarker(nn.Module):
    """Wraps a net; a batch holding 999 raises, one holding 555 overflows."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        if (x == 999).any():
            raise RuntimeError("boom")
        if (x == 555).any():
            return self.net(x) * torch.inf
        return self.net(x)


@pytest.mark.parametrize(
    "failure, match",
    [
        ("backbone", "backbone failed on a batch"),
        ("nan", "Input X contains NaN"),
        ("overflow", "produced NaN or infinity"),
        ("memory", "needs"),
        ("shape", "samples of shape"),
    ],
)
def test_exception_in_the_middle_of_transform(net, data, failure, match, monkeypatch):
    wrapped = _FailsOnMarker(net)
    extractor = ActivationExtractor(wrapped, layers=["net.relu"], batch_size=8)
    extractor.fit(data[0])
    before = _snapshot(wrapped)
    X = torch.from_numpy(data[0].copy())
    if failure == "backbone":
        X[20, 0] = 999  # the third batch
    elif failure == "nan":
        X[20, 0] = float("nan")
    elif failure == "overflow":
        X[20, 0] = 555
    elif failure == "memory":
        monkeypatch.setattr(_device, "available_memory", lambda: 10)
    else:
        X = torch.utils.data.DataLoader(
            [*data[0][:16], *np.ones((8, N_FEATURES + 1), np.float32)], batch_size=8
        )
    with pytest.raises(ValueError, match=match):
        extractor.transform(X)
    _assert_untouched(wrapped, before)


def test_exception_in_a_hook(net, data):
    # A hooked module that returns a tuple makes the hook raise during fit.
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    class WithPair(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()
            self.net = net

        def forward(self, x):
            return self.net(self.pair(x)[0])

    backbone = WithPair()
    before = _snapshot(backbone)
    with pytest.raises(ValueError, match="returned tuple, not a tensor"):
        ActivationExtractor(backbone, layers="pair").fit(data[0])
    _assert_untouched(backbone, before)


def test_keyboard_interrupt_in_the_middle(net, data):
    # Even an interrupt (not an Exception) leaves no hook and restores modes.
    class Interrupt(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.net(x)

    backbone = Interrupt()
    extractor = ActivationExtractor(backbone, batch_size=8).fit(data[0])
    before = _snapshot(backbone)
    with pytest.raises(KeyboardInterrupt):
        extractor.transform(data[0])
    _assert_untouched(backbone, before)
