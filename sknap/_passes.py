"""Runs of a backbone over inputs, with hooks: the one pass engine.

:class:`~sknap.ActivationExtractor`'s ``fit`` and ``transform``, its
:meth:`~sknap.ActivationExtractor.batches`, the streaming statistics and
fused scoring all run the backbone through :class:`BackbonePass`, which
holds for one pass what every batch needs: the backbone on the device, the
hooked modules, the input batches, and the options of the forward pass. A
fitted extractor's :class:`~sknap._layout.ColumnLayout` says where each block
of neurons goes.
"""

import contextlib

import torch
from torch import nn
from tqdm.auto import tqdm

from . import _device, _layers
from ._histogram import as_tensor
from ._hooks import LayerHooks
from ._inputs import (
    batch_rows,
    check_finite,
    check_loader_order,
    loader_batches,
    paired_with_y,
    raise_nonfinite,
)
from .exceptions import ActivationMemoryError

__all__ = ["BackbonePass", "consume_blocks", "iter_rows"]

_DATA = (torch.utils.data.Dataset, torch.utils.data.DataLoader)


def input_batches(X, y, batch_size, *, labelled=False, ordered=False):
    """(number of batches or None, iterator of input batches as tensors).

    With ``labelled``, the iterator yields ``(input, labels)`` pairs: the
    slices of ``y`` for arrays, the second element of a Dataset's items
    (checked against ``y`` when both are there). With ``ordered``, or a
    ``y``, a DataLoader must visit its Dataset in index order.
    """
    if isinstance(X, _DATA):
        loader = X
        if not isinstance(X, torch.utils.data.DataLoader):
            loader = torch.utils.data.DataLoader(X, batch_size=batch_size)
        elif ordered or y is not None:
            check_loader_order(loader)
        try:
            total = len(loader)
        except TypeError:
            total = None
        batches = loader_batches(loader, labelled=labelled or y is not None)
        if y is not None:
            batches = paired_with_y(batches, y)
            if not labelled:
                batches = (inputs for inputs, _ in batches)
        return total, batches
    starts = range(0, X.shape[0], batch_size)
    inputs = (as_tensor(X[s : s + batch_size]) for s in starts)
    if not labelled:
        return len(starts), inputs
    if y is None:
        return len(starts), ((x, None) for x in inputs)
    return len(starts), (
        (x, y[s : s + batch_size]) for s, x in zip(starts, inputs, strict=True)
    )


def check_input_batch(batch):
    """Raise when an input batch (in the backbone's dtype) is not finite."""
    if isinstance(batch, dict):
        for value in batch.values():
            check_input_batch(value)
        return
    if not _device.all_finite(batch):
        raise ValueError(
            "Input X contains NaN or infinity, or values beyond the range of "
            f"the backbone's dtype {batch.dtype} (largest "
            f"{torch.finfo(batch.dtype).max:.3g}). Remove or impute those "
            "values, and scale X as in training, before extracting activations."
        )


class BackbonePass:
    """One pass of an extractor's backbone over ``X``.

    Parameters
    ----------
    extractor : ActivationExtractor
        Its parameters say how to run the backbone; after fit, its
        ``layout_`` and ``input_shape_`` say what every batch must give.
    X : array, Tensor, Dataset or DataLoader
        The inputs, validated.
    y : array-like or None
        Labels paired with the batches.
    ordered : bool
        A DataLoader must visit its Dataset in order (the rows are returned).
    """

    def __init__(self, extractor, X, y=None, *, ordered=False):
        self.extractor = extractor
        self.device = _device.resolve_device(extractor.device)
        self.backbone = _device.on_device(extractor.backbone, self.device)
        self.modules, self.wanted = _layers.select(self.backbone, extractor.layers)
        self.dtype = _device.float_dtype(self.backbone)
        modules = list(self.backbone.modules())
        # Token ids reach a backbone that embeds them as they are; other
        # integer inputs (images) are cast to its float dtype.
        self.keep_integers = any(
            isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in modules
        )
        # 3-D outputs are (batch, tokens, units), except in a backbone with
        # 1-D convolutions, whose maps are (batch, channels, length).
        self.tokens = not any(isinstance(m, nn.Conv1d) for m in modules)
        self.to_device = {
            "pin": _device.use_pinned_memory(extractor.pin_memory, self.device),
            "channels_last": _device.use_channels_last(
                extractor.channels_last, self.backbone
            ),
        }
        total, self.batches = input_batches(
            X, y, extractor.batch_size, labelled=True, ordered=ordered
        )
        if extractor.progress:
            self.batches = tqdm(self.batches, total=total, desc="extract")

    @contextlib.contextmanager
    def hooked(self):
        """The hooks, with the backbone locked, in eval mode, under no_grad."""
        with (
            _device.exclusive(self.backbone),
            _device.EvalMode(self.backbone),
            torch.no_grad(),
            LayerHooks(self.modules, self.extractor.reduce, self.wanted) as hooks,
        ):
            hooks.tokens = self.tokens
            yield hooks

    def forward(self, hooks, batch, *, check=True, proba=True):
        """(probabilities or None, the batch as the backbone received it).

        Without ``check`` the input is not looked at: the caller checks the
        rows, and only when they are not finite, the input (NaN or infinity in
        X shows in the activations). Without ``proba`` the probabilities are
        not computed.
        """
        hooks.reset()
        hooks.n_rows = batch_rows(batch)
        keyword = isinstance(batch, dict)
        was_float = keyword or batch.is_floating_point()
        dtype = self.dtype
        if not was_float and self.keep_integers:
            dtype = None
        # sknap's own copy of the batch: a backbone that edits its input in
        # place (x.sub_(mean)) must not write to the caller's X.
        batch = _device.to_device(batch, self.device, dtype, **self.to_device)
        hooks.mask = batch.get("attention_mask") if keyword else None
        if check:
            check_input_batch(batch)
        try:
            with _device.autocast(self.device, self.extractor.autocast):
                output = self.backbone(**batch) if keyword else self.backbone(batch)
        except torch.cuda.OutOfMemoryError as err:
            raise self._out_of_memory(batch, err) from err
        except (RuntimeError, TypeError, IndexError) as err:
            if "can't allocate memory" in str(err) or "out of memory" in str(err):
                raise self._out_of_memory(batch, err) from err
            cast = ""
            if not was_float:
                cast = (
                    f" X is of an integer or boolean type and was cast to {self.dtype}"
                    ", the backbone's dtype: integer inputs such as token ids are "
                    "not supported yet."
                )
            if keyword:
                cast = (
                    f" The batch is a dict, given to the backbone as keyword "
                    f"arguments {sorted(batch)}: each key must be one of its "
                    "forward's arguments."
                )
            raise ValueError(
                f"The backbone failed on a batch of shape {_shape(batch)}: {err}. "
                "Check that X has the shape the backbone expects, (n_samples, "
                f"*input_shape).{cast}"
            ) from err
        if any(m.training for m in self.backbone.modules()):
            raise RuntimeError(
                "The backbone was switched to training mode while sknap ran it in "
                "eval mode (by another thread using the same module, or by its own "
                "forward pass), so these activations may come from training mode "
                "(dropout, batch statistics). Do not train a module in another "
                "thread while sknap reads it: give sknap a copy "
                "(copy.deepcopy(model)). Its train/eval flags were restored."
            )
        if not proba:
            return None, batch
        kind, key = self.extractor.output, self.extractor.output_key
        return _layers.class_probabilities(output, kind, key), batch

    def _out_of_memory(self, batch, err):
        return ActivationMemoryError(
            f"The backbone ran out of memory on {self.device.type} with a batch of "
            f"{batch_rows(batch)} samples ({err}). Lower batch_size (now "
            f"{self.extractor.batch_size}), use device='cpu', record fewer layers, "
            "or use a reduce other than 'flatten'."
        )

    def check(self, batch, hooks=None):
        """Raise when a batch differs from fit: its shape, or the layers that ran."""
        fitted = self.extractor.input_shape_
        if sample_shape(batch) != fitted:
            raise ValueError(
                f"X has samples of shape {sample_shape(batch)}, but "
                f"{type(self.extractor).__name__} was fitted on samples of shape "
                f"{fitted}."
            )
        if hooks is not None and tuple(hooks.order) != self.extractor.layout_.calls:
            raise ValueError(
                "The layers ran in a different order or number of calls than "
                "during fit, so the columns would not line up. Refit the "
                "extractor; the backbone's forward pass must not depend on the "
                "batch."
            )


def _shape(batch):
    if isinstance(batch, dict):
        return {k: tuple(v.shape) for k, v in batch.items()}
    return tuple(batch.shape)


def sample_shape(batch):
    """Shape of one sample: of a tensor batch; for a dict batch (token
    sequences, padded per batch), its keys."""
    if isinstance(batch, dict):
        return tuple(sorted(batch))
    return tuple(batch.shape[1:])


def _check_width(name, block, width):
    """Raise when a block (None: the probabilities) is not as wide as at fit."""
    if block.shape[1] != width:
        what = "The backbone's output" if name is None else f"Layer '{name}'"
        raise ValueError(
            f"{what} gives {block.shape[1]} columns where fit saw {width}: the "
            "backbone (or the callable given as 'reduce') changed after fit, so "
            "the columns would not line up. Call fit again."
        )


def iter_rows(extractor, X, y=None, *, hold=False, ordered=False):
    """Yield ``(Z, labels)`` per batch: the rows of ``transform`` as a
    float32 tensor on the device, and the batch's labels or None.

    By default hooks, eval mode and ``no_grad`` hold only during each
    forward pass, not while the caller works on a batch (which may run the
    backbone itself). With ``hold`` they hold from the first batch until
    the generator is closed, for callers in this package: they must close
    it (``contextlib.closing``), even after an error. With ``ordered``, a
    DataLoader must visit its Dataset in order (the rows are returned).
    """
    run = BackbonePass(extractor, X, y, ordered=ordered)
    layout = extractor.layout_
    slices = [*(layout.slices[b] for b in layout.blocks), layout.slices["proba"]]
    names = [*layout.blocks, None]
    n_columns = layout.n_neurons + layout.n_outputs
    with contextlib.ExitStack() as held:
        if hold:
            hooks = held.enter_context(run.hooked())
        for batch, labels in run.batches:
            run.check(batch)
            values = torch.empty(
                (batch_rows(batch), n_columns), dtype=torch.float32, device=run.device
            )
            with contextlib.nullcontext(hooks) if hold else run.hooked() as hooks:
                # The hooks write each block into its columns of `values`.
                hooks.sink = {
                    call: values[:, sl]
                    for call, sl in zip(layout.calls, slices, strict=False)
                }
                proba, batch = run.forward(hooks, batch, check=False)
                run.check(batch, hooks)
                blocks = [hooks.outputs[c] for c in layout.calls] + [proba]
            for name, block, sl in zip(names, blocks, slices, strict=True):
                _check_width(name, block, sl.stop - sl.start)
                view = values[:, sl]
                if block.data_ptr() != view.data_ptr():
                    view.copy_(block)
            if not _device.all_finite(values):
                check_input_batch(batch)
                check_finite(zip([*layout.blocks, None], blocks, strict=True))
            yield values, labels


def consume_blocks(extractor, X, y, start, consume, finish, probabilities=True):
    """Run the backbone over ``X``, handing every block to callbacks while
    it is in the cache: nothing is copied, nothing kept.

    For each batch, ``state = start(labels, n_rows, device)``; then,
    inside the forward hook of every recorded layer call,
    ``consume(state, offset, block)``, ``offset`` the block's first column
    in the rows of ``transform`` and ``block`` a float32 tensor, and the
    same for the probabilities after the forward pass; then
    ``finish(state)``. ``consume`` looks for NaN and infinity and returns
    False when it finds some: the pass then stops with the error that
    names X or the layer. The hooks hold for the whole pass. Without
    ``probabilities`` the backbone's output is left alone: no softmax, no
    ``consume`` of those columns.
    """
    run = BackbonePass(extractor, X, y)
    layout = extractor.layout_
    slices = layout.slices
    offsets = {
        call: (slices[name], name)
        for call, name in zip(layout.calls, layout.blocks, strict=True)
    }
    proba = slices["proba"]
    state, bad = None, []

    def take(call, block):
        columns, name = offsets.get(call, (None, None))
        if columns is None:
            return  # a call fit did not see: run.check raises
        _check_width(name, block, columns.stop - columns.start)
        offset = columns.start
        if block.dtype != torch.float32:
            block = block.float()
        if not consume(state, offset, block):
            bad.append(name)

    with run.hooked() as hooks:
        hooks.consume = take
        for batch, labels in run.batches:
            run.check(batch)
            state = start(labels, batch_rows(batch), run.device)
            probs, batch = run.forward(hooks, batch, check=False, proba=probabilities)
            run.check(batch, hooks)
            if probabilities:
                _check_width(None, probs, proba.stop - proba.start)
                if not consume(state, proba.start, probs):
                    bad.append(None)
            if bad:
                check_input_batch(batch)
                raise_nonfinite(bad[0])
            finish(state)
