"""Inputs of the extractor: batches from arrays, tensors, Datasets and loaders."""

import numpy as np
import torch

from . import _device
from .exceptions import ActivationMemoryError

__all__ = [
    "BATCH_HINT",
    "LABELS_RULE",
    "LABEL_KEYS",
    "batch_rows",
    "check_finite",
    "check_loader_order",
    "check_memory",
    "count_samples",
    "first_input",
    "format_bytes",
    "loader_batches",
    "paired_with_y",
    "raise_nonfinite",
]

LABELS_RULE = (
    "The rule for labels and loaders: in a Pipeline, y is given as an array, "
    "as scikit-learn requires; sknap reads a Dataset in index order; a "
    "DataLoader whose sampler does not visit the data set in order is refused "
    "(pass the Dataset itself, or a loader with shuffle=False); when batches "
    "carry labels and y is also given, the two must be equal."
)

# Samplers that reorder or draw: refused without being iterated (iterating
# RandomSampler would draw from the global random number generator).
_RANDOM_SAMPLERS = (
    torch.utils.data.RandomSampler,
    torch.utils.data.SubsetRandomSampler,
    torch.utils.data.WeightedRandomSampler,
)


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
        "make_nap_pipeline(..., streaming=True), or "
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
    "Each item must be a tensor or numpy array, all of one shape, a tuple "
    "whose first element is one (images need a transform such as "
    "torchvision.transforms.ToTensor()), or a dict of tensors (a tokenizer's "
    "output, passed to the backbone as keyword arguments; 'labels' or 'label' "
    "holds the labels)."
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
            elif isinstance(batch, dict):
                labels = next((batch[k] for k in LABEL_KEYS if k in batch), None)
            yield first_input(batch), labels
        else:
            yield first_input(batch)


# Keys of a dict batch that hold its labels, not inputs of the backbone.
LABEL_KEYS = ("labels", "label")


def batch_rows(batch):
    """Number of samples of an input batch: a tensor, or a dict of them."""
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return batch.shape[0]


def _dict_input(batch):
    """The tensors of a dict batch (a tokenizer's output), labels left out."""
    inputs = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
    if not inputs or not all(isinstance(v, torch.Tensor) for v in inputs.values()):
        raise TypeError(
            "A dict batch must map the backbone's keyword arguments to tensors "
            f"(such as input_ids and attention_mask); got keys {sorted(batch)} "
            "holding "
            + ", ".join(sorted({type(v).__name__ for v in batch.values()}))
            + ". "
            + BATCH_HINT
        )
    rows = {len(v) for v in inputs.values()}
    if len(rows) > 1:
        raise ValueError(
            f"The tensors of a dict batch have different numbers of rows {sorted(rows)}"
            "; each must hold one row per sample."
        )
    return inputs


def first_input(batch):
    """The input part of a Dataset item or DataLoader batch: a tensor, or a
    dict of tensors passed to the backbone as keyword arguments."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if isinstance(batch, dict):
        return _dict_input(batch)
    if isinstance(batch, (tuple, list)):
        raise TypeError(
            "The input part of a batch is a list: the Dataset's items are lists, "
            "which the DataLoader's default_collate turns into one tensor per "
            "feature, not one row per sample. " + BATCH_HINT
        )
    if not isinstance(batch, torch.Tensor):
        try:
            batch = torch.as_tensor(np.asarray(batch))
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"A batch of type {type(batch).__name__} from the Dataset or "
                f"DataLoader could not be made into a tensor: {err}. " + BATCH_HINT
            ) from err
    if batch.ndim < 2:
        raise TypeError(
            f"A batch from the Dataset or DataLoader has shape {tuple(batch.shape)}"
            ": no axis of features. A DataLoader with batch_size=None yields single "
            "samples, not batches, and a Dataset whose items are lists of numbers "
            "is collated into one tensor per feature: give the loader a "
            "batch_size, and make each item an array or tensor. " + BATCH_HINT
        )
    return batch


def _in_order(sampler, n):
    """Whether the sampler (of indices or of batches) visits 0 .. n-1 once
    each, in order, or a prefix of them (``drop_last``). Exact types are
    trusted; a subclass is iterated."""
    if type(sampler) is torch.utils.data.SequentialSampler:
        return len(sampler) == n
    if isinstance(sampler, _RANDOM_SAMPLERS) or getattr(sampler, "shuffle", False):
        return False
    if type(sampler) is torch.utils.data.BatchSampler:
        return _in_order(sampler.sampler, n)  # drop_last keeps a prefix
    if iter(sampler) is sampler:
        raise ValueError(
            "The DataLoader's sampler is an iterator, which can be read only "
            "once, so sknap cannot check its order (and reading it would use it "
            "up). Give a re-iterable sampler (a list, a Sampler), or pass the "
            "Dataset itself. " + LABELS_RULE
        )
    indices = []
    for item in sampler:
        if isinstance(item, (torch.Tensor, np.ndarray)):
            item = item.reshape(-1).tolist()
        elif not isinstance(item, (list, tuple)):
            item = [item]
        indices.extend(item)
        if len(indices) > n:
            return False
    return indices == list(range(len(indices)))  # all of them, or a prefix


def check_loader_order(loader):
    """Raise unless ``loader`` yields its map-style Dataset's items in index order.

    Rows returned by ``transform``, or paired with a ``y`` by position, must
    come in the data set's order; an IterableDataset has no other order than
    its own.
    """
    dataset = loader.dataset
    if isinstance(dataset, torch.utils.data.IterableDataset):
        if loader.num_workers > 1:
            raise ValueError(
                f"The DataLoader reads an IterableDataset with {loader.num_workers} "
                "workers, which interleave their items, so the rows would not "
                "come in the data set's order and would not line up with y. Use "
                "num_workers=0 or 1, or a map-style Dataset. " + LABELS_RULE
            )
        return
    if loader.num_workers > 0 and not getattr(loader, "in_order", True):
        raise ValueError(
            "The DataLoader has num_workers > 0 and in_order=False, so its batches "
            "come in the order the workers finish them, not the data set's order, "
            "and the rows would not line up with y or with the Dataset. Use "
            "in_order=True (the default), or pass the Dataset itself. " + LABELS_RULE
        )
    sampler = (
        loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
    )
    inner = getattr(sampler, "sampler", sampler)
    if not _in_order(sampler, len(dataset)):
        raise ValueError(
            f"The DataLoader given as X does not visit the data set in order (its "
            f"sampler is {type(inner).__name__}), so the rows would not line up "
            "with y or with the Dataset: pass the Dataset itself (loader.dataset), "
            "or a DataLoader with shuffle=False and no sampler. Streamed fits "
            "(ActivationEntropy().fit(extractor.batches(loader))) accept any order, "
            "since each batch carries its labels. " + LABELS_RULE
        )


def paired_with_y(batches, y):
    """``(input, labels)`` batches relabelled with the slices of ``y``.

    Labels that a batch carries must equal the slice of ``y`` at its position;
    ``y`` must hold one label per sample.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(
            f"y must be 1-D, one label per sample; got shape {y.shape}. Use "
            "y.ravel() for a column of labels."
        )
    start = 0
    for inputs, labels in batches:
        stop = start + batch_rows(inputs)
        if stop > len(y):
            raise ValueError(
                f"X yields more samples than y has labels ({len(y)}); give one "
                "label per sample. " + LABELS_RULE
            )
        expected = y[start:stop]
        if labels is not None:
            given = np.asarray(
                labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels
            ).reshape(-1)
            # Object arrays compare any two label types element by element.
            differ = (
                np.ones(len(expected), dtype=bool)
                if len(given) != len(expected)
                else given.astype(object) != expected.astype(object)
            )
            if differ.any():
                at = int(np.flatnonzero(differ)[0])
                seen = given[at] if at < len(given) else None
                raise ValueError(
                    "The labels of the Dataset differ from y (first at sample "
                    f"{start + at}: {seen!r} in the Dataset, {expected[at]!r} in "
                    "y). Give y equal to the Dataset's labels, in its index "
                    "order. " + LABELS_RULE
                )
        yield inputs, expected
        start = stop
    if start != len(y):
        raise ValueError(
            f"X yielded {start} samples but y has {len(y)} labels; give one label "
            "per sample. " + LABELS_RULE
        )
