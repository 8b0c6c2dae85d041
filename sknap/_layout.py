"""The column layout that every sknap step shares.

:class:`~sknap.ActivationExtractor` writes one row per sample::

    [activations of block 1 | ... | activations of block L | class probabilities]

The last ``n_outputs`` columns are the backbone's softmax output, named
``proba_<class>``; every other column is one neuron, named
``<block>__<unit>``. The fitted extractor's :class:`ColumnLayout` says so.
Downstream steps find the probability block by, in order: the layout given to
their ``fit`` (``make_nap_pipeline`` passes the extractor's), their
``n_outputs`` parameter when it is an int, the layout of an extractor's
batches, the input's feature names (``proba_`` prefix) when it came as a
DataFrame, or the number of classes in ``y``. In that last case, a block that
does not sum to 1 while another number of trailing columns does is an error
(:func:`check_probability_block`).
"""

import warnings
from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np

from ._inputs import LABELS_RULE
from .exceptions import LayoutWarning

PROBA_PREFIX = "proba_"
UNIT_SEPARATOR = "__"


def fixed_n_outputs(estimator):
    """``estimator.n_outputs`` when it is an int, else None."""
    n_outputs = estimator.n_outputs
    if isinstance(n_outputs, Integral) and not isinstance(n_outputs, bool):
        return int(n_outputs)
    return None


def _named_proba(estimator):
    """Whether the input's feature names mark a probability block."""
    names = getattr(estimator, "feature_names_in_", None)
    return names is not None and any(str(f).startswith(PROBA_PREFIX) for f in names)


def trailing_proba_columns(names):
    """How many of the last ``names`` carry the ``proba_`` prefix.

    Every ``proba_`` column must be among them: one elsewhere would be taken
    for a neuron, and the backbone's probabilities lost.
    """
    count = 0
    for name in names[::-1]:
        if not str(name).startswith(PROBA_PREFIX):
            break
        count += 1
    # A neuron of a block named 'proba_x' is 'proba_x__0': not a probability.
    misplaced = [
        str(n)
        for n in names[: len(names) - count]
        if str(n).startswith(PROBA_PREFIX) and UNIT_SEPARATOR not in str(n)
    ]
    if misplaced:
        raise ValueError(
            f"The columns {misplaced[:5]} are named '{PROBA_PREFIX}...' (the "
            "backbone's class probabilities), but the probability columns must be "
            "the last columns of X, as ActivationExtractor writes them. Reorder X "
            "so that they come last, or rename the columns that are neurons."
        )
    return count


def given_layout(estimator, layout):
    """The ``layout`` given to ``estimator.fit``: a :class:`ColumnLayout`, what
    a callable of no argument returns (read now), or None."""
    if callable(layout):
        layout = layout()
    if layout is None or isinstance(layout, ColumnLayout):
        return layout
    raise TypeError(
        f"{type(estimator).__name__}.fit got layout of type "
        f"{type(layout).__name__}; expected a fitted ActivationExtractor's "
        "layout_, a function of no argument that returns it, or None."
    )


def _from_layout(estimator, n_features, layout):
    """``layout.n_outputs``, once it agrees with ``n_outputs`` and X's width."""
    name = type(estimator).__name__
    n_outputs = fixed_n_outputs(estimator)
    if n_outputs is not None and n_outputs != layout.n_outputs:
        raise ValueError(
            f"{name} has n_outputs={n_outputs}, but the layout given to fit (the "
            f"ActivationExtractor's) has {layout.n_outputs} probability columns. "
            f"Set n_outputs='auto' to take the layout's number, or "
            f"n_outputs={layout.n_outputs}."
        )
    width = layout.n_neurons + layout.n_outputs
    if width != n_features:
        raise ValueError(
            f"The layout given to {name}.fit has {width} columns "
            f"({layout.n_neurons} activations, {layout.n_outputs} probabilities), "
            f"but X has {n_features}. Give the layout of the ActivationExtractor "
            "that wrote X, or layout=None."
        )
    return layout.n_outputs


def resolve_n_outputs(estimator, n_features, y=None, layout=None):
    """Number of trailing probability columns in the input of ``estimator``.

    The ``layout`` given to fit decides when there is one; else an int
    ``n_outputs``, the ``proba_`` names, or the number of classes in ``y``.
    Called from ``fit`` after ``validate_data`` so that ``feature_names_in_``
    is set when the input carried names.
    """
    if layout is not None:
        return _from_layout(estimator, n_features, layout)
    name = type(estimator).__name__
    n_proba = fixed_n_outputs(estimator)
    named = _named_proba(estimator)
    if named:  # misplaced proba_ columns are an error, whatever n_outputs says
        trailing = trailing_proba_columns(estimator.feature_names_in_)
    if n_proba is None and named:
        n_proba = trailing
    elif n_proba is None and y is not None:
        n_proba = len(np.unique(y))
    elif n_proba is None:
        raise ValueError(
            f"{name}.fit got no y, the class labels. In a pipeline "
            "(make_nap_pipeline), pass them: pipe.fit(X, y). " + LABELS_RULE + " "
            f"Alone, {name} cannot tell how many of the last columns of X are "
            "class probabilities without y: set n_outputs to the number of "
            "backbone outputs (0 when X holds activations only), pass "
            "fit(X, layout=extractor.layout_), or call "
            "set_output(transform='pandas') on the ActivationExtractor."
        )
    if n_proba >= n_features and not (n_proba == 0 and n_features == 0):
        raise ValueError(
            f"{name} takes the last {n_proba} columns of X as class probabilities, "
            f"but X has only {n_features} columns, which leaves no activation. "
            "X should be laid out as ActivationExtractor writes it: activations, "
            "then one probability column per backbone output. Set n_outputs to "
            "the number of backbone outputs."
        )
    return n_proba


def _n_outputs_from_y(estimator):
    """Whether ``resolve_n_outputs`` took the number of classes in y (given
    no layout)."""
    return fixed_n_outputs(estimator) is None and not _named_proba(estimator)


def _softmax_width(X, atol):
    """Fewest trailing columns of X whose rows sum to 1 (and are >= 0); or None."""
    # Up to 10,000 rows, and about 32 MiB of float64: this only names a hint.
    rows = min(10000, max(1, (1 << 22) // max(1, X.shape[1])))
    X = np.asarray(X[:rows], dtype=np.float64)[:, ::-1]
    ok = np.all(np.abs(np.cumsum(X, axis=1) - 1.0) <= atol, axis=0)
    ok &= np.minimum.accumulate(X.min(axis=0)) >= -atol
    found = np.flatnonzero(ok[:-1])
    return int(found[0]) + 1 if found.size else None


def check_probability_block(estimator, proba, atol=1e-3, *, X=None):
    """Warn when ``proba`` (n_samples, n_outputs) does not look like softmax.

    When ``X``, the whole input, is given (fit had no layout), the block's
    width came from the number of classes in y (``n_outputs="auto"`` without
    ``proba_`` names) and another number of trailing columns does sum to 1,
    the backbone has another number of outputs than y has classes: that is an
    error, which names the width that fits.
    """
    if proba.shape[1] == 0 or proba.shape[0] == 0:
        return
    sums = proba.sum(axis=1, dtype=np.float64)
    if np.all(np.abs(sums - 1.0) <= atol) and proba.min() >= -atol:
        return
    width = None
    if X is not None and _n_outputs_from_y(estimator):
        width = _softmax_width(X, atol)
    if width is not None:
        k = proba.shape[1]
        single = (
            "y has a single class, and ActivationProbabilityFeatures and "
            "AuxiliaryClassifier need samples of at least 2 classes. "
            if k == 1
            else ""
        )
        raise ValueError(
            f"{type(estimator).__name__} has n_outputs='auto' and no '"
            f"{PROBA_PREFIX}' column names, so it took the number of classes in "
            f"y ({k}) as the number of probability columns; but the last {k} "
            f"columns of X have rows summing to values in [{sums.min():.4g}, "
            f"{sums.max():.4g}] instead of 1, while the last {width} do: the "
            f"backbone has {width} outputs, not one per class of y. {single}Set "
            f"n_outputs={width} (in a pipeline: "
            f"pipe.set_params(entropy__n_outputs={width}, "
            f"probabilities__n_outputs={width})), or pass the extractor's "
            "layout: fit(X, y, layout=extractor.layout_); integer labels in "
            f"0..{width - 1} then name the backbone's outputs."
        )
    warnings.warn(
        f"{type(estimator).__name__} takes the last {proba.shape[1]} columns of X "
        "as the backbone's class probabilities, but their rows sum to values in "
        f"[{sums.min():.4g}, {sums.max():.4g}] instead of 1. Check that X comes "
        "from ActivationExtractor and that n_outputs equals the number of "
        "backbone outputs.",
        LayoutWarning,
        stacklevel=3,
    )


def layer_of(feature_name):
    """Block name of an activation column, ``'fc1'`` for ``'fc1__7'``."""
    return str(feature_name).rsplit(UNIT_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class ColumnLayout:
    """The columns of :meth:`ActivationExtractor.transform`, set at its fit.

    ``blocks[i]`` is the name of the i-th block of neurons, recorded from the
    ``calls[i]`` = (module name, call index) of the forward pass, with
    ``widths[i]`` neurons from a raw output of ``shapes[i]`` per sample; the
    last ``len(classes)`` columns are the class probabilities, one per label
    in ``classes``. Two layouts are equal when every one of these is.
    """

    blocks: tuple
    calls: tuple
    widths: tuple
    shapes: tuple
    classes: tuple
    feature_names: tuple

    @property
    def n_neurons(self):
        """Number of activation columns."""
        return sum(self.widths)

    @property
    def n_outputs(self):
        """Number of probability columns, one per output of the backbone."""
        return len(self.classes)

    @property
    def slices(self):
        """Columns of each block by name, and of ``"proba"``."""
        out, start = {}, 0
        for block, width in zip(self.blocks, self.widths, strict=True):
            out[block] = slice(start, start + width)
            start += width
        out["proba"] = slice(start, start + self.n_outputs)
        return out

    def select_neurons(self, neurons):
        """This layout with only the activation columns ``neurons`` (indices,
        ascending) and the probability block, as
        :meth:`ActivationEntropy.transform` keeps them; every block keeps its
        name and shape, with the width it has left."""
        neurons = np.asarray(neurons, dtype=np.intp)
        block = np.searchsorted(np.cumsum(self.widths), neurons, side="right")
        widths = np.bincount(block, minlength=len(self.widths))
        names = [self.feature_names[i] for i in neurons]
        return replace(
            self,
            widths=tuple(int(w) for w in widths),
            feature_names=(*names, *self.feature_names[self.n_neurons :]),
        )
