"""Reuse of activations: the same weights, layers and data give the same matrix.

A grid search over the steps after :class:`~sknap.ActivationExtractor` (the
bin count, say) clones the pipeline for every candidate and fold, and each
clone would run the backbone again on the same fold. With ``cache`` set, the
extractor keys each result of ``transform`` on everything it depends on and
runs the backbone once per distinct input:

* the backbone: its class, its printed structure, a SHA-256 of every
  parameter and buffer (hashed on each call, so weights changed in place, even
  through ``.data``, give a new key), and every plain attribute (numbers,
  strings, booleans) of each of its modules, such as a temperature;
* the extractor's parameters that change the numbers (layers, reduce, output,
  autocast, memory format, device type). A callable ``reduce`` enters by its
  code, its defaults, the values its closure holds and the globals it reads;
  one whose state the key cannot see (an object with ``__call__``, a global
  that is neither a number, a string, an array, a module nor a function) is
  not cached, with a :class:`~sknap.exceptions.CacheWarning`;
* the data: a SHA-256 of the array's bytes, shape and dtype. A Dataset or
  DataLoader is not hashed, so it is never cached;
* the torch version.

What the key cannot see: state that ``forward`` reads from outside the
backbone's modules (a global variable, a file, the random number generator)
and attributes of its modules that are not plain numbers or strings. Clear the
cache (or change the folder) when such state changes.

``cache="memory"`` (or True) keeps results in this process, least recently
used first out, up to ``MEMORY_LIMIT`` bytes; threads share it under a lock.
A directory path keeps them on disk, where processes (joblib's loky workers,
Dask, Ray) share them. An entry is ``<key>.npy`` (read with
``allow_pickle=False``) and ``<key>.json`` (its shape, dtype and SHA-256).
Nothing read from the folder can run code: this is why sknap keeps its own
cache rather than ``joblib.Memory``, which unpickles what it reads. The folder
is created owner-only (mode 0700), and a folder that another user owns or that
others can write to is not used. Every entry is checked against what its key
says it holds (shape, dtype, checksum, finite values); an entry that does not
match, and any file-system fault (a read-only or full disk, a dangling link, a
folder where a file should be), is a miss with a ``CacheWarning``: the result
is computed from the data.
"""

import functools
import hashlib
import io
import json
import os
import stat
import tempfile
import threading
import types
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import _device
from .exceptions import CacheWarning

__all__ = ["MEMORY_LIMIT", "cached_transform", "clear_memory_cache"]

MEMORY_LIMIT = 2 << 30
_VERSION = "2"


class _MemoryCache:
    """A thread-safe LRU of read-only numpy arrays, bounded in bytes."""

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

    def put(self, key, value):
        size = value.nbytes
        if size > MEMORY_LIMIT:
            return
        value = value.copy()
        value.flags.writeable = False
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


class _Unkeyable(Exception):
    """A parameter whose effect on the numbers the key cannot see."""


def _hash_tensor(h, tensor):
    t = tensor.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    t = t.cpu().contiguous().reshape(-1)
    if t.numel():
        h.update(t.view(torch.uint8).numpy().data)


_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _plain_attributes(module):
    """Text of a module's plain public attributes (numbers, strings, ...)."""
    items = []
    for name, value in sorted(vars(module).items()):
        if name.startswith("_") or name == "training":
            continue
        if isinstance(value, _PLAIN) or (
            isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value)
        ):
            items.append(f"{name}={value!r}")
    return ";".join(items)


def fingerprint_module(module):
    """SHA-256 of a module's class, structure, plain attributes and tensors."""
    h = hashlib.sha256()
    h.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    h.update(repr(module).encode())
    for name, sub in module.named_modules():
        h.update(f"m:{name}:{_plain_attributes(sub)}".encode())
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


def _code_text(code):
    """The code's bytecode, names and constants, nested code included."""
    consts = [
        _code_text(c) if isinstance(c, types.CodeType) else repr(c)
        for c in code.co_consts
    ]
    return f"{code.co_code.hex()}|{code.co_names}|{consts}"


def _global_names(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _describe_function(f, seen):
    if f in seen:
        return f"recursive:{f.__qualname__}"
    seen = seen | {f}
    parts = [f"function:{f.__module__}.{f.__qualname__}", _code_text(f.__code__)]
    parts.append(_describe(f.__defaults__, seen))
    parts.append(_describe(sorted((f.__kwdefaults__ or {}).items()), seen))
    for cell in f.__closure__ or ():
        try:
            parts.append(_describe(cell.cell_contents, seen))
        except ValueError:  # an empty cell
            parts.append("empty")
    for name in sorted(_global_names(f.__code__)):
        if name in f.__globals__:
            parts.append(f"{name}={_describe(f.__globals__[name], seen)}")
    return "(" + ",".join(parts) + ")"


def _describe(value, seen=frozenset()):
    """A stable text for a parameter value; ``_Unkeyable`` where there is none."""
    if isinstance(value, (*_PLAIN, np.generic)):
        return repr(value)
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_describe(v, seen) for v in value) + "]"
    if isinstance(value, dict):
        return _describe(sorted(value.items(), key=lambda kv: repr(kv[0])), seen)
    if isinstance(value, np.ndarray | torch.Tensor):
        return f"array:{_fingerprint_data(value)}"
    if isinstance(value, types.ModuleType):
        return f"module:{value.__name__}"
    if isinstance(value, nn.Module):
        return f"nn.Module:{fingerprint_module(value)}"
    if isinstance(value, types.FunctionType):
        return _describe_function(value, seen)
    if isinstance(value, types.BuiltinFunctionType | np.ufunc):
        module = getattr(value, "__module__", None)
        return f"builtin:{module}.{getattr(value, '__qualname__', value.__name__)}"
    if isinstance(value, functools.partial):
        return (
            f"partial:{_describe(value.func, seen)}{_describe(value.args, seen)}"
            f"{_describe(value.keywords, seen)}"
        )
    raise _Unkeyable(f"{type(value).__module__}.{type(value).__qualname__}")


# Parameters that do not change the numbers; the device enters the key by
# its type only.
_IGNORED = {"backbone", "cache", "progress", "pin_memory", "device"}


def _key(extractor, X, device):
    """SHA-256 naming the result of ``transform(X)``; None when X is not hashed."""
    data = _fingerprint_data(X)
    if data is None:
        return None
    params = extractor.get_params(deep=False)
    h = hashlib.sha256(f"sknap-cache{_VERSION}:{torch.__version__}".encode())
    h.update(fingerprint_module(extractor.backbone).encode())
    for name in sorted(params):
        if name not in _IGNORED:
            h.update(f"{name}={_describe(params[name])};".encode())
    h.update(f"device={device.type};data={data}".encode())
    return h.hexdigest()


# -- storage ------------------------------------------------------------------


def _warn(message):
    warnings.warn(
        message + " The result is computed from the data.", CacheWarning, stacklevel=4
    )


def _folder(cache):
    """The cache folder as a Path, created owner-only; None (with a warning)
    when it cannot be used safely."""
    path = Path(cache)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as err:
        _warn(
            f"The cache folder '{path}' cannot be created or read ({err}). Give "
            "cache= a folder that this user can create and write."
        )
        return None
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        _warn(
            f"The cache folder '{path}' is owned by user id {info.st_uid}, not by "
            "this user, so its entries cannot be trusted. Use a folder of your own."
        )
        return None
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        _warn(
            f"The cache folder '{path}' has mode {oct(stat.S_IMODE(info.st_mode))}: "
            "others can write to it, so its entries cannot be trusted. Make it "
            f"owner-only (chmod 700 '{path}') or use another folder."
        )
        return None
    return path


def _atomic_write(path, data):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _checksum(array):
    return hashlib.sha256(np.ascontiguousarray(array).view(np.uint8).data).hexdigest()


def _matches(value, shape):
    """Why ``value`` is not the float32 matrix of ``shape``; None if it is."""
    if not isinstance(value, np.ndarray):
        return f"it holds {type(value).__name__}, not an array"
    if value.dtype != np.float32 or value.shape != shape:
        return (
            f"it holds {value.dtype} of shape {value.shape}, not float32 of "
            f"shape {shape}"
        )
    if not _device.all_finite(torch.from_numpy(value)):
        return "it holds NaN or infinity"
    return None


def _load_disk(folder, key, shape):
    """The entry of ``key`` when it holds the matrix of ``shape``; None on a miss."""
    meta_path, data_path = folder / f"{key}.json", folder / f"{key}.npy"
    if not meta_path.exists() and not data_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        with open(data_path, "rb") as f:
            value = np.load(f, allow_pickle=False)
        problem = _matches(value, shape)
        if problem is None and meta.get("sha256") != _checksum(value):
            problem = "its bytes differ from the checksum written with it"
    except (OSError, ValueError, EOFError, TypeError, AttributeError) as err:
        problem = f"it cannot be read ({err})"
    if problem is not None:
        _warn(
            f"The cache entry '{data_path}' does not hold what its key says: {problem}."
        )
        return None
    return value


def _store_disk(folder, key, value):
    meta = {
        "shape": list(value.shape),
        "dtype": str(value.dtype),
        "sha256": _checksum(value),
    }
    try:
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        _atomic_write(folder / f"{key}.npy", buffer.getvalue())
        _atomic_write(folder / f"{key}.json", json.dumps(meta).encode())
    except OSError as err:
        _warn(f"The cache entry '{folder / key}.npy' could not be written ({err}).")


# -- what the extractor calls -------------------------------------------------


def cached_transform(extractor, X, device, n_columns, compute):
    """``compute(X)``, or the stored result of an identical earlier call.

    ``n_columns`` is the width the result must have: an entry of another
    shape is a miss.
    """
    cache = extractor.cache
    if cache is None or cache is False:
        return compute(X)
    try:
        key = _key(extractor, X, device)
    except _Unkeyable as err:
        _warn(
            f"A parameter of type {err} (the callable given as 'reduce') cannot be "
            "keyed: the cache cannot see the state it reads, so nothing is cached "
            "for it. Give a plain function, whose closure and globals are numbers, "
            "strings, arrays, modules or functions."
        )
        return compute(X)
    if key is None:
        return compute(X)
    shape = (len(X), n_columns)
    if cache is True or cache == "memory":
        hit = _MEMORY.get(key)
        if hit is not None:
            problem = _matches(hit, shape)
            if problem is None:
                return hit.copy()
            _warn(f"The memory cache entry does not hold what its key says: {problem}.")
        out = compute(X)
        _MEMORY.put(key, out)
        return out
    folder = _folder(cache)
    if folder is None:
        return compute(X)
    hit = _load_disk(folder, key, shape)
    if hit is not None:
        return hit
    out = compute(X)
    _store_disk(folder, key, out)
    return out
