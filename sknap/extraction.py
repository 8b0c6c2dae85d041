"""Activations of a PyTorch classifier, as a scikit-learn transformer."""

import contextlib
import difflib
import os
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from tqdm.auto import tqdm

from . import _cache, _device, streaming
from ._histogram import as_tensor
from ._hooks import LayerHooks, unit_names
from ._inputs import (
    check_finite,
    check_loader_order,
    check_memory,
    count_samples,
    loader_batches,
    paired_with_y,
    raise_nonfinite,
)
from ._layout import PROBA_PREFIX
from .exceptions import ActivationMemoryError

__all__ = ["ActivationExtractor", "list_layers"]

REDUCTIONS = ("mean", "max", "active_fraction", "flatten")
OUTPUTS = ("logits", "proba", "log_proba")
CALL_SEPARATOR = "#"


def list_layers(backbone):
    """Names of the modules of ``backbone`` that ``layers`` can refer to.

    Parameters
    ----------
    backbone : torch.nn.Module
        The classifier.

    Returns
    -------
    names : list of str
        Module names as in ``backbone.named_modules()``, the root excluded.

    Examples
    --------
    >>> from sknap.toy import make_mlp
    >>> list_layers(make_mlp(4, 3, hidden=(5,)))
    ['fc1', 'relu1', 'out']
    """
    return [name for name, _ in backbone.named_modules() if name]


class ActivationExtractor(TransformerMixin, BaseEstimator):
    """Activations of chosen layers of a PyTorch classifier, then its probabilities.

    ``transform`` runs the backbone in eval mode, in batches, without
    gradients, and returns one row per sample laid out as::

        [block 1 units | ... | block L units | proba_<class> ...]

    The last ``n_outputs_`` columns are the softmax of the backbone's output;
    the steps after this one find them there. :meth:`get_feature_names_out`
    names every column: ``<block>__<unit>`` for activations, where a block is
    a module name, with ``#k`` appended for the k-th call of a module called
    several times per forward pass, and ``proba_<class>`` for probabilities.

    The backbone is held, not copied: :func:`sklearn.base.clone` of this
    estimator, or of a pipeline or grid search holding it, shares the same
    module. It is never modified: its train/eval flags are restored, hooks are
    removed (also on error), and it is copied rather than moved when
    ``device`` differs from where its weights are. Each batch it sees is
    sknap's own copy, so a forward pass that edits its input in place
    (``x.sub_(mean)``) never changes ``X``.

    Threads: while a pass runs the backbone is in eval mode, and another
    thread using the same module at that moment sees eval mode too; sknap's
    own passes over one module take turns. A pass during which the module is
    switched to training mode fails with an error that says so. Give sknap a
    copy (``copy.deepcopy(model)``) of a module that is trained elsewhere.

    Labels and loaders, one rule: in a ``Pipeline``, ``y`` is given as an
    array, as scikit-learn requires; sknap reads a ``Dataset`` in index
    order; a ``DataLoader`` whose sampler does not visit the data set in
    order is refused wherever rows are returned or paired with ``y`` by
    position (pass the Dataset itself, or a loader with ``shuffle=False``);
    when batches carry labels and ``y`` is also given, the two must be equal.
    Streamed fits from :meth:`batches` without ``y`` accept any order, since
    each batch carries its own labels.

    Parameters
    ----------
    backbone : torch.nn.Module
        A trained classifier mapping a batch of inputs to one row of class
        scores per sample.
    layers : str, type, or list of str and types, default=None
        Modules whose outputs are recorded. A str is a module name as listed by
        :func:`list_layers`; ``"name#k"`` keeps only the k-th call of that
        module. A type, such as ``torch.nn.ReLU``, selects every module of that
        type. ``None`` is the paper's choice: every ``nn.ReLU`` module, that is
        every ReLU output but the output layer. Blocks are ordered by the first
        time they run in the forward pass.
    reduce : {"mean", "max", "active_fraction", "flatten"} or callable, \
            default="mean"
        How an output with spatial dimensions, (n, C, H, W) or (n, C, L),
        becomes neurons; 2-D outputs are kept as they are. ``"mean"`` (the
        default) gives one neuron per channel, the spatial mean: what the
        network's own global pooling sees, and a size that stays small for
        large inputs. ``"max"`` is the spatial maximum and
        ``"active_fraction"`` the fraction of positions > 0 (one per channel).
        ``"flatten"`` keeps every unit (channel x position), the paper's
        literal definition, whose size grows with the input. A callable maps
        the output tensor to a (n, n_units) tensor.
    batch_size : int, default=256
        Samples per forward pass.
    device : str or torch.device, default="auto"
        Where the forward pass runs: ``"auto"`` is CUDA when available, else
        the CPU.
    output : {"logits", "proba", "log_proba"}, default="logits"
        What the backbone returns; the probabilities are its softmax, itself,
        or its exponential.
    output_key : int or str, default=None
        When the backbone returns a tuple or a dict, the index or key of the
        class scores (``0`` or ``"logits"`` for torchvision's Inception-v3 in
        training mode).
    classes : array-like of shape (n_outputs,), default=None
        Labels of the backbone's outputs, used in the probability column
        names; ``None`` is ``0 .. n_outputs - 1``.
    progress : bool, default=False
        Show a progress bar over batches.
    cache : None, "memory" or path, default=None
        Reuse results: ``"memory"`` (or True) keeps them in this process, a
        directory path on disk, shared by processes. A result is keyed on the
        backbone's weights, the parameters above and the data's bytes, so a
        grid search over later steps runs the backbone once per fold instead
        of once per candidate. Only arrays and tensors are cached, not
        Datasets. Nothing read from the folder can run code; the folder is
        created owner-only and must be owned by this user, with no write
        permission for others. What the key cannot see (state that
        ``forward`` reads from outside the backbone's modules) is listed in
        ``sknap/_cache.py``.
    autocast : None, "bfloat16" or "float16", default=None
        Run the forward pass under ``torch.autocast`` to this dtype: several
        times faster on CUDA tensor cores, but activations then differ from
        float32 ones by about 1e-2 relative, enough to move values across bin
        edges; None (the default) keeps the backbone's own precision.
    channels_last : "auto" or bool, default="auto"
        Give 4-D inputs the channels-last memory layout. ``"auto"`` does when
        the backbone's own weights are channels-last. The numbers are the
        same up to rounding.
    pin_memory : "auto" or bool, default="auto"
        Pin host batches before copying them to CUDA without blocking;
        ``"auto"`` does whenever the device is CUDA. Exact.

    Attributes
    ----------
    layer_names_ : list of str
        Name of every block of columns, in column order.
    layer_slices_ : dict of str to slice
        Columns of each block, and of ``"proba"``.
    layer_shapes_ : dict of str to tuple
        Shape of each block's raw output for one sample.
    n_neurons_ : int
        Number of activation columns.
    n_outputs_ : int
        Number of classes the backbone scores (probability columns).
    input_shape_ : tuple
        Shape of one sample.
    n_features_in_ : int
        ``input_shape_[0]``, the length of ``X``'s second axis.

    See Also
    --------
    list_layers : Names that ``layers`` accepts.
    ActivationEntropy : Entropy of the extracted activations.
    make_nap_pipeline : The whole method in one Pipeline.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import ActivationExtractor
    >>> from sknap.toy import make_mlp
    >>> net = make_mlp(4, 3, hidden=(5, 2), random_state=0)
    >>> X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    >>> extractor = ActivationExtractor(net).fit(X)
    >>> extractor.transform(X).shape
    (6, 10)
    >>> extractor.get_feature_names_out()[[0, 5, 7]].tolist()
    ['relu1__0', 'relu2__0', 'proba_0']
    """

    _parameter_constraints = {
        "backbone": [nn.Module],
        "layers": [None, str, type, list, tuple],
        "reduce": [StrOptions(set(REDUCTIONS)), callable],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "output": [StrOptions(set(OUTPUTS))],
        "output_key": [None, Integral, str],
        "classes": ["array-like", None],
        "progress": ["boolean"],
        "cache": [None, "boolean", StrOptions({"memory"}), str, os.PathLike],
        "autocast": [None, StrOptions(set(_device.AUTOCAST_DTYPES))],
        "channels_last": [StrOptions({"auto"}), "boolean"],
        "pin_memory": [StrOptions({"auto"}), "boolean"],
    }

    def __init__(
        self,
        backbone,
        *,
        layers=None,
        reduce="mean",
        batch_size=256,
        device="auto",
        output="logits",
        output_key=None,
        classes=None,
        progress=False,
        cache=None,
        autocast=None,
        channels_last="auto",
        pin_memory="auto",
    ):
        self.backbone = backbone
        self.layers = layers
        self.reduce = reduce
        self.batch_size = batch_size
        self.device = device
        self.output = output
        self.output_key = output_key
        self.classes = classes
        self.progress = progress
        self.cache = cache
        self.autocast = autocast
        self.channels_last = channels_last
        self.pin_memory = pin_memory

    def __sklearn_clone__(self):
        # Share the backbone: a deep copy per fold or grid candidate would cost
        # the model's size each time, and its weights are read-only here.
        params = self.get_params(deep=False)
        backbone = params.pop("backbone")
        return type(self)(
            backbone, **{k: clone(v, safe=False) for k, v in params.items()}
        )

    def __getstate__(self):
        # A copy: object.__getstate__ returns the live __dict__, and the
        # estimator must keep the module the user gave, wherever it is.
        state = dict(super().__getstate__())
        if isinstance(state.get("backbone"), nn.Module):
            state["backbone"] = _device.cpu_copy_if_cuda(state["backbone"])
        return state

    # -- input ---------------------------------------------------------------

    def _check_input(self, X, reset):
        """Validated ``X`` (array or tensor) or a Dataset/DataLoader as it is."""
        if isinstance(X, (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
            return X
        if isinstance(X, torch.Tensor):
            if X.ndim < 2 or X.shape[0] == 0:
                raise ValueError(
                    "X must be a tensor of shape (n_samples, ...) with at least one "
                    f"sample and one feature. Got shape {tuple(X.shape)}."
                )
            # Later calls check every batch as it goes through the backbone.
            if reset and X.is_floating_point() and not torch.isfinite(X).all():
                raise ValueError(
                    "Input X contains NaN or infinity. Remove or impute those "
                    "values before extracting activations."
                )
            if reset:
                self.n_features_in_ = X.shape[1]
            return X
        return validate_data(
            self,
            X,
            reset=reset,
            allow_nd=True,
            dtype="numeric",
            ensure_min_features=1,
            ensure_all_finite=reset,
        )

    def _batches(self, X, y=None, labelled=False, ordered=False):
        """(number of batches or None, iterator of input batches as tensors).

        With ``labelled``, the iterator yields ``(input, labels)`` pairs: the
        slices of ``y`` for arrays, the second element of a Dataset's items
        (checked against ``y`` when both are there). With ``ordered``, or a
        ``y``, a DataLoader must visit its Dataset in index order.
        """
        if isinstance(X, (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
            loader = X
            if not isinstance(X, torch.utils.data.DataLoader):
                loader = torch.utils.data.DataLoader(
                    X, batch_size=self.batch_size, shuffle=False
                )
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
        starts = range(0, X.shape[0], self.batch_size)
        inputs = (as_tensor(X[s : s + self.batch_size]) for s in starts)
        if not labelled:
            return len(starts), inputs
        if y is None:
            return len(starts), ((x, None) for x in inputs)
        return len(starts), (
            (x, y[s : s + self.batch_size]) for s, x in zip(starts, inputs, strict=True)
        )

    # -- forward -------------------------------------------------------------

    def _resolve_modules(self, backbone):
        named = dict(backbone.named_modules())
        named.pop("", None)
        layers = self.layers
        if layers is None:
            chosen = [n for n, m in named.items() if isinstance(m, nn.ReLU)]
            if not chosen:
                raise ValueError(
                    "layers=None selects every nn.ReLU module, but the backbone has "
                    "none (it may call torch.nn.functional.relu, which hooks cannot "
                    "see). Choose layers by name or type, for instance "
                    f"layers={list(named)[-2:]!r}; see sknap.list_layers(backbone)."
                )
            return {n: named[n] for n in chosen}, None
        if isinstance(layers, (str, type)):
            layers = [layers]
        modules, wanted = {}, set()
        any_call_filter = False
        for spec in layers:
            if isinstance(spec, type):
                matched = [n for n, m in named.items() if isinstance(m, spec)]
                if not matched:
                    raise ValueError(
                        f"No module of type {spec.__name__} (given in 'layers') is in "
                        "the backbone. See sknap.list_layers(backbone) for its "
                        "modules."
                    )
                for n in matched:
                    modules[n] = named[n]
                    wanted.add((n, None))
                continue
            if not isinstance(spec, str):
                raise TypeError(
                    "Each entry of 'layers' must be a module name (str) or a module "
                    f"type. Got {spec!r} of type {type(spec).__name__}."
                )
            name, call = spec, None
            if CALL_SEPARATOR in spec:
                name, _, k = spec.rpartition(CALL_SEPARATOR)
                if not k.isdigit():
                    raise ValueError(
                        f"Layer '{spec}' in 'layers': the part after "
                        f"'{CALL_SEPARATOR}' must be a call index such as "
                        f"'{name}{CALL_SEPARATOR}0'."
                    )
                call, any_call_filter = int(k), True
            if name not in named:
                close = difflib.get_close_matches(name, list(named), n=3, cutoff=0.6)
                hint = (
                    f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
                )
                raise ValueError(
                    f"Layer '{name}' given in 'layers' is not a module of the "
                    f"backbone.{hint} sknap.list_layers(backbone) lists the names."
                )
            modules[name] = named[name]
            wanted.add((name, call))
        if not any_call_filter:
            return modules, None
        return modules, wanted

    def _probabilities(self, output):
        if isinstance(output, (tuple, list, dict)):
            if self.output_key is None:
                kind = "dict" if isinstance(output, dict) else "tuple"
                keys = (
                    list(output)
                    if isinstance(output, dict)
                    else list(getattr(output, "_fields", range(len(output))))
                )
                raise ValueError(
                    f"The backbone returned a {kind} ({keys}), not a tensor of class "
                    "scores. Set output_key to the index or key of the scores, for "
                    f"instance output_key={keys[0]!r}."
                )
            try:
                if isinstance(self.output_key, str) and not isinstance(output, dict):
                    output = getattr(output, self.output_key)
                else:
                    output = output[self.output_key]
            except (KeyError, IndexError, AttributeError) as err:
                raise ValueError(
                    f"output_key={self.output_key!r} is not in the backbone's output "
                    f"of type {type(output).__name__}."
                ) from err
        if not isinstance(output, torch.Tensor) or output.ndim != 2:
            raise ValueError(
                "The backbone must return class scores of shape (n_samples, "
                f"n_classes); it returned {type(output).__name__} of shape "
                f"{tuple(getattr(output, 'shape', ()))}."
            )
        output = output.detach().float()
        if self.output == "logits":
            # Along rows: each row's result does not depend on its position in
            # the batch (the transpose's vector lanes rounded by position).
            return torch.softmax(output, dim=1)
        if self.output == "log_proba":
            return output.exp()
        return output

    def _input_layout(self, backbone, device):
        """Keyword arguments of ``_device.to_device``, decided once per pass."""
        return {
            "pin": _device.use_pinned_memory(self.pin_memory, device),
            "channels_last": _device.use_channels_last(self.channels_last, backbone),
        }

    @contextlib.contextmanager
    def _hooked(self, backbone, modules, wanted):
        """The hooks, with the backbone locked, in eval mode, under no_grad."""
        with (
            _device.exclusive(backbone),
            _device.EvalMode(backbone),
            torch.no_grad(),
            LayerHooks(modules, self.reduce, wanted) as hooks,
        ):
            yield hooks

    @staticmethod
    def _check_batch(batch):
        """Raise when an input batch (in the backbone's dtype) is not finite."""
        if not _device.all_finite(batch):
            raise ValueError(
                "Input X contains NaN or infinity, or values beyond the range of "
                f"the backbone's dtype {batch.dtype} (largest "
                f"{torch.finfo(batch.dtype).max:.3g}). Remove or impute those "
                "values, and scale X as in training, before extracting activations."
            )

    def _forward(
        self, backbone, hooks, batch, device, dtype, layout, check=True, proba=True
    ):
        """(probabilities, the batch as the backbone received it).

        Without ``check`` the input is not looked at: the caller checks the
        rows, and only when they are not finite, the input (NaN or infinity in
        X shows in the activations). Without ``proba`` the probabilities are
        not computed (None).
        """
        hooks.reset()
        hooks.n_rows = batch.shape[0]
        # sknap's own copy of the batch: a backbone that edits its input in
        # place (x.sub_(mean)) must not write to the caller's X.
        batch = _device.to_device(batch, device, dtype, **layout)
        if check:
            self._check_batch(batch)
        try:
            with _device.autocast(device, self.autocast):
                output = backbone(batch)
        except torch.cuda.OutOfMemoryError as err:
            raise self._out_of_memory(batch, device, err) from err
        except (RuntimeError, TypeError, IndexError) as err:
            if "can't allocate memory" in str(err) or "out of memory" in str(err):
                raise self._out_of_memory(batch, device, err) from err
            raise ValueError(
                f"The backbone failed on a batch of shape {tuple(batch.shape)}: "
                f"{err}. Check that X has the shape the backbone expects, "
                "(n_samples, *input_shape)."
            ) from err
        if backbone.training:
            raise RuntimeError(
                "The backbone was switched to training mode while sknap ran it in "
                "eval mode (by another thread using the same module, or by its own "
                "forward pass), so these activations may come from training mode "
                "(dropout, batch statistics). Do not train a module in another "
                "thread while sknap reads it: give sknap a copy "
                "(copy.deepcopy(model)). Its train/eval flags were restored."
            )
        return (self._probabilities(output) if proba else None), batch

    def _out_of_memory(self, batch, device, err):
        return ActivationMemoryError(
            f"The backbone ran out of memory on {device.type} with a batch of "
            f"{batch.shape[0]} samples ({err}). Lower batch_size (now "
            f"{self.batch_size}), use device='cpu', record fewer layers, or use "
            "a reduce other than 'flatten'."
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Find the blocks and the column layout with one forward pass.

        Only the first samples go through the backbone; nothing is learned
        from the data.

        Parameters
        ----------
        X : array-like, Tensor, Dataset or DataLoader
            Inputs of shape ``(n_samples, *input_shape)``. A Dataset may yield
            ``x`` or ``(x, y, ...)``.
        y : None
            Ignored.

        Returns
        -------
        self : ActivationExtractor
            The fitted extractor.
        """
        X = self._check_input(X, reset=True)
        device = _device.resolve_device(self.device)
        backbone = _device.on_device(self.backbone, device)
        modules, wanted = self._resolve_modules(backbone)
        _, batches = self._batches(X)
        first = next(iter(batches), None)
        if first is None:
            raise ValueError("X is empty: ActivationExtractor needs at least 1 sample.")
        first = first[:2]
        self.input_shape_ = tuple(first.shape[1:])
        if not hasattr(self, "n_features_in_") or isinstance(
            X, (torch.utils.data.Dataset, torch.utils.data.DataLoader)
        ):
            self.n_features_in_ = self.input_shape_[0] if self.input_shape_ else 1
        with self._hooked(backbone, modules, wanted) as hooks:
            proba, _ = self._forward(
                backbone,
                hooks,
                first,
                device,
                _device.float_dtype(backbone),
                self._input_layout(backbone, device),
            )
        for name, k in sorted(wanted or (), key=str):
            n_calls = hooks.calls.get(name, 0)
            if k is not None and 0 < n_calls <= k:
                raise ValueError(
                    f"Layer '{name}{CALL_SEPARATOR}{k}' given in 'layers' does not "
                    f"exist: module '{name}' runs {n_calls} time(s) per forward "
                    f"pass, so the call index must be in [0, {n_calls - 1}]."
                )
        if not hooks.order:
            raise ValueError(
                f"None of the layers {sorted(modules)} ran during the forward pass, "
                "so no activation was recorded. Choose modules the forward pass "
                "uses (see sknap.list_layers(backbone))."
            )
        # Name blocks by the module's total calls, so that 'relu#1' selected
        # alone keeps its '#1'.
        block_names = [
            f"{n}{CALL_SEPARATOR}{k}" if hooks.calls[n] > 1 else n
            for n, k in hooks.order
        ]
        outputs = [hooks.outputs[call] for call in hooks.order]
        check_finite([*zip(block_names, outputs, strict=True), (None, proba)])
        self._calls = list(hooks.order)
        self.n_outputs_ = proba.shape[1]
        if self.n_outputs_ < 2:
            raise ValueError(
                f"The backbone returns {self.n_outputs_} score per sample, but sknap "
                "needs one score per class, at least 2 (a softmax over one score is "
                "always 1). For a binary classifier with a single logit z, wrap it "
                "to return torch.cat([torch.zeros_like(z), z], dim=1), the logits "
                "of classes 0 and 1."
            )
        names, self.layer_names_, self.layer_slices_ = [], [], {}
        self.layer_shapes_ = {}
        for block, call, values in zip(block_names, hooks.order, outputs, strict=True):
            shape = hooks.shapes[call]
            units = unit_names(block, shape, self.reduce, values.shape[1])
            self.layer_names_.append(block)
            self.layer_slices_[block] = slice(len(names), len(names) + len(units))
            self.layer_shapes_[block] = shape[1:]
            names.extend(units)
        self.n_neurons_ = len(names)
        classes = (
            list(range(self.n_outputs_)) if self.classes is None else list(self.classes)
        )
        if len(classes) != self.n_outputs_:
            raise ValueError(
                f"'classes' has {len(classes)} labels but the backbone has "
                f"{self.n_outputs_} outputs. Give one label per output, or None."
            )
        self.layer_slices_["proba"] = slice(len(names), len(names) + self.n_outputs_)
        names.extend(f"{PROBA_PREFIX}{c}" for c in classes)
        self._feature_names_out = np.asarray(names, dtype=object)
        self._backbone_id = id(self.backbone)
        return self

    def transform(self, X):
        """Activations of the chosen layers, then the class probabilities.

        Parameters
        ----------
        X : array-like, Tensor, Dataset or DataLoader
            Inputs of shape ``(n_samples, *input_shape)``.

        Returns
        -------
        Z : ndarray of shape (n_samples, ``n_neurons_ + n_outputs_``), dtype=float32
            One row per sample.
        """
        return self._transform_checked(X)

    def fit_transform(self, X, y=None):
        """Fit, then transform ``X``; labels ``X`` carries are checked against ``y``.

        Parameters
        ----------
        X : array-like, Tensor, Dataset or DataLoader
            Inputs of shape ``(n_samples, *input_shape)``.
        y : array-like of shape (n_samples,), default=None
            Labels. When ``X`` is a Dataset or DataLoader whose items are
            ``(x, y, ...)``, they must equal ``y`` (see :meth:`batches`).

        Returns
        -------
        Z : ndarray of shape (n_samples, ``n_neurons_ + n_outputs_``), dtype=float32
            One row per sample, as :meth:`transform` returns.
        """
        return self.fit(X, y)._transform_checked(X, y)

    def _transform_checked(self, X, y=None):
        self._check_fitted()
        X = self._check_input(X, reset=False)
        device = _device.resolve_device(self.device)
        n_columns = self.n_neurons_ + self.n_outputs_
        if not isinstance(X, (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
            y = None  # rows of arrays carry no labels to check
        return _cache.cached_transform(
            self, X, device, n_columns, lambda X: self._transform(X, y)
        )

    def _check_fitted(self):
        """check_is_fitted, and the backbone must be the one fitted."""
        check_is_fitted(self)
        if getattr(self, "_backbone_id", id(self.backbone)) != id(self.backbone):
            raise ValueError(
                "The backbone was replaced after fit (set_params(backbone=...)), so "
                "the fitted layers and columns may not be those of the new one. "
                "Call fit again after replacing the backbone."
            )

    def __setstate__(self, state):
        super().__setstate__(state)
        # The unpickled backbone is the one fitted, under a new identity.
        if "_backbone_id" in state:
            self._backbone_id = id(self.backbone)

    def _transform(self, X, y=None):
        n_samples, exact = count_samples(X)
        n_columns = self.n_neurons_ + self.n_outputs_
        check_memory(n_samples, n_columns)
        # Fill one array when the number of samples is known: concatenating a
        # list of batches would hold the result twice at the peak.
        out = np.empty((n_samples, n_columns), dtype=np.float32) if exact else None
        rows, filled = [], 0
        with contextlib.closing(
            self._iter_blocks(X, y, hold=True, ordered=True)
        ) as batches:
            for values, _ in batches:
                values = values.cpu().numpy()
                if out is not None and filled + len(values) <= len(out):
                    out[filled : filled + len(values)] = values
                else:
                    rows.append(values)
                filled += len(values)
        if not filled:
            raise ValueError("X is empty: ActivationExtractor needs at least 1 sample.")
        if out is None:
            return np.concatenate(rows, axis=0)
        if rows or filled < len(out):
            # The Dataset yielded another number of samples than its len().
            return np.concatenate([out[: filled - sum(map(len, rows))], *rows])
        return out

    def batches(self, X, y=None):
        """The rows of ``transform``, batch by batch, left on the device.

        Nothing of size (n_samples, n_neurons) is built: feed the batches to
        :meth:`ActivationEntropy.fit` or :meth:`ActivationProbabilityFeatures.fit`,
        which keep only counts (see :mod:`sknap.streaming`).

        Parameters
        ----------
        X : array-like, Tensor, Dataset or DataLoader
            Inputs of shape ``(n_samples, *input_shape)``.
        y : array-like of shape (n_samples,), default=None
            Labels, cut into batches along with ``X``. A Dataset or
            DataLoader whose items are ``(x, y, ...)`` gives its own; when
            ``y`` is given too, the two must be equal, and a DataLoader must
            visit its Dataset in order (the rule for labels and loaders, in
            the class docstring).

        Returns
        -------
        batches : ActivationBatches
            Iterable of ``(Z, labels)``: ``Z`` a float32 tensor of shape
            (batch_size, ``n_neurons_ + n_outputs_``) on the device, the rows
            ``transform`` would return, and the batch's labels (or None).
            Each iteration runs the backbone over ``X`` again, so the two
            passes of an exact entropy fit both work.

        Examples
        --------
        >>> from sknap import ActivationEntropy, ActivationExtractor
        >>> from sknap.toy import digits_mlp
        >>> model, X_train, _, y_train, _ = digits_mlp(epochs=2)
        >>> extractor = ActivationExtractor(model, device="cpu").fit(X_train)
        >>> entropy = ActivationEntropy().fit(extractor.batches(X_train, y_train))
        >>> entropy.n_neurons_in_
        96
        """
        self._check_fitted()
        X = self._check_input(X, reset=False)
        if y is not None and not isinstance(
            X, (torch.utils.data.Dataset, torch.utils.data.DataLoader)
        ):
            n_labels = len(y)
            if n_labels != X.shape[0]:
                raise ValueError(
                    f"X has {X.shape[0]} samples but y has {n_labels} labels; give "
                    "one label per sample."
                )
        elif y is not None and isinstance(X, torch.utils.data.DataLoader):
            check_loader_order(X)  # now, not at the first pass
        return streaming.ActivationBatches(self, X, y)

    def _prepare(self, X, y, ordered=False):
        """What every pass over ``X`` needs: (backbone, modules, wanted, dtype,
        device, layout, batches of (input, labels), with a progress bar when
        asked)."""
        device = _device.resolve_device(self.device)
        backbone = _device.on_device(self.backbone, device)
        modules, wanted = self._resolve_modules(backbone)
        total, batches = self._batches(X, y, labelled=True, ordered=ordered)
        if self.progress:
            batches = tqdm(batches, total=total, desc="extract")
        layout = self._input_layout(backbone, device)
        dtype = _device.float_dtype(backbone)
        return backbone, modules, wanted, dtype, device, layout, batches

    def _check_shape(self, batch):
        if tuple(batch.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"X has samples of shape {tuple(batch.shape[1:])}, but "
                f"{type(self).__name__} was fitted on samples of shape "
                f"{self.input_shape_}."
            )

    def _check_order(self, hooks):
        if hooks.order != self._calls:
            raise ValueError(
                "The layers ran in a different order or number of calls than "
                "during fit, so the columns would not line up. Refit the "
                "extractor; the backbone's forward pass must not depend on the "
                "batch."
            )

    def _iter_blocks(self, X, y=None, hold=False, ordered=False):
        """Yield ``(Z, labels)`` per batch: the rows of ``transform`` as a
        float32 tensor on the device, and the batch's labels or None.

        By default hooks, eval mode and ``no_grad`` hold only during each
        forward pass, not while the caller works on a batch (which may run the
        backbone itself). With ``hold`` they hold from the first batch until
        the generator is closed, for callers in this package: they must close
        it (``contextlib.closing``), even after an error. With ``ordered``, a
        DataLoader must visit its Dataset in order (the rows are returned).
        """
        backbone, modules, wanted, dtype, device, layout, batches = self._prepare(
            X, y, ordered
        )
        slices = [self.layer_slices_[b] for b in self.layer_names_]
        slices.append(self.layer_slices_["proba"])
        n_columns = self.n_neurons_ + self.n_outputs_
        with contextlib.ExitStack() as held:
            if hold:
                hooks = held.enter_context(self._hooked(backbone, modules, wanted))
            for batch, labels in batches:
                self._check_shape(batch)
                values = torch.empty(
                    (batch.shape[0], n_columns), dtype=torch.float32, device=device
                )
                with (
                    contextlib.nullcontext(hooks)
                    if hold
                    else self._hooked(backbone, modules, wanted)
                ) as hooks:
                    # The hooks write each block into its columns of `values`.
                    hooks.sink = {
                        call: values[:, sl]
                        for call, sl in zip(self._calls, slices, strict=False)
                    }
                    proba, batch = self._forward(
                        backbone, hooks, batch, device, dtype, layout, check=False
                    )
                    self._check_order(hooks)
                    blocks = [hooks.outputs[c] for c in self._calls] + [proba]
                for block, sl in zip(blocks, slices, strict=True):
                    view = values[:, sl]
                    if block.data_ptr() != view.data_ptr():
                        view.copy_(block)
                if not _device.all_finite(values):
                    self._check_batch(batch)
                    check_finite(zip([*self.layer_names_, None], blocks, strict=True))
                yield values, labels

    def _consume_blocks(self, X, y, start, consume, finish, probabilities=True):
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
        backbone, modules, wanted, dtype, device, layout, batches = self._prepare(X, y)
        offsets = {
            call: (self.layer_slices_[name].start, name)
            for call, name in zip(self._calls, self.layer_names_, strict=True)
        }
        proba_offset = self.layer_slices_["proba"].start
        # Per batch as little as possible: on a small network, each step in
        # Python costs a few percent of the forward pass.
        state, bad = None, []

        def take(call, block):
            offset, name = offsets.get(call, (None, None))
            if offset is None:
                return  # a call fit did not see: _check_order raises
            if block.dtype != torch.float32:
                block = block.float()
            if not consume(state, offset, block):
                bad.append(name)

        with self._hooked(backbone, modules, wanted) as hooks:
            hooks.consume = take
            for batch, labels in batches:
                self._check_shape(batch)
                state = start(labels, batch.shape[0], device)
                proba, batch = self._forward(
                    backbone, hooks, batch, device, dtype, layout, check=False,
                    proba=probabilities,
                )  # fmt: skip
                self._check_order(hooks)
                if probabilities and not consume(state, proba_offset, proba):
                    bad.append(None)
                if bad:
                    self._check_batch(batch)
                    raise_nonfinite(bad[0])
                finish(state)

    def get_feature_names_out(self, input_features=None):
        """Names of the columns ``transform`` returns.

        Parameters
        ----------
        input_features : None
            Ignored; the names come from the backbone's layers.

        Returns
        -------
        feature_names_out : ndarray of str of shape (``n_neurons_ + n_outputs_``,)
            ``<block>__<unit>`` for activations, ``proba_<class>`` last.
        """
        check_is_fitted(self)
        return self._feature_names_out.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = False
        return tags
