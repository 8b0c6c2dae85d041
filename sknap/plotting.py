"""Plots of entropy, accuracy and activation probabilities.

Every function draws into the Axes ``ax`` it is given, or into a new figure
(``plt.subplots``) when ``ax`` is None, and returns the Axes. None of them
changes matplotlib's backend or global settings: the caller decides where the
figure goes (``fig.savefig``, a notebook, a Sphinx gallery). matplotlib is an
optional dependency (``pip install ".[plot]"``); ``import sknap`` does not
load it, and neither does importing this module: the first plot does.

* :func:`plot_entropy_accuracy`: the paper's Figure 2, entropy (min-max
  normalized) and accuracy over checkpoints, with the spread over seeds;
* :func:`plot_layer_entropy`: the entropy of each layer, as bars;
* :func:`plot_neuron_entropy`: the distribution of the neurons' entropies;
* :func:`plot_activation_probabilities`: the matrix ``P`` as a heat map.
"""

import numpy as np

from ._layout import layer_of

__all__ = [
    "plot_activation_probabilities",
    "plot_entropy_accuracy",
    "plot_layer_entropy",
    "plot_neuron_entropy",
]

_X_KEYS = ("checkpoint", "epoch", "step")


def _pyplot():
    """matplotlib.pyplot, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "sknap's plots need matplotlib: install it with "
            "`pip install matplotlib`, or sknap with its 'plot' extra "
            '(`pip install ".[plot]"` in a clone of sknap).'
        ) from err
    return plt


def _axes(ax, figsize):
    """``ax``, or the Axes of a new figure when ``ax`` is None."""
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def _minmax(values):
    """``values`` scaled to [0, 1]; a constant series becomes zeros."""
    values = np.asarray(values, dtype=float)
    span = np.ptp(values) if values.size else 0.0
    return np.zeros_like(values) if span == 0 else (values - values.min()) / span


def _records_of(records):
    """A list of dicts from records or from an object with a ``history``."""
    records = getattr(records, "history", records)
    records = list(records)
    if not records or not all(isinstance(r, dict) for r in records):
        raise ValueError(
            "The 'records' parameter of plot_entropy_accuracy must be a non-empty "
            "list of dicts (the records of run_sweep, or ActivationMonitor.history) "
            f"or an ActivationMonitor that has measured. Got {len(records)} "
            "records instead: train with the monitor first."
        )
    return records


def _check_keys(records, keys, what):
    missing = sorted({k for k in keys for r in records if k not in r})
    if missing:
        raise ValueError(
            f"The records given to plot_entropy_accuracy have no {missing} "
            f"({what}); they hold {sorted(records[0])}. Pass the keys to plot "
            "with x= and accuracy=."
        )


def plot_entropy_accuracy(
    records,
    *,
    x=None,
    accuracy=("train_acc", "test_acc"),
    seed="seed",
    ax=None,
):
    """Entropy, min-max normalized, and accuracy over checkpoints (Figure 2).

    The paper's Figure 2: the total activation-pattern entropy of each
    checkpoint, scaled to [0, 1] by its minimum and maximum over the
    checkpoints so that its trend compares with the accuracy's, and the
    accuracies (fractions in [0, 1]) on the same axis. When the records hold
    several seeds (values of the key ``seed``), each seed's entropy is
    normalized on its own; the lines are then the mean over seeds at each
    ``x`` and the shaded bands the range (minimum to maximum) over seeds.

    Parameters
    ----------
    records : list of dict or ActivationMonitor
        One dict per checkpoint, as :func:`sknap.paper.experiments.run_sweep`
        or :class:`sknap.monitor.ActivationMonitor` makes them (a monitor's
        ``history`` is used), with the keys ``x``, ``entropy`` and those of
        ``accuracy``.
    x : str, default=None
        The key on the horizontal axis; None is the first of
        ``"checkpoint"``, ``"epoch"`` and ``"step"`` that the records hold.
    accuracy : sequence of str, default=("train_acc", "test_acc")
        Keys of the accuracies to draw; keys that no record holds are
        skipped (a monitor without test data has no ``test_acc``).
    seed : str, default="seed"
        The key that tells runs apart; records without it are one run.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn on: line 0 is the entropy, then one line per accuracy,
        in the order of ``accuracy``; with several seeds, one band each, in
        the same order, in ``ax.collections``.

    See Also
    --------
    sknap.monitor.ActivationMonitor : Records entropy and accuracy in training.

    Examples
    --------
    >>> from sknap.plotting import plot_entropy_accuracy
    >>> records = [{"checkpoint": k, "entropy": e, "train_acc": a, "test_acc": a}
    ...            for k, (e, a) in enumerate([(80, 0.6), (75, 0.7), (72, 0.8)], 1)]
    >>> ax = plot_entropy_accuracy(records)
    >>> entropy_line = ax.get_lines()[0]
    >>> entropy_line.get_ydata().round(3).tolist()
    [1.0, 0.375, 0.0]
    >>> [line.get_label() for line in ax.get_lines()]
    ['entropy (min-max normalized)', 'train_acc', 'test_acc']
    """
    records = _records_of(records)
    if x is None:
        x = next((k for k in _X_KEYS if k in records[0]), None)
        if x is None:
            raise ValueError(
                "The records given to plot_entropy_accuracy hold none of "
                f"{list(_X_KEYS)}; pass the key of the horizontal axis as x=."
            )
    _check_keys(records, [x, "entropy"], "the horizontal axis and the entropy")
    if isinstance(accuracy, str):
        accuracy = (accuracy,)
    accuracy = [k for k in accuracy if any(k in r for r in records)]
    _check_keys(records, accuracy, "accuracies held by some records only")

    runs = {}
    for r in records:
        runs.setdefault(r.get(seed), []).append(r)
    xs = np.unique([r[x] for r in records])

    def per_run(key, normalize):
        """(n_runs, n_x) array of ``key``, NaN where a run lacks an x."""
        table = np.full((len(runs), len(xs)), np.nan)
        for i, run in enumerate(runs.values()):
            values = np.asarray([r[key] for r in run], dtype=float)
            if normalize:
                values = _minmax(values)
            table[i, np.searchsorted(xs, [r[x] for r in run])] = values
        return table

    ax = _axes(ax, (6, 3.5))
    series = [("entropy", "entropy (min-max normalized)", "k", "o", True)]
    series += [
        (key, key, f"C{i}", "s^vD"[i % 4], False) for i, key in enumerate(accuracy)
    ]
    for key, label, color, marker, normalize in series:
        table = per_run(key, normalize)
        ax.plot(
            xs, np.nanmean(table, axis=0), color=color, marker=marker, ms=3, label=label
        )
        if len(runs) > 1:
            ax.fill_between(
                xs,
                np.nanmin(table, axis=0),
                np.nanmax(table, axis=0),
                color=color,
                alpha=0.2,
                linewidth=0,
            )
    ax.set_xlabel(x)
    if np.issubdtype(xs.dtype, np.integer):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("normalized entropy, accuracy")
    ax.set_ylim(-0.05, 1.05)
    if len(runs) > 1:
        ax.set_title(f"mean and range over {len(runs)} seeds", fontsize=9)
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_layer_entropy(entropy, *, feature_names=None, ax=None):
    """The entropy of each layer, as bars.

    Parameters
    ----------
    entropy : dict of str to float or ActivationEntropy
        Entropy by layer, as ``ActivationEntropy.layer_entropy`` or a record's
        ``layer_entropy`` gives it, or a fitted
        :class:`~sknap.ActivationEntropy`, whose ``layer_entropy`` is called.
    feature_names : array-like of str, default=None
        Column names for :meth:`sknap.ActivationEntropy.layer_entropy`, when
        ``entropy`` is an estimator fitted on an array
        (``extractor.get_feature_names_out()``).
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn on; ``ax.patches`` are the bars, in layer order.

    Examples
    --------
    >>> from sknap.plotting import plot_layer_entropy
    >>> ax = plot_layer_entropy({"relu1": 172.0, "relu2": 81.0})
    >>> [float(bar.get_height()) for bar in ax.patches]
    [172.0, 81.0]
    >>> [tick.get_text() for tick in ax.get_xticklabels()]
    ['relu1', 'relu2']
    """
    if hasattr(entropy, "layer_entropy"):
        entropy = entropy.layer_entropy(feature_names)
    if not isinstance(entropy, dict) or not entropy:
        raise ValueError(
            "The 'entropy' parameter of plot_layer_entropy must be a non-empty "
            "dict of layer name to entropy or a fitted ActivationEntropy. Got "
            f"{entropy!r} instead."
        )
    names = [str(name) for name in entropy]
    values = np.asarray(list(entropy.values()), dtype=float)
    ax = _axes(ax, (max(3.0, 0.6 * len(names) + 1.5), 3.0))
    ax.bar(names, values, color="C0")
    ax.set_xlabel("layer")
    ax.set_ylabel("entropy")
    if len(names) > 6:
        ax.tick_params(axis="x", labelrotation=45)
    return ax


def plot_neuron_entropy(entropy, *, bins=20, include_dead=False, ax=None):
    """The distribution of the neurons' entropies, as a histogram.

    Parameters
    ----------
    entropy : array-like of shape (n_neurons,) or ActivationEntropy
        Per-neuron entropies ``E_j``, or a fitted
        :class:`~sknap.ActivationEntropy` (its ``neuron_entropy_``; the
        largest possible value, ``log_base(n_bins)``, is marked by a dashed
        line).
    bins : int or sequence of float, default=20
        Histogram bins, as :func:`numpy.histogram` takes them.
    include_dead : bool, default=False
        Count dead neurons (never active, entropy 0) in the histogram. Only
        with an estimator, which knows them; an array is drawn whole.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn on; ``ax.patches`` are the bars of the histogram.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap.plotting import plot_neuron_entropy
    >>> ax = plot_neuron_entropy(np.array([0.5, 0.6, 2.0, 3.1]), bins=[0, 1, 2, 4])
    >>> [float(bar.get_height()) for bar in ax.patches]
    [2.0, 0.0, 2.0]
    """
    top, n_dead = None, 0
    if hasattr(entropy, "neuron_entropy_"):
        values = np.asarray(entropy.neuron_entropy_, dtype=float)
        top = np.log(entropy.n_bins) / np.log(entropy.base)
        if not include_dead:
            n_dead = int(entropy.n_dead_neurons_)
            values = values[~entropy.dead_neurons_]
    else:
        values = np.asarray(entropy, dtype=float)
        if values.ndim != 1:
            raise ValueError(
                "The 'entropy' parameter of plot_neuron_entropy must be a 1-D "
                "array of per-neuron entropies (neuron_entropy_) or a fitted "
                f"ActivationEntropy. Got an array of shape {values.shape} instead."
            )
    ax = _axes(ax, (5, 3))
    counts, edges = np.histogram(values, bins=bins)
    ax.bar(
        edges[:-1],
        counts.astype(float),
        width=np.diff(edges),
        align="edge",
        color="C0",
        edgecolor="white",
        linewidth=0.5,
    )
    if top is not None:
        ax.axvline(
            top,
            color="k",
            linestyle="--",
            linewidth=1,
            label=f"largest possible, log {entropy.n_bins}",
        )
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("entropy of a neuron")
    ax.set_ylabel("neurons")
    if n_dead:
        ax.set_title(f"{n_dead} dead neurons left out", fontsize=9)
    return ax


def plot_activation_probabilities(
    P, *, feature_names=None, classes=None, cmap="viridis", ax=None
):
    """The activation probabilities ``P[c, j]`` as a heat map.

    Rows are classes, columns neurons; the colour of a cell is the
    probability that the neuron is active (> 0) on a training sample of that
    class (the paper's Eq. 14), on a fixed scale from 0 to 1.

    Parameters
    ----------
    P : array-like of shape (n_classes, n_neurons) or \
            ActivationProbabilityFeatures
        The matrix, or a fitted :class:`~sknap.ActivationProbabilityFeatures`
        (its ``activation_probability_`` and ``classes_``).
    feature_names : array-like of str, default=None
        The neurons' column names (``extractor.get_feature_names_out()``,
        probability columns at the end allowed): the layers are then marked
        on the horizontal axis and separated by white lines.
    classes : array-like of shape (n_classes,), default=None
        Row labels; None is ``classes_`` of an estimator, else 0, 1, ...
    cmap : str or Colormap, default="viridis"
        The colour map.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn on; ``ax.images[0].get_array()`` is ``P``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap.plotting import plot_activation_probabilities
    >>> P = np.array([[1.0, 0.5, 0.0],
    ...               [0.0, 1.0, 0.25]])
    >>> ax = plot_activation_probabilities(P, classes=["cat", "dog"])
    >>> np.asarray(ax.images[0].get_array()).tolist()
    [[1.0, 0.5, 0.0], [0.0, 1.0, 0.25]]
    """
    if hasattr(P, "activation_probability_"):
        if classes is None:
            classes = P.classes_
        P = P.activation_probability_
    P = np.asarray(P, dtype=float)
    if P.ndim != 2:
        raise ValueError(
            "The 'P' parameter of plot_activation_probabilities must be a 2-D "
            "array of shape (n_classes, n_neurons) or a fitted "
            f"ActivationProbabilityFeatures. Got an array of shape {P.shape} "
            "instead."
        )
    n_classes, n_neurons = P.shape
    if classes is None:
        classes = np.arange(n_classes)
    if len(classes) != n_classes:
        raise ValueError(
            f"The 'classes' parameter of plot_activation_probabilities has "
            f"{len(classes)} labels but P has {n_classes} rows; pass one label "
            "per row."
        )
    ax = _axes(ax, (min(12.0, 2.5 + 0.08 * n_neurons), 1.2 + 0.3 * n_classes))
    image = ax.imshow(
        P, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0.0, vmax=1.0
    )
    ax.figure.colorbar(image, ax=ax, label="P(active | class)")
    ax.set_yticks(np.arange(n_classes), [str(c) for c in classes])
    ax.set_ylabel("class")
    ax.set_xlabel("neuron")
    if feature_names is not None:
        layers = [layer_of(str(name)) for name in list(feature_names)[:n_neurons]]
        if len(layers) != n_neurons:
            raise ValueError(
                f"The 'feature_names' parameter of plot_activation_probabilities "
                f"has {len(layers)} names but P has {n_neurons} columns; pass "
                "extractor.get_feature_names_out()."
            )
        starts = [j for j in range(n_neurons) if j == 0 or layers[j] != layers[j - 1]]
        ends = starts[1:] + [n_neurons]
        for start in starts[1:]:
            ax.axvline(start - 0.5, color="white", linewidth=1.5)
        ax.set_xticks(
            [(s + e - 1) / 2 for s, e in zip(starts, ends, strict=True)],
            [layers[s] for s in starts],
        )
        ax.set_xlabel("neurons, by layer")
    return ax
