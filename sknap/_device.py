"""Device choice shared by the extractor and the auxiliary classifier."""

import contextlib
import copy
import os
import threading
import weakref

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


def available_memory():
    """Bytes of memory available to this process now; None when unknown.

    The smallest of what psutil (when installed) or ``/proc/meminfo`` reports
    as available, and of what a cgroup limit leaves.
    """
    candidates = []
    try:
        import psutil

        candidates.append(int(psutil.virtual_memory().available))
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        candidates.append(int(line.split()[1]) * 1024)
        except (OSError, ValueError, IndexError):
            pass
    if not candidates:
        try:
            pages = os.sysconf("SC_AVPHYS_PAGES")
            candidates.append(pages * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                candidates.append(int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        pass
    return max(0, min(candidates)) if candidates else None


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
        # module.eval() sets every flag again, through nn.Module.__setattr__:
        # skip it for a backbone already in eval mode.
        if any(flag for _, flag in self.flags):
            self.module.eval()
        return self.module

    def __exit__(self, *exc):
        # Always: a flag may have been switched during the pass (by another
        # thread, or by the forward pass itself).
        for m, flag in self.flags:
            if m.training != flag:
                m.training = flag
        return False


# -- options of the forward pass ----------------------------------------------

AUTOCAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast(device, name):
    """``torch.autocast`` to the dtype named ``name``; a no-op for None."""
    if name is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[name])


def use_pinned_memory(option, device):
    """Whether to pin host batches: only a copy to CUDA gains from it."""
    return device.type == "cuda" and option in ("auto", True)


def use_channels_last(option, module):
    """Whether to give 4-D inputs the channels-last layout.

    ``"auto"`` follows the backbone: yes when its 4-D weights are already
    channels-last (``backbone.to(memory_format=torch.channels_last)``), since
    an input in the other layout would be converted at every convolution.
    """
    if option != "auto":
        return bool(option)
    for p in module.parameters():
        if p.dim() == 4 and not p.is_contiguous():
            return p.is_contiguous(memory_format=torch.channels_last)
    return False


def to_device(batch, device, dtype, *, pin=False, channels_last=False):
    """A copy of ``batch`` on ``device`` in ``dtype``, never the caller's
    tensor: pinned and copied without blocking the host where that helps,
    channels-last when asked. A dict is copied value by value; ``dtype``
    None keeps the batch's own dtype."""
    if isinstance(batch, dict):
        return {
            k: to_device(v, device, dtype if v.is_floating_point() else None, pin=pin)
            for k, v in batch.items()
        }
    if pin and batch.device.type == "cpu" and not batch.is_pinned():
        batch = batch.pin_memory()  # a copy already
        return to_device(batch, device, dtype, channels_last=channels_last)
    batch = batch.to(device=device, dtype=dtype, non_blocking=True, copy=True)
    if channels_last and batch.ndim == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


_LOCKS = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def exclusive(module):
    """A lock held while a module runs with hooks and in eval mode.

    Clones share the backbone; two threads (joblib's threading backend) that
    hooked it and flipped its eval flag at once would record each other's
    activations. torch already spreads one forward pass over the cores.
    """
    with _LOCKS_LOCK:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.RLock()
    return lock


def all_finite(tensor):
    """Whether a floating tensor holds no NaN nor infinity.

    The sum is finite in the common case, a reduction far cheaper than
    ``torch.isfinite`` (which writes a mask); only when it is not is every
    element looked at, since a sum of large finite values may overflow.
    """
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    wide = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    if bool(torch.isfinite(tensor.sum(dtype=wide))):
        return True
    return bool(torch.isfinite(tensor).all())
