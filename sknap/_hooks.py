"""Forward hooks that record what chosen layers output, reduced to neurons."""

import numpy as np
import torch

from ._layout import UNIT_SEPARATOR

__all__ = ["LayerHooks", "reduce_output", "unit_names"]


def reduce_output(output, reduce, name="?", n_rows=None, tokens=False, mask=None):
    """(n_samples, n_units) tensor from the output of layer ``name``.

    ``n_rows``, the batch's number of samples, is checked when given: every
    block has one row per sample. With ``tokens``, a 3-D output is (batch,
    tokens, units) and is reduced over the tokens, the real ones only where
    ``mask`` (batch, tokens) says which; else over its last axis, as a conv
    map (batch, channels, length).
    """
    rows = output.shape[0] if n_rows is None and output.ndim else n_rows
    if not callable(reduce) and (output.ndim == 0 or output.shape[0] != rows):
        raise ValueError(
            f"Layer '{name}' returned an output of shape {tuple(output.shape)} for "
            f"a batch of {n_rows} samples: its first dimension is not the batch, so "
            "it has no one row per sample. Choose another layer, or give reduce a "
            "callable that maps it to shape (n_samples, n_units) (for a "
            "sequence-first output, lambda t: t.mean(0))."
        )
    if callable(reduce):
        try:
            reduced = reduce(output)
        except Exception as err:
            raise ValueError(
                f"The callable given as 'reduce' failed on the output of layer "
                f"'{name}' of shape {tuple(output.shape)}: {err!r}. It must map "
                "that tensor to shape (n_samples, n_units)."
            ) from err
        if (
            not isinstance(reduced, torch.Tensor)
            or reduced.ndim != 2
            or reduced.shape[0] != rows
        ):
            raise ValueError(
                "The callable given as 'reduce' must return a 2-D tensor of shape "
                f"(n_samples, n_units), one row per sample ({rows}); it returned "
                f"{type(reduced).__name__} of shape "
                f"{tuple(getattr(reduced, 'shape', ()))} for the output of layer "
                f"'{name}' of shape {tuple(output.shape)}."
            )
        return reduced
    if output.ndim == 1:
        return output[:, None]
    if output.ndim == 2:
        return output
    if tokens and output.ndim == 3:
        return _reduce_tokens(output, reduce, name, mask)
    if reduce == "flatten":
        return output.flatten(1)
    maps = output.flatten(2)
    if reduce == "mean":
        return maps.mean(dim=2)
    if reduce == "max":
        return maps.amax(dim=2)
    return (maps > 0).to(output.dtype).mean(dim=2)


def _reduce_tokens(output, reduce, name, mask):
    """(batch, units) from (batch, tokens, units), over the real tokens."""
    if mask is None or mask.shape != output.shape[:2]:
        mask = torch.ones(output.shape[:2], dtype=torch.bool, device=output.device)
    elif reduce == "flatten":
        raise ValueError(
            f"reduce='flatten' keeps every token of layer '{name}', but the "
            "number of tokens changes with the padding of each batch (the "
            "attention mask). Use reduce='mean' (the default), 'max' or "
            "'active_fraction', which reduce over the real tokens."
        )
    if reduce == "flatten":
        return output.flatten(1)
    real = mask.to(torch.bool)[:, :, None]
    count = real.sum(dim=1).clamp_min(1).to(output.dtype)
    if reduce == "mean":
        return torch.where(real, output, 0).sum(dim=1) / count
    if reduce == "max":
        low = torch.finfo(output.dtype).min
        top = torch.where(real, output, low).amax(dim=1)
        return torch.where(real.any(dim=1), top, 0)
    return ((output > 0) & real).sum(dim=1).to(output.dtype) / count


def unit_names(block, output_shape, reduce, n_units, tokens=False):
    """Column names of one block, ``block__unit``.

    ``n_units`` is the width after reduction; with ``reduce="flatten"`` a unit
    is named by its index in the raw output, ``channel_row_col``.
    """
    if tokens and len(output_shape) == 3 and reduce != "flatten":
        return [f"{block}{UNIT_SEPARATOR}{u}" for u in range(n_units)]
    if reduce == "flatten" and len(output_shape) > 2:
        return [
            f"{block}{UNIT_SEPARATOR}{'_'.join(map(str, index))}"
            for index in np.ndindex(*output_shape[1:])
        ]
    return [f"{block}{UNIT_SEPARATOR}{u}" for u in range(n_units)]


class LayerHooks:
    """Forward hooks that record the reduced output of every call of a module.

    A module called several times per forward pass records one block per
    call. The context manager removes every hook, also after an exception.
    """

    def __init__(self, modules, reduce, wanted=None):
        self.modules = modules
        self.reduce = reduce
        self.wanted = wanted
        self.handles = []
        self.calls = {}
        self.outputs = {}
        self.order = []
        self.shapes = {}
        # Samples of the batch in the forward pass; every block has as many rows.
        self.n_rows = None
        # Whether 3-D outputs are (batch, tokens, units), and the batch's
        # attention mask (batch, tokens) or None.
        self.tokens = False
        self.mask = None
        # Optional {(name, call): tensor view}: a block is copied straight into
        # its columns of the caller's rows, instead of cloned then concatenated.
        self.sink = None
        # Optional callable(call, block): each block is handed over inside the
        # hook, while the layer's output is in the cache, and not kept.
        self.consume = None

    def __enter__(self):
        for name, module in self.modules.items():
            self.handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []
        return False

    def reset(self):
        self.calls = {}
        self.outputs = {}
        self.order = []

    def _hook(self, name):
        def hook(module, inputs, output):
            k = self.calls.get(name, 0)
            self.calls[name] = k + 1
            if (
                self.wanted is not None
                and (name, k) not in self.wanted
                and (name, None) not in self.wanted
            ):
                return
            if not isinstance(output, torch.Tensor):
                raise ValueError(
                    f"Layer '{name}' returned {type(output).__name__}, not a tensor, "
                    "so its activations cannot be read. Choose a layer whose output "
                    "is a tensor ([name for name, _ in backbone.named_modules()] "
                    "lists the modules)."
                )
            out = output.detach()
            reduced = reduce_output(
                out, self.reduce, name, self.n_rows, self.tokens, self.mask
            )
            self.order.append((name, k))
            if self.consume is not None:
                # Used before anything later in the forward pass can change it.
                self.consume((name, k), reduced)
                return
            self.shapes[(name, k)] = tuple(out.shape)
            # Copy: an in-place ReLU after this module would overwrite the output.
            dest = None if self.sink is None else self.sink.get((name, k))
            if dest is not None and dest.shape == reduced.shape:
                reduced = dest.copy_(reduced)
            # A view (any offset, e.g. a callable's t[:, 1:]) shares the storage.
            elif (
                reduced.untyped_storage().data_ptr() == out.untyped_storage().data_ptr()
            ):
                reduced = reduced.clone()
            self.outputs[(name, k)] = reduced

        return hook
