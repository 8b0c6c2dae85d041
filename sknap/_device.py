"""Device choice shared by the extractor and the auxiliary classifier."""

import copy

import torch


def resolve_device(device, owner="ActivationExtractor"):
    """``torch.device`` for ``device``: "auto" is CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"The 'device' parameter of {owner} must be 'auto', 'cpu', 'cuda', "
            f"'cuda:<index>' or a torch.device. Got {device!r} instead."
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"The 'device' parameter of {owner} is {device!r}, but CUDA is not "
            "available on this machine. Use device='auto' (CUDA when there is "
            "one, else the CPU) or device='cpu'."
        )
    return resolved


def module_device(module):
    """Device of the first parameter or buffer of ``module``; CPU when it has none."""
    for tensor in _tensors(module):
        return tensor.device
    return torch.device("cpu")


def float_dtype(module):
    """Floating dtype the module computes in (its first floating parameter)."""
    for tensor in _tensors(module):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _tensors(module):
    yield from module.parameters()
    yield from module.buffers()


def _same_device(a, b):
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def on_device(module, device):
    """``module`` itself when all its tensors are on ``device``, else a copy there.

    The user's module is never moved: moving it in place would change the
    object they hold.
    """
    if all(_same_device(t.device, device) for t in _tensors(module)):
        return module
    return copy.deepcopy(module).to(device)


def cpu_copy_if_cuda(module):
    """A CPU copy of ``module`` when it holds CUDA tensors, so pickles load anywhere."""
    if any(t.device.type != "cpu" for t in _tensors(module)):
        return copy.deepcopy(module).cpu()
    return module


class EvalMode:
    """Put a module in eval mode, then restore every submodule's own flag."""

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        return self.module

    def __exit__(self, *exc):
        for m, flag in self.flags:
            m.training = flag
        return False
