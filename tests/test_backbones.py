import sys

import pytest
import torch
from torch import nn

from sknap import ActivationExtractor
from sknap.paper.backbones import make_backbone, make_fcnn


def test_fcnn_is_the_papers():
    model = make_fcnn((1, 28, 28), 10)
    sizes = [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)]
    assert sizes == [(784, 512), (512, 512), (512, 10)]
    assert [n for n, _ in model.named_modules() if n] == [
        "flatten",
        "fc1",
        "relu1",
        "fc2",
        "relu2",
        "out",
    ]


@pytest.mark.parametrize(
    "name, shape",
    [
        ("fcnn", (1, 8, 8)),
        ("cnn", (1, 8, 8)),
        ("cnn", (3, 32, 32)),
        ("resnet18", (1, 28, 28)),
        ("resnet18", (3, 32, 32)),
    ],
)
def test_output_shape(name, shape):
    model = make_backbone(name, shape, 7).eval()
    with torch.no_grad():
        assert model(torch.rand(2, *shape)).shape == (2, 7)


def test_seed_fixes_the_weights():
    a = make_backbone("cnn", (1, 8, 8), 10, random_state=3)
    b = make_backbone("cnn", (1, 8, 8), 10, random_state=3)
    c = make_backbone("cnn", (1, 8, 8), 10, random_state=4)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_resnet_blocks_are_found_by_the_extractor():
    model = make_backbone("resnet18", (3, 32, 32), 10)
    extractor = ActivationExtractor(model, device="cpu").fit(torch.rand(2, 3, 32, 32))
    assert extractor.layer_names_[0] == "relu"
    assert extractor.layer_names_[-1] == "layer4.1.relu#1"
    assert len(extractor.layer_names_) == 17


def test_vgg16_adapted_to_small_images():
    model = make_backbone("vgg16", (3, 32, 32), 10).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    assert model.classifier[0].in_features == 512


def test_vgg16_needs_32_pixels():
    with pytest.raises(ValueError, match="at least 32x32"):
        make_backbone("vgg16", (1, 28, 28), 10)


def test_resnet50_builds():
    model = make_backbone("resnet50", (1, 32, 32), 10)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10


def test_unknown_backbone_and_bad_shape():
    with pytest.raises(ValueError, match="choose one of fcnn"):
        make_backbone("alexnet", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="channels, height, width"):
        make_backbone("fcnn", (64,), 10)


def test_missing_torchvision_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ImportError, match=r"sknap\[vision\]"):
        make_backbone("resnet18", (3, 32, 32), 10)
