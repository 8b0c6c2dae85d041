"""Inputs of the extractor: batches from arrays, tensors, Datasets and loaders."""

import numpy as np
import torch

from . import _device
from .exceptions import ActivationMemoryError

__all__ = [
    "BATCH_HINT",
    "check_finite",
    "check_memory",
    "count_samples",
    "first_input",
    "format_bytes",
    "loader_batches",
    "raise_nonfinite",
]


def count_samples(X):
    """(n_samples, exact): how many samples ``X`` yields; n_samples is None if unknown.

    ``exact`` is False where the number is only an estimate (a user's
    DataLoader may drop the last batch or use any sampler).
    """
    if isinstance(X, torch.utils.data.DataLoader):
        # Its sampler says how many samples it yields (a subset sampler
        # fewer than the dataset); with a custom batch_sampler it is unknown.
        if X.batch_size is None:
            return None, False
        X = X.sampler
        exact = False
    else:
        exact = not isinstance(X, torch.utils.data.IterableDataset)
    try:
        return len(X), exact
    except TypeError:
        return None, False


def check_memory(n_samples, n_columns):
    """Raise before allocating a float32 result that the memory cannot hold."""
    if n_samples is None:
        return
    needed = n_samples * n_columns * 4
    available = _device.available_memory()
    if available is None or needed <= available:
        return
    raise ActivationMemoryError(
        f"The activation matrix of {n_samples} samples x {n_columns} columns "
        f"(float32) needs {format_bytes(needed)}, but only "
        f"{format_bytes(available)} of memory is available. Stream instead: "
        "ActivationEntropy().fit(extractor.batches(X, y)) and "
        "ActivationProbabilityFeatures().fit(extractor.batches(X, y)) keep only "
        "counts, never the whole matrix (see sknap.streaming); or transform X "
        "in slices, record fewer layers, or use a reduce other than 'flatten'."
    )


def format_bytes(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1024


def check_finite(blocks):
    """Raise when a recorded block, or the output (name None), has NaN or inf."""
    for name, values in blocks:
        if not _device.all_finite(values):
            raise_nonfinite(name)


def raise_nonfinite(name):
    """The error for NaN or infinity in block ``name`` (None: the output)."""
    where = "its output" if name is None else f"layer '{name}'"
    raise ValueError(
        f"The backbone produced NaN or infinity in {where} although X is "
        "finite. Its weights may hold NaN or inf (check "
        "torch.isfinite(p).all() for p in backbone.parameters()), or its "
        "activations overflow: scale the inputs as in training, and run a "
        "float16 backbone in float32 (backbone.float())."
    )


BATCH_HINT = (
    "Each item must be a tensor or numpy array, all of one shape, or a tuple "
    "whose first element is one (images need a transform such as "
    "torchvision.transforms.ToTensor())."
)


def loader_batches(loader, labelled=False):
    """Input tensors of a DataLoader's batches; a batching failure says why.

    With ``labelled``, ``(input, labels)`` pairs: the second element of a
    ``(x, y, ...)`` batch, or None.
    """
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (TypeError, RuntimeError) as err:
            raise TypeError(
                f"Reading a batch from the Dataset or DataLoader failed: {err}. "
                + BATCH_HINT
            ) from err
        if labelled:
            labels = None
            if isinstance(batch, (tuple, list)) and len(batch) > 1:
                labels = batch[1]
            yield first_input(batch), labels
        else:
            yield first_input(batch)


def first_input(batch):
    """The input part of a Dataset item or DataLoader batch."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if isinstance(batch, dict):
        raise ValueError(
            "The Dataset yields dicts; ActivationExtractor expects tensors or "
            "(input, target) tuples. Wrap it so that it yields the input first."
        )
    if not isinstance(batch, torch.Tensor):
        try:
            batch = torch.as_tensor(np.asarray(batch))
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"A batch of type {type(batch).__name__} from the Dataset or "
                f"DataLoader could not be made into a tensor: {err}. " + BATCH_HINT
            ) from err
    return batch
