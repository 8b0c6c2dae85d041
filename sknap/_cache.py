"""Reuse of activations: the same weights, layers and data give the same matrix.

A grid search over the steps after :class:`~sknap.ActivationExtractor` (the
bin count, say) clones the pipeline for every candidate and fold, and each
clone would run the backbone again on the same fold. With ``cache`` set, the
extractor keys each result on everything it depends on and runs the backbone
once per distinct input:

* the backbone: its class, its printed structure, and a SHA-256 of every
  parameter and buffer (hashed on each call, so weights changed in place, even
  through ``.data``, give a new key);
* the extractor's parameters that change the numbers (layers, reduce, batch
  size, device type, output, autocast, memory format);
* the data: a SHA-256 of the array's bytes, shape and dtype. A Dataset or
  DataLoader is not hashed, so it is never cached;
* the torch version.

``cache="memory"`` (or True) keeps results in this process, least recently
used first out, up to ``MEMORY_LIMIT`` bytes; threads share it under a lock.
A directory path keeps them on disk, where processes (joblib's loky workers,
Dask, Ray) share them: a file is written under a temporary name and renamed,
so a reader never sees half of one, and two workers computing the same entry
write the same bytes.
"""

import copy
import hashlib
import os
import pickle
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

__all__ = ["MEMORY_LIMIT", "clear_memory_cache", "fingerprint_module"]

MEMORY_LIMIT = 2 << 30
_VERSION = "1"


class _MemoryCache:
    """A thread-safe LRU of numpy arrays and small objects, bounded in bytes."""

    def __init__(self):
        self._items = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key, value, size):
        if size > MEMORY_LIMIT:
            return
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > MEMORY_LIMIT and self._items:
                self._bytes -= self._items.popitem(last=False)[1][1]

    def clear(self):
        with self._lock:
            self._items.clear()
            self._bytes = 0


_MEMORY = _MemoryCache()


def clear_memory_cache():
    """Forget every activation matrix kept in this process."""
    _MEMORY.clear()


# -- keys ---------------------------------------------------------------------


def _hash_tensor(h, tensor):
    t = tensor.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    t = t.cpu().contiguous().reshape(-1)
    if t.numel():
        h.update(t.view(torch.uint8).numpy().data)


def fingerprint_module(module):
    """SHA-256 of a module's class, structure, parameters and buffers."""
    h = hashlib.sha256()
    h.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    h.update(repr(module).encode())
    for kind, named in (
        ("p", module.named_parameters()),
        ("b", module.named_buffers()),
    ):
        for name, tensor in named:
            h.update(f"{kind}:{name}".encode())
            _hash_tensor(h, tensor)
    return h.hexdigest()


def _fingerprint_data(X):
    """SHA-256 of an array or tensor; None for a Dataset or DataLoader."""
    if isinstance(X, torch.Tensor):
        h = hashlib.sha256(b"tensor")
        _hash_tensor(h, X)
        return h.hexdigest()
    if isinstance(X, np.ndarray):
        h = hashlib.sha256(f"ndarray{X.dtype.str}{X.shape}".encode())
        h.update(np.ascontiguousarray(X).view(np.uint8).data)
        return h.hexdigest()
    return None


def _describe(value):
    """A stable text for a parameter value (callables by their code)."""
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}"
    if callable(value):
        code = getattr(value, "__code__", None)
        if code is None:
            return f"callable:{value!r}"
        h = hashlib.sha256(code.co_code)
        h.update(repr(code.co_consts).encode())
        return f"callable:{value.__module__}.{value.__qualname__}:{h.hexdigest()}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_describe(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        return repr(value.tolist())
    return repr(value)


# Parameters that do not change the numbers; the device enters the key by
# its type only.
_IGNORED = {"backbone", "cache", "progress", "pin_memory", "device"}


def _key(extractor, X, kind, device):
    data = _fingerprint_data(X)
    if data is None:
        return None
    params = extractor.get_params(deep=False)
    h = hashlib.sha256(f"sknap-cache{_VERSION}:{kind}:{torch.__version__}".encode())
    h.update(fingerprint_module(extractor.backbone).encode())
    for name in sorted(params):
        if name not in _IGNORED:
            h.update(f"{name}={_describe(params[name])};".encode())
    h.update(f"device={device.type};data={data}".encode())
    return h.hexdigest()


# -- storage ------------------------------------------------------------------


def _location(cache):
    """None (no cache), "memory", or a directory Path."""
    if cache is None or cache is False:
        return None
    if cache is True or cache == "memory":
        return "memory"
    path = Path(cache)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path, write):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load(location, key, suffix):
    """The stored value, as a copy the caller owns; None on a miss."""
    if location == "memory":
        value = _MEMORY.get(key + suffix)
        if isinstance(value, np.ndarray):
            return value.copy()
        return copy.deepcopy(value)
    path = location / f"{key}{suffix}"
    try:
        with open(path, "rb") as f:
            if suffix == ".npy":
                return np.load(f, allow_pickle=False)
            return pickle.load(f)
    except (FileNotFoundError, EOFError, ValueError, pickle.UnpicklingError):
        return None


def _store(location, key, suffix, value):
    if location == "memory":
        size = 0
        if isinstance(value, np.ndarray):
            size = value.nbytes
            value = value.copy()
            value.flags.writeable = False
        else:
            value = copy.deepcopy(value)
        _MEMORY.put(key + suffix, value, size)
        return
    path = location / f"{key}{suffix}"
    if suffix == ".npy":
        _atomic_write(path, lambda f: np.save(f, value, allow_pickle=False))
    else:
        _atomic_write(path, lambda f: pickle.dump(value, f))


# -- what the extractor calls -------------------------------------------------


def cached_transform(extractor, X, device, compute):
    """``compute(X)``, or the stored result of an identical earlier call."""
    location = _location(extractor.cache)
    key = None if location is None else _key(extractor, X, "transform", device)
    if key is not None:
        hit = _load(location, key, ".npy")
        if hit is not None:
            return np.asarray(hit, dtype=np.float32)
    out = compute(X)
    if key is not None:
        _store(location, key, ".npy", out)
    return out


def _fit_state(extractor):
    params = extractor.get_params(deep=False)
    return {k: v for k, v in vars(extractor).items() if k not in params}


def _fit_key(extractor, X, device):
    """(location, key) of the fitted layout; key None when not cached."""
    location = _location(extractor.cache)
    if location is None:
        return None, None
    return location, _key(extractor, X[:2], "fit", device)


def restore_fit(extractor, X, device):
    """Set the fitted layout from an identical earlier fit; whether it did."""
    location, key = _fit_key(extractor, X, device)
    state = None if key is None else _load(location, key, ".pkl")
    if state is None:
        return False
    for name, value in state.items():
        setattr(extractor, name, value)
    return True


def save_fit(extractor, X, device):
    """Store the fitted layout for :func:`restore_fit`."""
    location, key = _fit_key(extractor, X, device)
    if key is not None:
        _store(location, key, ".pkl", _fit_state(extractor))
