"""Tests of ActivationExtractor on hand-built nets and a torchvision ResNet-18."""

import collections
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from torch import nn

from sknap import ActivationExtractor
from sknap.toy import make_mlp

torchvision = pytest.importorskip("torchvision")
from torchvision.models.resnet import BasicBlock  # noqa: E402

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)


RESNET_WIDTHS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
RESNET_RELU_BLOCKS = ["relu"] + [
    f"layer{i}.{j}.relu#{k}" for i in range(1, 5) for j in range(2) for k in range(2)
]


# -- fixtures and small nets ------------------------------------------------


@pytest.fixture(scope="module")
def resnet():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet18(weights=None, num_classes=10)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def resnet_default(resnet, images):
    """The default extractor (every ReLU call, channel means), fitted, and its Z."""
    extractor = ActivationExtractor(resnet).fit(images)
    return extractor, extractor.transform(images)


@pytest.fixture(scope="module")
def resnet_flat(resnet, images):
    extractor = ActivationExtractor(resnet, reduce="flatten").fit(images)
    return extractor, extractor.transform(images)


def _tiny_conv():
    """Conv2d(1, 2, 1) with channel 0 = x and channel 1 = 0.5 - x, then ReLU."""
    net = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(1, 2, kernel_size=1),
            relu=nn.ReLU(),
            flat=nn.Flatten(),
            out=nn.Linear(8, 3),
        )
    )
    with torch.no_grad():
        net.conv.weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
        net.conv.bias.copy_(torch.tensor([0.0, 0.5]))
    return net


# One 2x2 image, [[-1, 2], [0.25, 0.5]]. After the ReLU, channel 0 is
# [0, 2, 0.25, 0.5] and channel 1 is [1.5, 0, 0.25, 0], so by hand:
TINY_X = np.array([[[[-1.0, 2.0], [0.25, 0.5]]]], dtype=np.float32)
TINY_EXPECTED = {
    "mean": [[2.75 / 4, 1.75 / 4]],
    "max": [[2.0, 1.5]],
    "active_fraction": [[3 / 4, 2 / 4]],
    "flatten": [[0.0, 2.0, 0.25, 0.5, 1.5, 0.0, 0.25, 0.0]],
}


def _small_cnn():
    """(3, 8, 8) images to 3 logits, with a BatchNorm and an in-place ReLU."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 4, kernel_size=3, padding=1),
            bn=nn.BatchNorm2d(4),
            relu=nn.ReLU(inplace=True),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(4, 3),
        )
    )


class FunctionalReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        return self.out(torch.nn.functional.relu(self.fc1(x)))


class Boom(nn.Module):
    """Identity, or a RuntimeError mid-forward once ``armed``."""

    armed = False

    def forward(self, x):
        if self.armed:
            raise RuntimeError("boom")
        return x


class ReturnsTuple(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = make_mlp(4, 3, hidden=(5,), random_state=0)

    def forward(self, x):
        return self.net(x), x.sum(1)


class ReturnsDict(ReturnsTuple):
    def forward(self, x):
        return {"logits": self.net(x), "sum": x.sum(1)}


class TupleInside(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = ReturnsTuple()

    def forward(self, x):
        return self.inner(x)[0]


Output = collections.namedtuple("Output", ["logits", "sum"])


class ReturnsNamedTuple(ReturnsTuple):
    def forward(self, x):
        return Output(self.net(x), x.sum(1))


def _no_hooks(module):
    return all(
        not m._forward_hooks and not m._forward_pre_hooks for m in module.modules()
    )


def _flags(module):
    return [(name, m.training) for name, m in module.named_modules()]


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _assert_same_state(module, state):
    now = module.state_dict()
    assert now.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(now[key], value), key


# -- ResNet-18: layers and column layout -----------------------------------


def test_resnet_default_layers_are_every_relu_call(resnet_default):
    extractor, Z = resnet_default

    # BasicBlock calls its one `relu` twice: one block per call.
    assert extractor.layer_names_ == RESNET_RELU_BLOCKS
    for name in RESNET_RELU_BLOCKS[1:]:
        width = RESNET_WIDTHS[name.split(".")[0]]
        assert extractor.layer_slices_[name].stop - extractor.layer_slices_[
            name
        ].start == (width)
    n_neurons = 64 + sum(4 * w for w in RESNET_WIDTHS.values())
    assert extractor.n_neurons_ == n_neurons
    assert extractor.n_outputs_ == 10
    assert Z.shape == (2, n_neurons + 10)
    assert Z.dtype == np.float32

    names = extractor.get_feature_names_out()
    assert len(names) == Z.shape[1]
    assert names[0] == "relu__0"
    assert "layer1.0.relu#0__0" in names and "layer1.0.relu#1__63" in names
    assert names[-10:].tolist() == [f"proba_{c}" for c in range(10)]
    proba = Z[:, extractor.layer_slices_["proba"]]
    assert extractor.layer_slices_["proba"] == slice(n_neurons, n_neurons + 10)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    # ReLU outputs, reduced by the mean, are >= 0.
    assert (Z[:, :n_neurons] >= 0).all()


def test_resnet_probabilities_are_softmax_of_logits(resnet, images, resnet_default):
    _, Z = resnet_default
    resnet.eval()
    with torch.no_grad():
        expected = torch.softmax(resnet(torch.as_tensor(images)), dim=1).numpy()
    assert_allclose(Z[:, -10:], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduce", ["mean", "max", "active_fraction"])
def test_resnet_channel_reductions_match_flatten(resnet, images, resnet_flat, reduce):
    flat, Zf = resnet_flat
    # Stem ReLU on a 32x32 input: 64 channels at 16x16; layer4 is 1x1.
    assert flat.layer_shapes_["relu"] == (64, 16, 16)
    assert flat.layer_shapes_["layer1.0.relu#1"] == (64, 8, 8)
    assert flat.layer_shapes_["layer4.1.relu#1"] == (512, 1, 1)
    assert flat.n_neurons_ == sum(int(np.prod(s)) for s in flat.layer_shapes_.values())
    assert Zf.shape[1] == flat.n_neurons_ + 10
    assert flat.get_feature_names_out()[1] == "relu__0_0_1"

    per_channel = ActivationExtractor(resnet, reduce=reduce).fit(images)
    Zc = per_channel.transform(images)
    assert Zc.shape == (2, per_channel.n_neurons_ + 10)
    for block in RESNET_RELU_BLOCKS:
        C, H, W = flat.layer_shapes_[block]
        maps = Zf[:, flat.layer_slices_[block]].reshape(2, C, H * W)
        expected = {
            "mean": maps.mean(axis=2),
            "max": maps.max(axis=2),
            "active_fraction": (maps > 0).mean(axis=2),
        }[reduce]
        assert_allclose(
            Zc[:, per_channel.layer_slices_[block]], expected, rtol=1e-5, atol=1e-6
        )


def test_resnet_callable_reduce(resnet, images, resnet_flat):
    def first_three_maxima(t):
        return t.amax(dim=(2, 3))[:, :3]

    extractor = ActivationExtractor(resnet, reduce=first_three_maxima).fit(images)
    Z = extractor.transform(images)
    assert extractor.n_neurons_ == 3 * len(RESNET_RELU_BLOCKS)
    assert Z.shape == (2, extractor.n_neurons_ + 10)
    assert extractor.get_feature_names_out()[:4].tolist() == [
        "relu__0",
        "relu__1",
        "relu__2",
        "layer1.0.relu#0__0",
    ]
    flat, Zf = resnet_flat
    C, H, W = flat.layer_shapes_["layer2.1.relu#0"]
    maps = Zf[:, flat.layer_slices_["layer2.1.relu#0"]].reshape(2, C, H * W)
    assert_allclose(
        Z[:, extractor.layer_slices_["layer2.1.relu#0"]],
        maps[:, :3].max(axis=2),
        rtol=1e-6,
    )


def test_resnet_select_one_call_of_a_reused_relu(resnet, images, resnet_default):
    all_blocks, Z = resnet_default
    one = ActivationExtractor(resnet, layers="layer1.0.relu#1").fit(images)
    assert one.layer_names_ == ["layer1.0.relu#1"]
    assert one.n_neurons_ == 64
    assert one.get_feature_names_out()[0] == "layer1.0.relu#1__0"
    assert_allclose(
        one.transform(images)[:, :64],
        Z[:, all_blocks.layer_slices_["layer1.0.relu#1"]],
        rtol=1e-6,
    )
    # A call filter combined with a plain name and a type keeps all of them.
    mixed = ActivationExtractor(resnet, layers=["layer1.0.relu#1", "fc"]).fit(images)
    assert mixed.layer_names_ == ["layer1.0.relu#1", "fc"]
    mixed = ActivationExtractor(resnet, layers=["layer2.1.relu#0", nn.Linear]).fit(
        images
    )
    assert mixed.layer_names_ == ["layer2.1.relu#0", "fc"]


def test_resnet_call_index_out_of_range(resnet, images):
    with pytest.raises(ValueError, match=r"runs 2 time\(s\).*\[0, 1\]"):
        ActivationExtractor(resnet, layers="layer1.0.relu#2").fit(images)


def test_resnet_select_by_type(resnet, images, resnet_default):
    convs = ActivationExtractor(resnet, layers=nn.Conv2d).fit(images)
    conv_names = [n for n, m in resnet.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(conv_names) == 20
    # Ordered by first call: a block's downsample runs after its conv2.
    assert convs.layer_names_ == conv_names
    Z = convs.transform(images)
    assert Z.shape == (2, convs.n_neurons_ + 10)
    # A conv output is not rectified: the mean of a channel can be negative.
    assert (Z[:, : convs.n_neurons_] < 0).any()

    blocks = ActivationExtractor(resnet, layers=BasicBlock).fit(images)
    assert blocks.layer_names_ == [f"layer{i}.{j}" for i in range(1, 5) for j in (0, 1)]
    assert blocks.layer_shapes_["layer4.1"] == (512, 1, 1)
    # A BasicBlock returns the output of its second relu call.
    relus, Z = resnet_default
    assert_allclose(
        blocks.transform(images)[:, blocks.layer_slices_["layer3.0"]],
        Z[:, relus.layer_slices_["layer3.0.relu#1"]],
        rtol=1e-6,
    )


def test_mistyped_layer_suggests_close_match(resnet, images):
    with pytest.raises(ValueError, match=r"Did you mean 'layer1\.0\.relu'"):
        ActivationExtractor(resnet, layers="layer1.0.rleu").fit(images)
    with pytest.raises(ValueError, match=r"Did you mean 'layer1\.0\.relu'"):
        ActivationExtractor(resnet, layers=["fc", "layer1.0.rlu#1"]).fit(images)
    with pytest.raises(ValueError, match="call index"):
        ActivationExtractor(resnet, layers="layer1.0.relu#last").fit(images)


def test_functional_relu_backbone_gives_helpful_error(rng):
    net = FunctionalReLU()
    X = rng.normal(size=(3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"has none.*functional\.relu.*fc1"):
        ActivationExtractor(net).fit(X)
    # Naming the layer works.
    assert ActivationExtractor(net, layers="fc1").fit_transform(X).shape == (3, 8)
    with pytest.raises(ValueError, match="No module of type ReLU"):
        ActivationExtractor(net, layers=nn.ReLU).fit(X)


def test_module_names_of_a_resnet(resnet):
    names = [n for n, _ in resnet.named_modules() if n]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert "layer1.0.relu" in names and "" not in names


# -- reductions computed by hand -------------------------------------------


@pytest.mark.parametrize("reduce", sorted(TINY_EXPECTED))
def test_tiny_conv_reductions_by_hand(reduce):
    extractor = ActivationExtractor(_tiny_conv(), reduce=reduce).fit(TINY_X)
    Z = extractor.transform(TINY_X)
    expected = np.asarray(TINY_EXPECTED[reduce], dtype=np.float32)
    assert extractor.layer_names_ == ["relu"]
    assert extractor.layer_shapes_["relu"] == (2, 2, 2)
    assert Z.shape == (1, expected.shape[1] + 3)
    assert_allclose(Z[:, : expected.shape[1]], expected, rtol=1e-6)
    names = extractor.get_feature_names_out()
    if reduce == "flatten":
        assert names[:8].tolist() == [
            f"relu__{c}_{i}_{j}" for c in (0, 1) for i in (0, 1) for j in (0, 1)
        ]
    else:
        assert names[:2].tolist() == ["relu__0", "relu__1"]


def test_tiny_conv_callable_reduce():
    def channel_sum(t):
        return t.sum(dim=(2, 3))

    extractor = ActivationExtractor(_tiny_conv(), reduce=channel_sum).fit(TINY_X)
    assert_allclose(extractor.transform(TINY_X)[:, :2], [[2.75, 1.75]], rtol=1e-6)
    assert extractor.get_feature_names_out()[:2].tolist() == ["relu__0", "relu__1"]

    def first_row(t):
        return t[:, :, 0, :].flatten(1)  # 4 units per call, a view

    extractor = ActivationExtractor(_tiny_conv(), reduce=first_row).fit(TINY_X)
    assert_allclose(extractor.transform(TINY_X)[:, :4], [[0, 2, 1.5, 0]])
    assert extractor.n_neurons_ == 4
    assert extractor.get_feature_names_out()[3] == "relu__3"

    def not_2d(t):
        return t

    with pytest.raises(ValueError, match="must return a 2-D tensor"):
        ActivationExtractor(_tiny_conv(), reduce=not_2d).fit(TINY_X)


# -- in-place operations after the hooked module ---------------------------


@pytest.mark.parametrize(
    "reduce, manual",
    [
        ("mean", lambda t: t),
        ("flatten", lambda t: t),
        # A view at an offset into the hooked output's storage.
        (lambda t: t[:, 1:], lambda t: t[:, 1:]),
        (lambda t: t, lambda t: t),
    ],
)
def test_inplace_relu_after_hooked_linear_does_not_corrupt(rng, reduce, manual):
    # The next module, an in-place ReLU, overwrites fc1's output tensor.
    net = nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(3, 6), relu=nn.ReLU(inplace=True), out=nn.Linear(6, 2)
        )
    )
    X = rng.normal(size=(8, 3)).astype(np.float32)
    extractor = ActivationExtractor(net, layers="fc1", reduce=reduce).fit(X)
    Z = extractor.transform(X)
    with torch.no_grad():
        expected = manual(net.fc1(torch.as_tensor(X))).numpy()
    assert (expected < 0).any()  # what the in-place ReLU would have zeroed
    assert_allclose(Z[:, : extractor.n_neurons_], expected, rtol=1e-6)


def test_inplace_relu_after_hooked_conv_does_not_corrupt(rng):
    net = _small_cnn()
    X = rng.normal(size=(5, 3, 8, 8)).astype(np.float32)
    for reduce in ("flatten", "max", "mean"):
        extractor = ActivationExtractor(net, layers="bn", reduce=reduce).fit(X)
        Z = extractor.transform(X)
        net.eval()
        with torch.no_grad():
            maps = net.bn(net.conv(torch.as_tensor(X))).numpy()
        expected = {
            "flatten": maps.reshape(5, -1),
            "max": maps.reshape(5, 4, -1).max(axis=2),
            "mean": maps.reshape(5, 4, -1).mean(axis=2),
        }[reduce]
        assert (maps < 0).any()
        assert_allclose(Z[:, : extractor.n_neurons_], expected, rtol=1e-5, atol=1e-6)


# -- the backbone is left as it was ----------------------------------------


def test_modes_hooks_weights_restored_after_fit_and_transform(resnet, images):
    resnet.train()
    resnet.bn1.eval()  # a mixed state
    resnet.layer2.eval()
    for p in resnet.layer1.parameters():
        p.requires_grad_(False)
    try:
        flags = _flags(resnet)
        grads = [p.requires_grad for p in resnet.parameters()]
        state = _state(resnet)

        extractor = ActivationExtractor(resnet, batch_size=3).fit(images)
        assert _flags(resnet) == flags
        assert _no_hooks(resnet)
        extractor.transform(images)
        assert _flags(resnet) == flags
        assert _no_hooks(resnet)
        # In train mode, BatchNorm would have updated its running statistics.
        _assert_same_state(resnet, state)
        assert [p.requires_grad for p in resnet.parameters()] == grads
        assert all(p.grad is None for p in resnet.parameters())
    finally:
        resnet.eval()
        for p in resnet.parameters():
            p.requires_grad_(True)


def test_modes_and_hooks_restored_after_exception(rng):
    boom = Boom()
    net = nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(4, 6),
            bn=nn.BatchNorm1d(6),
            relu=nn.ReLU(),
            boom=boom,
            out=nn.Linear(6, 3),
        )
    )
    net.train()
    net.bn.eval()
    flags = _flags(net)
    state = _state(net)
    X = rng.normal(size=(6, 4)).astype(np.float32)
    extractor = ActivationExtractor(net).fit(X)

    boom.armed = True
    with pytest.raises(ValueError, match="backbone failed.*boom"):
        extractor.transform(X)
    assert _flags(net) == flags
    assert _no_hooks(net)
    with pytest.raises(ValueError, match="backbone failed.*boom"):
        ActivationExtractor(net).fit(X)
    assert _flags(net) == flags
    assert _no_hooks(net)
    _assert_same_state(net, state)

    # An error raised inside a hook: the layer returns a tuple.
    boom.armed = False
    nested = TupleInside()
    with pytest.raises(ValueError, match="Layer 'inner' returned tuple, not a tensor"):
        ActivationExtractor(nested, layers="inner").fit(X)
    assert _no_hooks(nested)
    tuple_net = ReturnsTuple()
    with pytest.raises(ValueError, match="output_key"):
        ActivationExtractor(tuple_net).fit(X)
    assert _no_hooks(tuple_net)


def test_clone_shares_backbone(resnet):
    extractor = ActivationExtractor(resnet, layers=["fc"], reduce="max")
    cloned = clone(extractor)
    assert cloned is not extractor
    assert cloned.backbone is resnet
    assert cloned.get_params()["layers"] == ["fc"]
    assert cloned.layers is not extractor.layers  # other params are copied


def test_parameter_constraints_cover_params(resnet):
    params = ActivationExtractor(resnet).get_params(deep=False)
    assert set(ActivationExtractor._parameter_constraints) == set(params)


# -- inputs -----------------------------------------------------------------


def test_input_kinds_give_identical_results(rng):
    net = _small_cnn()
    X8 = rng.integers(0, 256, size=(7, 3, 8, 8), dtype=np.uint8)
    X32 = X8.astype(np.float32) / 255
    y = rng.integers(0, 3, size=7)
    extractor = ActivationExtractor(net, batch_size=4)
    expected = extractor.fit(X32).transform(X32)
    assert expected.shape == (7, 4 + 3)

    t32 = torch.from_numpy(X32)
    dataset = torch.utils.data.TensorDataset(t32, torch.as_tensor(y))
    same_batches = {
        "float64": X32.astype(np.float64),
        "tensor": t32,
        "dataset": dataset,
        "loader": torch.utils.data.DataLoader(dataset, batch_size=4),
    }
    for kind, X in same_batches.items():
        assert_array_equal(extractor.fit(X).transform(X), expected, err_msg=kind)
    # Fitted on one kind, transform another.
    assert_array_equal(extractor.fit(X32).transform(dataset), expected)

    # Other batchings: the same up to float32 rounding of the conv.
    for X in (X32, torch.utils.data.DataLoader(dataset, batch_size=3)):
        for batch_size in (1, 2, 256):
            got = ActivationExtractor(net, batch_size=batch_size).fit(X).transform(X)
            assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    # uint8 images are cast to the backbone's float dtype, unscaled.
    Z8 = extractor.fit(X8).transform(X8)
    assert_array_equal(Z8, extractor.fit(X8.astype(np.float32)).transform(X8))
    assert_array_equal(Z8, extractor.fit(torch.from_numpy(X8)).transform(X8))


def test_nan_input_raises(rng):
    net = _small_cnn()
    X = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    extractor = ActivationExtractor(net).fit(X)
    X[2, 1, 3, 3] = np.nan
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(X))
    for bad in (X, torch.from_numpy(X), dataset):
        with pytest.raises(ValueError, match="NaN"):
            extractor.transform(bad)
    with pytest.raises(ValueError, match="NaN"):
        ActivationExtractor(net).fit(X)


def test_other_sample_shape_at_transform_raises(rng):
    net = _small_cnn()
    X = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    extractor = ActivationExtractor(net).fit(X)
    smaller = X[:, :, :6, :6]
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(3, 8, 8\)"):
        extractor.transform(smaller)
    with pytest.raises(ValueError, match=r"fitted on samples of shape"):
        extractor.transform(torch.from_numpy(np.ascontiguousarray(smaller)))
    with pytest.raises(ValueError, match="features"):
        extractor.transform(np.zeros((4, 2, 8, 8), dtype=np.float32))


def test_empty_input_raises():
    net = make_mlp(4, 3, hidden=(5,), random_state=0)
    empty = torch.utils.data.TensorDataset(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="empty"):
        ActivationExtractor(net).fit(empty)


# -- backbone outputs -------------------------------------------------------


@pytest.mark.parametrize(
    "net, key",
    [(ReturnsTuple(), 0), (ReturnsDict(), "logits"), (ReturnsNamedTuple(), "logits")],
)
def test_tuple_or_dict_output_needs_output_key(rng, net, key):
    X = rng.normal(size=(5, 4)).astype(np.float32)
    plain = ActivationExtractor(net.net).fit_transform(X)
    if isinstance(net, ReturnsDict):  # a "logits" key is found, as in Hugging Face
        assert_allclose(ActivationExtractor(net).fit_transform(X), plain, rtol=1e-6)
    else:
        with pytest.raises(ValueError, match=r"returned a tuple.*Set output_key"):
            ActivationExtractor(net).fit(X)
    Z = ActivationExtractor(net, output_key=key).fit_transform(X)
    assert_allclose(Z, plain, rtol=1e-6)
    with pytest.raises(ValueError, match="output_key=7 is not in"):
        ActivationExtractor(net, output_key=7).fit(X)


@pytest.mark.parametrize(
    "output, head", [("proba", nn.Softmax(dim=1)), ("log_proba", nn.LogSoftmax(dim=1))]
)
def test_output_proba_and_log_proba(rng, output, head):
    logits_net = make_mlp(4, 3, hidden=(5,), random_state=0)
    X = rng.normal(size=(6, 4)).astype(np.float32)
    expected = ActivationExtractor(logits_net).fit_transform(X)
    net = nn.Sequential(logits_net, head)
    Z = ActivationExtractor(net, output=output).fit_transform(X)
    assert_allclose(Z, expected, rtol=1e-5, atol=1e-7)
    assert_allclose(Z[:, -3:].sum(axis=1), 1.0, rtol=1e-5)


def test_classes_name_probability_columns(rng):
    net = make_mlp(4, 3, hidden=(5,), random_state=0)
    X = rng.normal(size=(6, 4)).astype(np.float32)
    extractor = ActivationExtractor(net, classes=["cat", "dog", "bird"]).fit(X)
    assert extractor.get_feature_names_out()[-3:].tolist() == [
        "proba_cat",
        "proba_dog",
        "proba_bird",
    ]
    with pytest.raises(ValueError, match="'classes' has 2 labels.*3 outputs"):
        ActivationExtractor(net, classes=["cat", "dog"]).fit(X)


def test_pandas_output_names_columns(rng):
    pd = pytest.importorskip("pandas")
    net = make_mlp(4, 3, hidden=(5,), random_state=0)
    X = rng.normal(size=(6, 4)).astype(np.float32)
    Z = ActivationExtractor(net).set_output(transform="pandas").fit_transform(X)
    assert isinstance(Z, pd.DataFrame)
    assert Z.columns[0] == "relu1__0" and Z.columns[-1] == "proba_2"


# -- devices ----------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_raises(rng):
    net = make_mlp(4, 3, hidden=(5,), random_state=0)
    X = rng.normal(size=(3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="'device'.*CUDA is not available"):
        ActivationExtractor(net, device="cuda").fit(X)


def test_invalid_device_raises(rng):
    net = make_mlp(4, 3, hidden=(5,), random_state=0)
    X = rng.normal(size=(3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="'device' parameter"):
        ActivationExtractor(net, device="gpu0").fit(X)


@needs_cuda
def test_cuda_extraction_leaves_cpu_backbone_in_place(resnet, images):
    expected = ActivationExtractor(resnet, device="cpu").fit_transform(images)
    got = ActivationExtractor(resnet, device="cuda").fit_transform(images)
    assert all(p.device.type == "cpu" for p in resnet.parameters())
    # cuDNN and the CPU sum in other orders.
    assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


@needs_cuda
def test_cuda_backbone_pickles_to_cpu(rng):
    net = make_mlp(4, 3, hidden=(5,), random_state=0).cuda()
    X = rng.normal(size=(3, 4)).astype(np.float32)
    extractor = ActivationExtractor(net, device="cuda").fit(X)
    loaded = pickle.loads(pickle.dumps(extractor))
    assert all(p.device.type == "cpu" for p in loaded.backbone.parameters())
    assert all(p.device.type == "cuda" for p in net.parameters())
    loaded.set_params(device="cpu")
    assert_allclose(loaded.transform(X), extractor.transform(X), rtol=1e-5)
