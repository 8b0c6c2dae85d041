"""A sweep's results as CSV, JSON, a markdown report and a Figure-2 plot.

The tables follow the paper: Table 1 (correlation between entropy and
accuracy over the checkpoints), Table 2/3 (Tr, PTr, Te, PTe per checkpoint and
the average improvement), Table 4 (last two layers against the last layer),
plus the ablations. Every number is computed here from the records of one
run; nothing is typed in.
"""

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np

from ..statistics import correlation
from .markdown import markdown_report
from .seeds import gain_intervals, spread, wilcoxon_summary
from .verdicts import h1_verdict, h2_verdict

__all__ = [
    "average_improvement",
    "flatten_record",
    "plot_figure2",
    "summarize",
    "write_csv",
    "write_json",
    "write_report",
]


def average_improvement(base, proposed):
    """Mean of ``proposed - base`` in percentage points (the paper's "Avg.Imp.").

    Parameters
    ----------
    base, proposed : array-like of shape (n,)
        Accuracies (fractions) of the backbone and of the auxiliary model.

    Returns
    -------
    improvement : float
        Mean difference, in percentage points.

    Examples
    --------
    >>> average_improvement([0.90, 0.92], [0.91, 0.95])
    2.0
    """
    diff = np.asarray(proposed, dtype=float) - np.asarray(base, dtype=float)
    return round(float(np.mean(diff)) * 100, 10)


def _column(records, key):
    return [r[key] for r in records] if records and key in records[0] else None


ABLATIONS = ("ypred", "binned", "cv_aux", "probe")
"""Ablation columns of a record, in the order the report shows them."""


def summarize(records, *, random_labels=False, test_correct=None):
    """The report's derived numbers, from the per-checkpoint records.

    Parameters
    ----------
    records : list of dict
        One dict per checkpoint (and seed), as
        :func:`~sknap.paper.experiments.run_sweep` makes them: at least
        ``train_acc``, ``test_acc``, ``entropy``, ``aux_train_acc`` and
        ``aux_test_acc``; records with different ``seed`` values are
        separate runs.
    random_labels : bool, default=False
        The run trained on shuffled labels (the paper's "Mixed" control), for
        which the paper expects no negative relation: the verdicts say so.
    test_correct : list of dict, default=None
        ``SweepResult.test_correct``, matching ``records``: which test images
        each model gets right. With it, every test gain gets a bootstrap
        interval over test images and the auxiliary model a paired test;
        without it, neither.

    Returns
    -------
    summary : dict
        ``table1``: Pearson and Spearman between total entropy and train/test
        accuracy (min-max or n-normalized entropy gives the same values, as
        both are affine in it), the mean over seeds. ``table2``: average
        improvement of the auxiliary model over the backbone, train and test
        (mean over seeds, ``sd`` over seeds, ``interval`` over test images),
        and the checkpoints (of all seeds) where it is higher, of ``n``.
        ``ablations`` and ``table4`` likewise where measured, ``table4`` with
        the Pearson correlation between the last-two-layer and last-layer
        accuracies. ``seeds``; ``spread``: mean, SD and range over seeds of
        every correlation and gain; ``per_seed``: each seed's own summary;
        ``over_ypred``: the gain of the paper's and the binned features over
        ``Y_pred`` only, with intervals; ``paired_test``: the auxiliary model
        against the backbone over checkpoints and seeds. ``h1`` and ``h2``:
        verdicts in words.

    Examples
    --------
    >>> records = [
    ...     {"checkpoint": k, "epoch": k, "train_acc": acc, "test_acc": acc - 0.05,
    ...      "aux_train_acc": acc + 0.02, "aux_test_acc": acc - 0.04,
    ...      "entropy": e, "normalized_entropy": e / 100, "n_dead": 0,
    ...      "class_entropy": {"0": e / 2, "1": e / 2}, "layer_entropy": {"relu1": e}}
    ...     for k, (acc, e) in enumerate([(0.6, 80.0), (0.7, 75.0), (0.8, 72.0)], 1)
    ... ]
    >>> summary = summarize(records)
    >>> round(summary["table1"]["pearson_train"], 2)
    -0.99
    >>> summary["table2"]["test"]["avg_improvement"], summary["table2"]["test"]["wins"]
    (1.0, 3)
    >>> print(summary["h1"])
    entropy falls as training accuracy rises (PCC -0.99, SCC -1.00): ...
    """
    groups = {}
    for r in records:
        groups.setdefault(r.get("seed"), []).append(r)
    per_seed = [_summarize_one(rs) for rs in groups.values()]
    out = _combine(per_seed)
    out["seeds"] = list(groups)
    if len(per_seed) > 1:
        out["per_seed"] = per_seed
    if test_correct is not None:
        _add_intervals(out, records, test_correct)
    out["h1"] = h1_verdict(out, random_labels)
    out["h2"] = h2_verdict(out)
    if random_labels:
        out["h2"] += (
            " (shuffled training labels: the paper makes no H2 claim for this "
            "control, and test accuracy is measured against the true labels)"
        )
    return out


def _summarize_one(records):
    """The summary of one seed's records, without verdicts."""
    tr, te = _column(records, "train_acc"), _column(records, "test_acc")
    entropy = _column(records, "entropy")
    out = {"n_checkpoints": len(records)}
    p_tr, s_tr = correlation(entropy, tr)
    p_te, s_te = correlation(entropy, te)
    out["table1"] = {
        "pearson_train": p_tr,
        "spearman_train": s_tr,
        "pearson_test": p_te,
        "spearman_test": s_te,
    }

    def gain(key, base):
        values = _column(records, key)
        if values is None:
            return None
        wins = int(np.sum(np.asarray(values) > np.asarray(base)))
        ties = int(np.sum(np.asarray(values) == np.asarray(base)))
        return {
            "avg_improvement": average_improvement(base, values),
            "wins": wins,
            "ties": ties,
            "n": len(values),
            "final": values[-1],
        }

    def gains(name):
        return {
            "train": gain(f"{name}_train_acc", tr),
            "test": gain(f"{name}_test_acc", te),
        }

    out["table2"] = gains("aux")
    out["ablations"] = {
        name: gains(name)
        for name in ABLATIONS
        if _column(records, f"{name}_train_acc") is not None
    }
    if _column(records, "last_train_acc") is not None:
        out["table4"] = {name: gains(name) for name in ("last2", "last")}
        out["table4"]["pearson_last2_vs_last"] = {
            split: correlation(
                _column(records, f"last2_{split}_acc"),
                _column(records, f"last_{split}_acc"),
            )[0]
            for split in ("train", "test")
        }
    return out


def _combine(per_seed):
    """One summary from the seeds': means, with sums of wins, ties and n."""
    first = per_seed[0]
    out = {"n_checkpoints": first["n_checkpoints"], "spread": {}}

    def mean_gain(path):
        items = [_get(s, path) for s in per_seed]
        if items[0] is None:
            return None
        sp = spread([g["avg_improvement"] for g in items])
        out["spread"][".".join(path)] = sp
        return {
            "avg_improvement": sp["mean"],
            "sd": sp["sd"],
            "wins": sum(g["wins"] for g in items),
            "ties": sum(g["ties"] for g in items),
            "n": sum(g["n"] for g in items),
            "final": float(np.mean([g["final"] for g in items])),
        }

    out["table1"] = {}
    for key in first["table1"]:
        sp = spread([s["table1"][key] for s in per_seed])
        out["spread"][f"table1.{key}"] = sp
        out["table1"][key] = sp["mean"]
    out["table2"] = {k: mean_gain(("table2", k)) for k in ("train", "test")}
    out["ablations"] = {
        name: {k: mean_gain(("ablations", name, k)) for k in ("train", "test")}
        for name in first["ablations"]
    }
    if "table4" in first:
        out["table4"] = {
            name: {k: mean_gain(("table4", name, k)) for k in ("train", "test")}
            for name in ("last2", "last")
        }
        out["table4"]["pearson_last2_vs_last"] = {
            k: spread([s["table4"]["pearson_last2_vs_last"][k] for s in per_seed])[
                "mean"
            ]
            for k in ("train", "test")
        }
    return out


def _get(summary, path):
    for key in path:
        summary = summary.get(key) if summary is not None else None
    return summary


def _add_intervals(out, records, test_correct):
    """Bootstrap intervals of the test gains and the paired tests, into ``out``."""
    gains = {"aux": out["table2"], **out["ablations"]}
    gains.update(
        {k: v for k, v in out.get("table4", {}).items() if k in ("last2", "last")}
    )
    pairs = [(name, "backbone") for name in gains]
    pairs += [("aux", "ypred"), ("binned", "ypred")]
    intervals = gain_intervals(test_correct, pairs)
    for name, item in gains.items():
        found = intervals.get(f"{name}-backbone")
        if found is not None:
            item["test"]["interval"] = [found["low"], found["high"]]
    out["over_ypred"] = {
        name: intervals[f"{name}-ypred"]
        for name in ("aux", "binned")
        if f"{name}-ypred" in intervals
    }
    aux = _column(records, "aux_test_acc")
    out["paired_test"] = {"aux": wilcoxon_summary(_column(records, "test_acc"), aux)}
    if "ypred" in out["ablations"]:
        out["paired_test"]["aux_vs_ypred"] = wilcoxon_summary(
            _column(records, "ypred_test_acc"), aux
        )


def flatten_record(record):
    """One CSV row: nested ``class_entropy``/``layer_entropy`` become columns.

    Parameters
    ----------
    record : dict
        One checkpoint's record.

    Returns
    -------
    row : dict
        The same, with each nested dict ``key: {sub: value}`` spread into
        ``key_sub`` entries.

    Examples
    --------
    >>> flatten_record({"checkpoint": 1, "layer_entropy": {"relu1": 2.5}})
    {'checkpoint': 1, 'layer_entropy_relu1': 2.5}
    """
    row = {}
    for key, value in record.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                row[f"{key}_{sub}"] = v
        else:
            row[key] = value
    return row


def write_csv(records, path):
    """Write one row per checkpoint.

    Parameters
    ----------
    records : list of dict
        One dict per checkpoint; nested dicts become columns
        (:func:`flatten_record`).
    path : str or Path
        The CSV file to write.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "checkpoints.csv")
    >>> write_csv([{"checkpoint": 1, "class_entropy": {"0": 1.5}}], path)
    >>> print(open(path).read().strip())
    checkpoint,class_entropy_0
    1,1.5
    """
    rows = [flatten_record(r) for r in records]
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(payload, path):
    """Write ``payload`` (records, settings, summary) as JSON; NaN becomes null.

    Parameters
    ----------
    payload : dict
        Any nesting of dicts, lists, numbers (numpy's too) and strings.
    path : str or Path
        The JSON file to write.

    Examples
    --------
    >>> import json, math, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "results.json")
    >>> write_json({"pearson": math.nan, "n": 3}, path)
    >>> json.load(open(path))
    {'pearson': None, 'n': 3}
    """
    with open(path, "w") as f:
        json.dump(_json_safe(payload), f, indent=2)


def plot_figure2(records, path, title=""):
    """Figure 2 of the paper, written to an image file.

    Entropy min-max normalized over the checkpoints, and train and test
    accuracy, drawn by :func:`sknap.plotting.plot_entropy_accuracy` on a
    figure of its own: matplotlib's backend and pyplot's figures are left
    as they were. Needs matplotlib (the extra ``plot``).

    Parameters
    ----------
    records : list of dict
        One dict per checkpoint with ``checkpoint``, ``entropy``,
        ``train_acc`` and ``test_acc`` (and ``seed``, for the spread over
        seeds).
    path : str or Path
        The image file to write; its suffix sets the format.
    title : str, default=""
        Title of the plot.

    Returns
    -------
    path : str or Path
        ``path``.

    See Also
    --------
    sknap.plotting.plot_entropy_accuracy : The same plot into any Axes.

    Examples
    --------
    >>> import os, tempfile
    >>> records = [{"checkpoint": k, "entropy": e, "train_acc": a, "test_acc": a}
    ...            for k, (e, a) in enumerate([(80, 0.6), (75, 0.7), (72, 0.8)], 1)]
    >>> path = os.path.join(tempfile.mkdtemp(), "figure2.png")
    >>> os.path.exists(plot_figure2(records, path, title="digits"))
    True
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "The Figure-2 plot needs matplotlib: `pip install matplotlib`, or "
            '`pip install ".[plot]"` in a clone of sknap.'
        ) from err
    from ..plotting import plot_entropy_accuracy

    # A Figure made directly, not through pyplot: no backend is chosen or
    # switched, and nothing is left open in pyplot's list of figures.
    fig = Figure(figsize=(6, 3.5), dpi=120, layout="constrained")
    ax = plot_entropy_accuracy(records, x="checkpoint", ax=fig.add_subplot())
    if title:
        subtitle = ax.get_title()
        ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=9)
    fig.savefig(path)
    return path


def write_report(result, meta, folder, *, summary=None):
    """Write ``checkpoints.csv``, ``results.json``, ``figure2.png``, ``report.md``.

    Parameters
    ----------
    result : SweepResult
        The sweep.
    meta : dict
        See :func:`markdown_report`; ``figure`` is filled in here.
    folder : str or Path
        Created if needed.
    summary : dict, default=None
        :func:`summarize` of ``result.records``, when the caller already has
        it; None computes it (with ``result.test_correct``).

    Returns
    -------
    paths : dict of str to Path
        Files written.

    Notes
    -----
    ``test_correct.npz`` is written too when the sweep kept
    ``test_correct``: one bool array of shape (n_records, n_test) per model
    (``backbone``, ``aux``, the ablations), row ``i`` for record ``i``, from
    which the bootstrap intervals can be recomputed.

    Examples
    --------
    >>> import tempfile
    >>> from sknap.paper.backbones import make_backbone
    >>> from sknap.paper.datasets import load_dataset
    >>> from sknap.paper.experiments import SweepSettings, run_sweep
    >>> data = load_dataset("digits", train_size_limit=100, test_size_limit=50)
    >>> model = make_backbone("fcnn", data.input_shape, data.n_classes)
    >>> settings = SweepSettings(n_checkpoints=2, aux_epochs=1, ablations=False,
    ...                          compare_layers=False, device="cpu")
    >>> result = run_sweep(model, data, settings, progress=False)
    >>> meta = {"title": "digits, FCNN", "command": "sknap reproduce",
    ...         "data": "digits", "backbone": "fcnn", "machine": "a CPU",
    ...         "wall_time_s": result.wall_time_s, "settings": result.settings}
    >>> paths = write_report(result, meta, tempfile.mkdtemp())
    >>> sorted(p.name for p in paths.values())
    ['checkpoints.csv', 'figure2.png', 'report.md', 'results.json', 'test_correct.npz']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if summary is None:
        summary = summarize(
            result.records,
            random_labels=meta.get("random_labels", False),
            test_correct=result.test_correct or None,
        )
    paths = {"csv": folder / "checkpoints.csv", "json": folder / "results.json"}
    write_csv(result.records, paths["csv"])
    if result.test_correct:
        paths["test_correct"] = folder / "test_correct.npz"
        names = [
            n
            for n in result.test_correct[0]
            if all(n in c for c in result.test_correct)
        ]
        np.savez_compressed(
            paths["test_correct"],
            **{n: np.stack([c[n] for c in result.test_correct]) for n in names},
        )
    meta = dict(meta, blocks=result.blocks, figure=None)
    try:
        paths["figure"] = plot_figure2(
            result.records, folder / "figure2.png", meta["title"]
        )
        meta["figure"] = "figure2.png"
    except ImportError as err:
        warnings.warn(f"{err} The report is written without it.", stacklevel=2)
    write_json(
        {
            "meta": meta,
            "settings": result.settings,
            "summary": summary,
            "checkpoints": result.records,
        },
        paths["json"],
    )
    paths["report"] = folder / "report.md"
    paths["report"].write_text(markdown_report(result.records, summary, meta))
    return paths
