"""Activations of a PyTorch classifier, as a scikit-learn transformer."""

import contextlib
import os
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from . import _cache, _device, streaming
from ._hooks import unit_names
from ._inputs import check_finite, check_loader_order, check_memory, count_samples
from ._layers import CALL_SEPARATOR, OUTPUTS, REDUCTIONS
from ._layout import PROBA_PREFIX, ColumnLayout
from ._passes import BackbonePass, iter_rows, sample_shape
from .data import IndexedDataset

__all__ = ["ActivationExtractor", "check_input"]

_DATA = (torch.utils.data.Dataset, torch.utils.data.DataLoader)


def _sliced_dataset(X):
    """Whether X is a sequence of samples that scikit-learn slices like an
    array of one axis (skorch's SliceDataset): read as a Dataset."""
    return (
        not isinstance(X, (np.ndarray, torch.Tensor))
        and not hasattr(X, "iloc")
        and hasattr(X, "__getitem__")
        and hasattr(X, "__len__")
        and len(getattr(X, "shape", ())) == 1
    )


def check_input(extractor, X, reset=False):
    """Validated ``X`` (array or tensor) or a Dataset/DataLoader as it is.

    What ``extractor`` (an ActivationExtractor) takes as input; ``reset`` in
    ``fit``, which sets ``n_features_in_``.
    """
    if isinstance(X, _DATA):
        return X
    if _sliced_dataset(X):
        return IndexedDataset(X)
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
            extractor.n_features_in_ = X.shape[1]
        return X
    return validate_data(
        extractor,
        X,
        reset=reset,
        allow_nd=True,
        dtype="numeric",
        ensure_min_features=1,
        ensure_all_finite=reset,
    )


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
        Modules whose outputs are recorded. A str is a module name, as
        ``[name for name, _ in backbone.named_modules()]`` lists them;
        ``"name#k"`` keeps only the k-th call of that
        module. A type, such as ``torch.nn.ReLU``, selects every module of that
        type. ``None`` is the paper's choice, every activation output but the
        output layer: every activation module (``nn.ReLU``, ``nn.GELU``,
        ``nn.SiLU`` and the like, and modules of other libraries whose class
        name says ReLU, GELU, SiLU, Swish or Mish, such as Hugging Face's
        ``GELUActivation``). "Active" means > 0 for each of them: for ReLU the
        units that pass their input on, for GELU and SiLU (whose outputs dip
        slightly below 0) the units whose input is > 0. Blocks are ordered by
        the first time they run in the forward pass.
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
        the output tensor to a (n, n_units) tensor. Token activations of a
        transformer, (n, tokens, units), become one neuron per unit the same
        way, over the real tokens only (those the batch's ``attention_mask``
        marks, when the batch is a dict that has one): their mean by default.
        A 3-D output is taken as tokens unless the backbone has ``nn.Conv1d``
        modules, whose maps are (n, C, L).
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
        training mode). None takes the ``"logits"`` of a dict that has one, as
        a Hugging Face model's output does.
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
    streaming : bool, default=False
        Make ``transform`` and ``fit_transform`` return :meth:`batches`
        instead of the matrix: a re-iterable of the same rows, computed batch
        by batch each time it is read, which the next steps of a
        :func:`make_nap_pipeline` fit and transform from. Memory then does not
        grow with n_samples x n_neurons, at the cost of running the backbone
        once per pass over the data.

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
    layout_ : ColumnLayout
        The columns: blocks, widths, class labels, the probability block. The
        later steps' ``fit(X, y, layout=extractor.layout_)`` reads it.
    input_shape_ : tuple
        Shape of one sample.
    n_features_in_ : int
        ``input_shape_[0]``, the length of ``X``'s second axis.

    See Also
    --------
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
        "streaming": ["boolean"],
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
        streaming=False,
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
        self.streaming = streaming

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
        X = check_input(self, X, reset=True)
        run = BackbonePass(self, X)
        first = next(iter(run.batches), (None, None))[0]
        if first is None:
            raise ValueError("X is empty: ActivationExtractor needs at least 1 sample.")
        first = (
            {k: v[:2] for k, v in first.items()}
            if isinstance(first, dict)
            else first[:2]
        )
        self.input_shape_ = sample_shape(first)
        if isinstance(first, dict):
            self.n_features_in_ = 1  # keyword inputs: no axis of features
        elif not hasattr(self, "n_features_in_") or isinstance(X, _DATA):
            self.n_features_in_ = self.input_shape_[0] if self.input_shape_ else 1
        with run.hooked() as hooks:
            proba, _ = run.forward(hooks, first)
        for name, k in sorted(run.wanted or (), key=str):
            n_calls = hooks.calls.get(name, 0)
            if k is not None and 0 < n_calls <= k:
                raise ValueError(
                    f"Layer '{name}{CALL_SEPARATOR}{k}' given in 'layers' does not "
                    f"exist: module '{name}' runs {n_calls} time(s) per forward "
                    f"pass, so the call index must be in [0, {n_calls - 1}]."
                )
        if not hooks.order:
            raise ValueError(
                f"None of the layers {sorted(run.modules)} ran during the forward "
                "pass, so no activation was recorded. Choose modules the forward "
                "pass uses ([name for name, _ in backbone.named_modules()] lists "
                "them)."
            )
        # Name blocks by the module's total calls, so that 'relu#1' selected
        # alone keeps its '#1'.
        blocks = [
            f"{n}{CALL_SEPARATOR}{k}" if hooks.calls[n] > 1 else n
            for n, k in hooks.order
        ]
        outputs = [hooks.outputs[call] for call in hooks.order]
        check_finite([*zip(blocks, outputs, strict=True), (None, proba)])
        n_outputs = proba.shape[1]
        if n_outputs < 2:
            raise ValueError(
                f"The backbone returns {n_outputs} score per sample, but sknap "
                "needs one score per class, at least 2 (a softmax over one score is "
                "always 1). For a binary classifier with a single logit z, wrap it "
                "to return torch.cat([torch.zeros_like(z), z], dim=1), the logits "
                "of classes 0 and 1."
            )
        classes = list(range(n_outputs)) if self.classes is None else list(self.classes)
        if len(classes) != n_outputs:
            raise ValueError(
                f"'classes' has {len(classes)} labels but the backbone has "
                f"{n_outputs} outputs. Give one label per output, or None."
            )
        names = []
        for block, call, values in zip(blocks, hooks.order, outputs, strict=True):
            shape = hooks.shapes[call]
            names += unit_names(block, shape, self.reduce, values.shape[1], run.tokens)
        names += [f"{PROBA_PREFIX}{c}" for c in classes]
        self.layout_ = ColumnLayout(
            blocks=tuple(blocks),
            calls=tuple(hooks.order),
            widths=tuple(values.shape[1] for values in outputs),
            shapes=tuple(hooks.shapes[call][1:] for call in hooks.order),
            classes=tuple(classes),
            feature_names=tuple(names),
        )
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
            One row per sample; with ``streaming=True``, :meth:`batches` of
            those rows instead.
        """
        if self.streaming:
            return self.batches(X)
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
            One row per sample, as :meth:`transform` returns (with
            ``streaming=True``, :meth:`batches` that carry ``y``).
        """
        if self.streaming:
            return self.fit(X, y).batches(X, y)
        return self.fit(X, y)._transform_checked(X, y)

    def _transform_checked(self, X, y=None):
        self._check_fitted()
        X = check_input(self, X)
        device = _device.resolve_device(self.device)
        n_columns = self.n_neurons_ + self.n_outputs_
        if not isinstance(X, _DATA):
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
            iter_rows(self, X, y, hold=True, ordered=True)
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
        X = check_input(self, X)
        if y is not None and not isinstance(X, _DATA):
            n_labels = len(y)
            if n_labels != X.shape[0]:
                raise ValueError(
                    f"X has {X.shape[0]} samples but y has {n_labels} labels; give "
                    "one label per sample."
                )
        elif y is not None and isinstance(X, torch.utils.data.DataLoader):
            check_loader_order(X)  # now, not at the first pass
        return streaming.ActivationBatches(self, X, y)

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
        return np.asarray(self.layout_.feature_names, dtype=object)

    # The fitted layout, by the names the attributes have always had.

    @property
    def layer_names_(self):
        """Name of every block of columns, in column order."""
        return list(self.layout_.blocks)

    @property
    def layer_slices_(self):
        """Columns of each block, and of ``"proba"``."""
        return self.layout_.slices

    @property
    def layer_shapes_(self):
        """Shape of each block's raw output for one sample."""
        return dict(zip(self.layout_.blocks, self.layout_.shapes, strict=True))

    @property
    def n_neurons_(self):
        """Number of activation columns."""
        return self.layout_.n_neurons

    @property
    def n_outputs_(self):
        """Number of classes the backbone scores (probability columns)."""
        return self.layout_.n_outputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = False
        return tags
