"""Backbones for the paper's experiments, built from random weights.

Every backbone takes images of shape (n, channels, height, width) and returns
logits. Each ReLU is its own ``nn.ReLU`` module, so that
:class:`~sknap.ActivationExtractor`'s default (every ReLU) reads all hidden
layers. torchvision (the optional extra ``vision``) is imported only for the
torchvision models.
"""

import math
from collections import OrderedDict

import torch
from torch import nn

from ..toy import make_mlp

__all__ = ["BACKBONES", "make_backbone", "make_fcnn", "make_small_cnn"]

BACKBONES = ("fcnn", "cnn", "resnet18", "resnet50", "vgg16")


def make_fcnn(input_shape, n_classes, *, hidden=(512, 512), random_state=None):
    """The paper's FCNN: flatten, then ``Linear -> ReLU`` per hidden layer.

    With 28x28 gray images and the default ``hidden`` this is 784-512-512-10.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one sample, for instance ``(1, 28, 28)``.
    n_classes : int
        Number of outputs.
    hidden : tuple of int, default=(512, 512)
        Hidden widths.
    random_state : int, default=None
        Seed of the initialisation.

    Returns
    -------
    model : torch.nn.Sequential
        Modules ``flatten, fc1, relu1, ..., out``.

    Examples
    --------
    >>> make_fcnn((1, 28, 28), 10).fc1
    Linear(in_features=784, out_features=512, bias=True)
    """
    n_features = math.prod(int(size) for size in input_shape)
    mlp = make_mlp(n_features, n_classes, hidden=hidden, random_state=random_state)
    return nn.Sequential(
        OrderedDict([("flatten", nn.Flatten()), *mlp.named_children()])
    )


def make_small_cnn(input_shape, n_classes, *, width=32, random_state=None):
    """Two conv blocks and a dense layer: a CNN that trains in minutes on a CPU.

    ``conv1 (3x3, width) -> relu1 -> pool1 -> conv2 (3x3, 2 width) -> relu2 ->
    pool2 -> flatten -> fc (128) -> relu3 -> out``. Pooling is adaptive, so any
    image of at least 4x4 works.

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, height, width)``.
    n_classes : int
        Number of outputs.
    width : int, default=32
        Channels of the first conv layer.
    random_state : int, default=None
        Seed of the initialisation.

    Returns
    -------
    model : torch.nn.Sequential
        Untrained, on the CPU; every ReLU is its own module.

    Examples
    --------
    >>> import torch
    >>> make_small_cnn((1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    channels, height, width_px = (int(s) for s in input_shape)
    h2, w2 = max(1, height // 4), max(1, width_px // 4)
    with torch.random.fork_rng(devices=[]):
        if random_state is not None:
            torch.manual_seed(random_state)
        layers = OrderedDict(
            [
                ("conv1", nn.Conv2d(channels, width, 3, padding=1)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2, ceil_mode=True)),
                ("conv2", nn.Conv2d(width, 2 * width, 3, padding=1)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.AdaptiveMaxPool2d((h2, w2))),
                ("flatten", nn.Flatten()),
                ("fc", nn.Linear(2 * width * h2 * w2, 128)),
                ("relu3", nn.ReLU()),
                ("out", nn.Linear(128, n_classes)),
            ]
        )
    return nn.Sequential(layers)


def _torchvision_models():
    try:
        import torchvision.models as models
    except ImportError as err:
        raise ImportError(
            "The ResNet and VGG backbones come from torchvision, which is not "
            "installed. Install it with `pip install 'sknap[vision]'` (or `pip "
            "install torchvision`), or choose backbone 'fcnn' or 'cnn'."
        ) from err
    return models


def _torchvision_backbone(name, input_shape, n_classes):
    models = _torchvision_models()
    channels, height, width = (int(s) for s in input_shape)
    if name in ("resnet18", "resnet50"):
        model = getattr(models, name)(weights=None, num_classes=n_classes)
        if channels != 3:
            model.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
        return model
    if min(height, width) < 32:
        raise ValueError(
            f"VGG-16 halves the image five times and needs at least 32x32 inputs; "
            f"these are {height}x{width}. Pad them (image_size=32, --image-size 32 "
            "on the command line) or choose another backbone."
        )
    model = models.vgg16(weights=None, num_classes=n_classes)
    if channels != 3:
        model.features[0] = nn.Conv2d(channels, 64, 3, padding=1)
    # The 7x7 average pool and the 25088-wide first dense layer are sized for
    # 224x224 ImageNet images; small images end in a 512-channel map that one
    # global pool summarises (as CIFAR versions of VGG do).
    model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    model.classifier[0] = nn.Linear(512, 4096)
    return model


def make_backbone(name, input_shape, n_classes, *, random_state=0):
    """A backbone by name, from random weights, for images of ``input_shape``.

    Parameters
    ----------
    name : {"fcnn", "cnn", "resnet18", "resnet50", "vgg16"}
        ``"fcnn"``: the paper's FCNN (hidden 512-512). ``"cnn"``: see
        :func:`make_small_cnn`. ``"resnet18"``, ``"resnet50"``: torchvision's
        models with ``num_classes`` outputs and, for other than 3 channels, a
        first conv layer taking ``channels`` inputs; the ImageNet stem is kept.
        ``"vgg16"``: torchvision's VGG-16 (no batch norm) with a global average
        pool and a 512-4096-4096 classifier, for inputs of 32x32 or more.
    input_shape : tuple of int
        ``(channels, height, width)`` of one image.
    n_classes : int
        Number of outputs.
    random_state : int, default=0
        Seed of the initialisation.

    Returns
    -------
    model : torch.nn.Module
        Untrained, on the CPU, in train mode.

    Examples
    --------
    >>> model = make_backbone("cnn", (1, 28, 28), 10)
    >>> type(model).__name__
    'Sequential'
    """
    if name not in BACKBONES:
        raise ValueError(
            f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}."
        )
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (channels, height, width); got {tuple(input_shape)}."
        )
    if name == "fcnn":
        return make_fcnn(input_shape, n_classes, random_state=random_state)
    if name == "cnn":
        return make_small_cnn(input_shape, n_classes, random_state=random_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        return _torchvision_backbone(name, input_shape, n_classes)
