"""The column layout that every sknap step shares.

:class:`~sknap.ActivationExtractor` writes one row per sample::

    [activations of block 1 | ... | activations of block L | class probabilities]

The last ``n_classes`` columns are the backbone's softmax output, named
``proba_<class>``; every other column is one neuron, named
``<block>__<unit>``. Downstream steps find the probability block by, in order:
their ``n_classes`` parameter when it is an int, the input's feature names
(``proba_`` prefix) when it came as a DataFrame, or the number of classes in
``y``. In that last case, a block that does not sum to 1 while another number
of trailing columns does is an error (:func:`check_probability_block`).
"""

import warnings
from dataclasses import dataclass
from numbers import Integral

import numpy as np

from ._inputs import LABELS_RULE
from .exceptions import LayoutWarning

PROBA_PREFIX = "proba_"
UNIT_SEPARATOR = "__"


def fixed_n_classes(estimator):
    """``estimator.n_classes`` when it is an int, else None."""
    n_classes = estimator.n_classes
    if isinstance(n_classes, Integral) and not isinstance(n_classes, bool):
        return int(n_classes)
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


def resolve_n_classes(estimator, n_features, y=None):
    """Number of trailing probability columns in the input of ``estimator``.

    Called from ``fit`` after ``validate_data`` so that ``feature_names_in_``
    is set when the input carried names.
    """
    name = type(estimator).__name__
    n_proba = fixed_n_classes(estimator)
    named = _named_proba(estimator)
    if named:  # misplaced proba_ columns are an error, whatever n_classes says
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
            "class probabilities without y: set n_classes to the number of "
            "backbone outputs (0 when X holds activations only), or call "
            "set_output(transform='pandas') on the ActivationExtractor."
        )
    if n_proba >= n_features and not (n_proba == 0 and n_features == 0):
        raise ValueError(
            f"{name} takes the last {n_proba} columns of X as class probabilities, "
            f"but X has only {n_features} columns, which leaves no activation. "
            "X should be laid out as ActivationExtractor writes it: activations, "
            "then one probability column per class. Set n_classes to the number "
            "of backbone outputs."
        )
    return n_proba


def _n_classes_from_y(estimator):
    """Whether ``resolve_n_classes`` took the number of classes in y."""
    return fixed_n_classes(estimator) is None and not _named_proba(estimator)


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
    """Warn when ``proba`` (n_samples, n_classes) does not look like softmax.

    When ``X``, the whole input, is given, the block's width came from the
    number of classes in y (``n_classes="auto"`` without ``proba_`` names) and
    another number of trailing columns does sum to 1, the backbone has another
    number of outputs than y has classes: that is an error, which names the
    width that fits.
    """
    if proba.shape[1] == 0 or proba.shape[0] == 0:
        return
    sums = proba.sum(axis=1, dtype=np.float64)
    if np.all(np.abs(sums - 1.0) <= atol) and proba.min() >= -atol:
        return
    width = None
    if X is not None and _n_classes_from_y(estimator):
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
            f"{type(estimator).__name__} has n_classes='auto' and no '"
            f"{PROBA_PREFIX}' column names, so it took the number of classes in "
            f"y ({k}) as the number of probability columns; but the last {k} "
            f"columns of X have rows summing to values in [{sums.min():.4g}, "
            f"{sums.max():.4g}] instead of 1, while the last {width} do: the "
            f"backbone has {width} outputs, not one per class of y. {single}Set "
            f"n_classes={width} (in a make_nap_pipeline pipeline: "
            f"pipe.set_params(entropy__n_classes={width}, "
            f"probabilities__n_classes={width})); integer labels in "
            f"0..{width - 1} then name the backbone's outputs."
        )
    warnings.warn(
        f"{type(estimator).__name__} takes the last {proba.shape[1]} columns of X "
        "as the backbone's class probabilities, but their rows sum to values in "
        f"[{sums.min():.4g}, {sums.max():.4g}] instead of 1. Check that X comes "
        "from ActivationExtractor and that n_classes equals the number of "
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
    def n_classes(self):
        """Number of probability columns."""
        return len(self.classes)

    @property
    def slices(self):
        """Columns of each block by name, and of ``"proba"``."""
        out, start = {}, 0
        for block, width in zip(self.blocks, self.widths, strict=True):
            out[block] = slice(start, start + width)
            start += width
        out["proba"] = slice(start, start + self.n_classes)
        return out
