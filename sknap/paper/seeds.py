"""Several seeds of a sweep: running them, their spread and the intervals.

A seed sets the backbone's initial weights, the order of its training data,
the auxiliary models' initial weights and batches, and the probe's subset;
the data split (and the Mixed control's shuffled labels) stay those of the
command's ``--seed``, so that every seed is tested on the same images and the
gains can be resampled over them, paired.

Two kinds of uncertainty are reported, and kept apart:

* the spread over seeds (mean, standard deviation, range) of every
  correlation and every gain: how much a rerun with other random numbers
  moves it;
* a bootstrap interval over test images for every gain
  (:func:`sknap.statistics.bootstrap_interval`, percentile method): how much
  another draw of test images of the same distribution would move it, for
  the models trained. The images are resampled once for all checkpoints and
  seeds, so the interval is for the gain averaged over them.
"""

import time
from dataclasses import replace

import numpy as np

from ..statistics import bootstrap_interval, paired_test
from .experiments import SweepResult, run_sweep

__all__ = ["gain_intervals", "run_seeds", "spread", "wilcoxon_summary"]


def run_seeds(make_model, data, settings, seeds, *, progress=True, on_checkpoint=None):
    """:func:`~sknap.paper.experiments.run_sweep` once per seed, records joined.

    Parameters
    ----------
    make_model : callable
        ``make_model(seed)`` returns a new, untrained backbone.
    data : ImageData
        The same train and test images for every seed.
    settings : SweepSettings
        Its ``random_state`` is replaced by each seed in turn (on a copy).
    seeds : sequence of int
        The seeds.
    progress : bool, default=True
        Progress bars.
    on_checkpoint : callable, default=None
        Called with each record, as in ``run_sweep``.

    Returns
    -------
    result : SweepResult
        Every seed's records in order (each with its ``seed``), the matching
        ``test_correct``, the settings of the first seed and the summed wall
        time.

    Examples
    --------
    >>> from sknap.paper.backbones import make_backbone
    >>> from sknap.paper.datasets import load_dataset
    >>> from sknap.paper.experiments import SweepSettings
    >>> data = load_dataset("digits", train_size_limit=100, test_size_limit=50)
    >>> settings = SweepSettings(n_checkpoints=1, aux_epochs=1, ablations=False,
    ...                          compare_layers=False, device="cpu")
    >>> def make_model(seed):
    ...     return make_backbone("fcnn", data.input_shape, data.n_classes,
    ...                          random_state=seed)
    >>> result = run_seeds(make_model, data, settings, [0, 1], progress=False)
    >>> [(r["seed"], r["checkpoint"]) for r in result.records]
    [(0, 1), (1, 1)]
    """
    joined = SweepResult()
    start = time.perf_counter()
    for seed in seeds:
        one = run_sweep(
            make_model(seed),
            data,
            replace(settings, random_state=int(seed)),
            progress=progress,
            on_checkpoint=on_checkpoint,
        )
        joined.records += one.records
        joined.test_correct += one.test_correct
        joined.blocks = one.blocks
        if not joined.settings:
            joined.settings = dict(one.settings, seeds=[int(s) for s in seeds])
    joined.wall_time_s = time.perf_counter() - start
    return joined


def spread(values):
    """Mean, standard deviation (n - 1) and range of per-seed values.

    Parameters
    ----------
    values : array-like of shape (n_seeds,)
        One value per seed; NaN values (an undefined correlation) are left
        out.

    Returns
    -------
    spread : dict
        ``mean``, ``sd`` (None for fewer than two values), ``min``, ``max``
        and ``values`` (as given).

    Examples
    --------
    >>> spread([1.0, 2.0, 3.0])
    {'mean': 2.0, 'sd': 1.0, 'min': 1.0, 'max': 3.0, 'values': [1.0, 2.0, 3.0]}
    """
    raw = [float(v) for v in values]
    kept = np.asarray([v for v in raw if v == v], dtype=float)
    if kept.size == 0:
        nan = float("nan")
        return {"mean": nan, "sd": None, "min": nan, "max": nan, "values": raw}
    return {
        "mean": float(kept.mean()),
        "sd": float(kept.std(ddof=1)) if kept.size > 1 else None,
        "min": float(kept.min()),
        "max": float(kept.max()),
        "values": raw,
    }


def gain_intervals(test_correct, pairs, *, confidence_level=0.95, random_state=0):
    """Bootstrap intervals over test images of mean gains, in points.

    For each ``(name, base)`` pair, each test image's difference of
    correctness (1, 0 or -1) between ``name`` and ``base`` is averaged over
    the records (checkpoints and seeds); the mean of these per-image values
    is the mean gain, and :func:`~sknap.statistics.bootstrap_interval`
    (percentile, 9,999 resamples) resamples the images.

    Parameters
    ----------
    test_correct : list of dict
        Per record, a bool array of shape (n_test,) per model name
        (``SweepResult.test_correct``).
    pairs : iterable of (str, str)
        ``(name, base)``: the gain of ``name`` over ``base``; pairs whose
        names the records lack are skipped.
    confidence_level : float, default=0.95
        Coverage of the intervals.
    random_state : int, default=0
        Seed of the resampling.

    Returns
    -------
    intervals : dict
        ``"name-base"`` to ``{"gain", "low", "high"}``, in percentage points.

    Examples
    --------
    Two test images, one checkpoint: the auxiliary model is right on both,
    the backbone on the first only, so the per-image gains are 0 and 1.

    >>> import numpy as np
    >>> correct = [{"backbone": np.array([True, False]),
    ...             "aux": np.array([True, True])}]
    >>> gain_intervals(correct, [("aux", "backbone")])
    {'aux-backbone': {'gain': 50.0, 'low': 0.0, 'high': 100.0}}
    """
    out = {}
    for name, base in pairs:
        if not test_correct or not all(name in c and base in c for c in test_correct):
            continue
        diff = np.mean(
            [c[name].astype(float) - c[base].astype(float) for c in test_correct],
            axis=0,
        )
        low, high = bootstrap_interval(
            diff, confidence_level=confidence_level, random_state=random_state
        )
        out[f"{name}-{base}"] = {
            "gain": round(100 * float(diff.mean()), 10),
            "low": 100 * low,
            "high": 100 * high,
        }
    return out


def wilcoxon_summary(base, proposed):
    """:func:`~sknap.statistics.paired_test` with the test's name attached."""
    return {
        "test": "Wilcoxon signed-rank, one-sided (proposed > base), ties dropped",
        **paired_test(base, proposed),
    }
