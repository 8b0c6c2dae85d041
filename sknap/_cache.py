"""Reuse of activations: the same weights, layers and data give the same matrix.

A grid search over the steps after :class:`~sknap.ActivationExtractor` (the
bin count, say) clones the pipeline for every candidate and fold, and each
clone would run the backbone again on the same fold. With ``cache`` set, the
extractor keys each result of ``transform`` on everything it depends on and
runs the backbone once per distinct input:

* the backbone: its printed structure, a SHA-256 of every parameter and
  buffer (hashed on each call, so weights changed in place, even through
  ``.data``, give a new key), every other attribute of each of its modules
  (numbers, strings, arrays, tensors that are not buffers, private ones too),
  and the code of each ``forward`` written outside torch, with the values its
  closure holds and the globals it reads;
* the extractor's parameters that change the numbers (layers, reduce, batch
  size, output, autocast, the memory format "auto" resolves to, the device
  type). A callable ``reduce`` enters by its code, its defaults, the values
  its closure holds and the globals it reads (of a module or class of the
  user's: the attributes its code names);
* the data: a SHA-256 of the array's bytes, shape and dtype. A Dataset or
  DataLoader is not hashed, so it is never cached;
* the torch version.

What cannot be keyed is not cached, with a
:class:`~sknap.exceptions.CacheWarning`: a backbone with forward hooks (they
may change any output), an attribute or global the key cannot describe (an
arbitrary object), an object with ``__call__`` as ``reduce``. What the key
cannot see: state that code inside torch, numpy or another library reads (a
file, the random number generator, a library's own settings). Clear the cache
(or change the folder) when such state changes.

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
import math
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
_VERSION = "3"


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
    """A value whose effect on the numbers the key cannot see."""


def _hash_tensor(h, tensor):
    t = tensor.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    t = t.cpu().contiguous().reshape(-1)
    if t.numel():
        h.update(t.view(torch.uint8).numpy().data)


_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)
# Code of these packages is described by its name: it does not change
# between two calls of one process.
_LIBRARIES = ("torch", "numpy", "scipy", "sklearn", "sknap", "builtins", "math")
# What every nn.Module holds (its tensors, submodules and hook tables).
_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {"training"}


def _library(obj):
    name = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    return str(name).split(".")[0] in _LIBRARIES


def fingerprint_module(module):
    """SHA-256 of a module: its classes' code, structure, attributes and tensors.

    Raises ``_Unkeyable`` when the module has forward hooks, or an attribute
    whose value the key cannot describe.
    """
    if torch.nn.modules.module._global_forward_hooks or (
        torch.nn.modules.module._global_forward_pre_hooks
    ):
        raise _Unkeyable("global forward hooks (torch.nn.modules.module)")
    h = hashlib.sha256(repr(module).encode())
    for name, sub in module.named_modules():
        if sub._forward_hooks or sub._forward_pre_hooks:
            raise _Unkeyable(f"the forward hooks of module '{name}'")
        cls = type(sub)
        h.update(f"m:{name}:{cls.__module__}.{cls.__qualname__}".encode())
        forward = getattr(cls, "forward", None)
        if isinstance(forward, types.FunctionType) and not _library(cls):
            try:  # its code, and the values of its closure and globals
                h.update(_describe_function(forward, frozenset()).encode())
            except _Unkeyable as err:
                raise _Unkeyable(f"the forward of module '{name}' ({err})") from None
        for key, value in sorted(vars(sub).items()):
            if key not in _MODULE_INTERNALS:
                try:
                    h.update(f"{key}={_describe(value)};".encode())
                except _Unkeyable as err:
                    where = f"attribute '{key}' of module '{name}'"
                    raise _Unkeyable(f"{where} ({err})") from None
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


def _names(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _describe_function(f, seen):
    if f in seen:
        return f"recursive:{f.__qualname__}"
    seen = seen | {f}
    names = _names(f.__code__)
    parts = [f"function:{f.__module__}.{f.__qualname__}", _code_text(f.__code__)]
    parts.append(_describe(f.__defaults__, seen))
    parts.append(_describe(sorted((f.__kwdefaults__ or {}).items()), seen))
    for cell in f.__closure__ or ():
        try:
            parts.append(_describe(cell.cell_contents, seen, names))
        except ValueError:  # an empty cell
            parts.append("empty")
    for name in sorted(names):
        if name in f.__globals__:
            parts.append(f"{name}={_describe(f.__globals__[name], seen, names)}")
    return "(" + ",".join(parts) + ")"


def _attributes(obj, names, seen):
    """The attributes of a user's module or class that a function's code names."""
    return ",".join(
        f"{n}={_describe(getattr(obj, n), seen, names)}"
        for n in sorted(names)
        if not n.startswith("__") and hasattr(obj, n)
    )


def _describe(value, seen=frozenset(), names=frozenset()):
    """A stable text for a value; ``_Unkeyable`` where there is none.

    ``names`` are the attribute names the code that reads ``value`` uses, so
    that a module or class of the user's is described by what is read of it.
    """
    if isinstance(value, (*_PLAIN, np.generic)):
        return repr(value)
    if isinstance(value, list | tuple | range):
        return "[" + ",".join(_describe(v, seen) for v in value) + "]"
    if isinstance(value, set | frozenset):
        return "{" + ",".join(sorted(_describe(v, seen) for v in value)) + "}"
    if isinstance(value, dict):
        return _describe(sorted(value.items(), key=lambda kv: repr(kv[0])), seen)
    if isinstance(value, np.ndarray | torch.Tensor):
        return f"array:{_fingerprint_data(value)}"
    if isinstance(value, nn.Module):
        return f"nn.Module:{fingerprint_module(value)}"
    if isinstance(value, types.ModuleType | type):
        kind = "module" if isinstance(value, types.ModuleType) else "type"
        label = getattr(value, "__qualname__", value.__name__)
        text = f"{kind}:{getattr(value, '__module__', '')}.{label}"
        if value in seen or _library(value):
            return text
        return f"{text}({_attributes(value, names, seen | {value})})"
    if isinstance(value, types.FunctionType):
        if _library(value):
            return f"function:{value.__module__}.{value.__qualname__}"
        return _describe_function(value, seen)
    if isinstance(value, types.BuiltinFunctionType | np.ufunc):
        module = getattr(value, "__module__", None)
        return f"builtin:{module}.{getattr(value, '__qualname__', value.__name__)}"
    if isinstance(value, functools.partial):
        return (
            f"partial:{_describe(value.func, seen)}{_describe(value.args, seen)}"
            f"{_describe(value.keywords, seen)}"
        )
    if hasattr(value, "__array__"):  # a DataFrame column, a pandas Index
        return _describe(np.asarray(value), seen)
    raise _Unkeyable(f"a value of type {type(value).__module__}.{type(value).__name__}")


# Parameters that do not change the numbers; the device enters the key by
# its type only, the memory format by what "auto" resolves to.
_IGNORED = {"backbone", "cache", "progress", "pin_memory", "device", "classes"}


def _key(extractor, X, device):
    """SHA-256 naming the result of ``transform(X)``; None when X is not hashed."""
    data = _fingerprint_data(X)
    if data is None:
        return None
    params = extractor.get_params(deep=False)
    params["channels_last"] = _device.use_channels_last(
        extractor.channels_last, extractor.backbone
    )
    h = hashlib.sha256(f"sknap-cache{_VERSION}:{torch.__version__}".encode())
    try:
        h.update(fingerprint_module(extractor.backbone).encode())
    except _Unkeyable as err:
        raise _Unkeyable(f"The backbone: {err}") from None
    for name in sorted(params):
        if name not in _IGNORED:
            try:
                h.update(f"{name}={_describe(params[name])};".encode())
            except _Unkeyable as err:
                raise _Unkeyable(f"The parameter '{name}': {err}") from None
    # The fitted column layout: the columns an entry holds are those of this
    # extractor's blocks, not only as many columns. (Names and class labels
    # follow from these and from parameters that do not change the numbers.)
    layout = extractor.layout_
    structure = (layout.blocks, layout.calls, layout.widths, layout.shapes)
    h.update(f"layout={structure!r};n_outputs={layout.n_outputs};".encode())
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
    # A float64 sum of float32 values overflows only where one is not finite.
    if not np.isfinite(value.sum(dtype=np.float64)):
        return "it holds NaN or infinity"
    return None


_META_BYTES = 4096  # an entry's JSON is about 120 bytes


def _read_entry(meta_path, data_path, shape):
    """(array or None, why not): the entry, read only when its files and the
    array's header say it is the float32 matrix of ``shape``."""
    for path in (meta_path, data_path):
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None, f"'{path.name}' is not a regular file"
    with open(meta_path, "rb") as f:
        meta = json.loads(f.read(_META_BYTES + 1)[: _META_BYTES + 1])
    if not isinstance(meta, dict):
        return None, "its JSON is not an object"
    with open(data_path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            stored, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            stored, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # np.save writes 1.0, or 2.0 for a long header
            return None, f"its .npy version {version} is not one np.save writes"
        if stored != shape or fortran or dtype != np.float32:
            return None, (
                f"it holds {dtype} of shape {stored}, not float32 of shape {shape}"
            )
        size = os.fstat(f.fileno()).st_size - f.tell()
        if size != math.prod(shape) * 4:
            return None, f"it holds {size} bytes of data, not {math.prod(shape) * 4}"
        value = np.fromfile(f, dtype=np.float32).reshape(shape)
    problem = _matches(value, shape)
    if problem is None and meta.get("sha256") != _checksum(value):
        problem = "its bytes differ from the checksum written with it"
    return (None, problem) if problem else (value, None)


def _load_disk(folder, key, shape):
    """The entry of ``key`` when it holds the matrix of ``shape``; None on a miss."""
    meta_path, data_path = folder / f"{key}.json", folder / f"{key}.npy"
    if not os.path.lexists(meta_path) and not os.path.lexists(data_path):
        return None
    try:
        value, problem = _read_entry(meta_path, data_path, shape)
    except Exception as err:  # noqa: BLE001 - any damage is a miss, never a crash
        value, problem = None, f"it cannot be read ({type(err).__name__}: {err})"
    if problem is not None:
        _warn(
            f"The cache entry '{data_path}' does not hold what its key says: {problem}."
        )
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
            f"{err} cannot be keyed: the cache cannot see all that changes the "
            "numbers, so nothing is cached. A callable 'reduce' should be a plain "
            "function whose closure and globals are numbers, strings, arrays, "
            "modules or functions; a backbone, modules without forward hooks whose "
            "attributes are such values."
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
