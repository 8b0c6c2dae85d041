"""The markdown report of a sweep: the paper's tables, ablations and verdicts.

Every number comes from the records and the summary of one run
(:func:`sknap.paper.report.summarize`); nothing is typed in.
"""

import math

__all__ = ["LABELS", "markdown_report", "mean_over_seeds"]


def _pct(value):
    return "" if value is None else f"{100 * value:.1f}"


def _num(value, digits=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


LABELS = {
    "ypred": "Y_pred only",
    "binned": "binned P",
    "cv_aux": "cross-fitted P",
    "probe": "LR probe",
}


def mean_over_seeds(records):
    """One record per checkpoint: the mean over seeds of every number.

    Parameters
    ----------
    records : list of dict
        Records of several seeds (key ``seed``).

    Returns
    -------
    records : list of dict
        In checkpoint order; nested dicts (per class, per layer) are averaged
        key by key.

    Examples
    --------
    >>> mean_over_seeds([{"checkpoint": 1, "seed": 0, "acc": 0.5},
    ...                  {"checkpoint": 1, "seed": 1, "acc": 0.7}])
    [{'checkpoint': 1, 'acc': 0.6}]
    """
    groups = {}
    for r in records:
        groups.setdefault(r["checkpoint"], []).append(r)

    def mean(values):
        if isinstance(values[0], dict):
            return {k: mean([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            return round(sum(values) / len(values), 12)
        return values[0]

    return [
        {
            k: (c if k == "checkpoint" else mean([r[k] for r in rs]))
            for k in rs[0]
            if k != "seed"
        }
        for c, rs in sorted(groups.items())
    ]


def _corr(summary, key):
    """A correlation, with its SD and range over seeds where there are several."""
    text = _num(summary["table1"][key])
    sp = summary.get("spread", {}).get(f"table1.{key}")
    if sp is None or sp["sd"] is None:
        return text
    return f"{text} ± {sp['sd']:.2f} [{sp['min']:+.2f}, {sp['max']:+.2f}]"


def _intervals_section(summary):
    """Test gains of every column over the backbone, with their intervals."""
    from .verdicts import interval_words

    rows = []
    columns = [("aux", "paper's P (PTe)", summary["table2"]["test"])]
    columns += [
        (n, LABELS[n], summary["ablations"][n]["test"])
        for n in LABELS
        if n in summary["ablations"]
    ]
    for _name, label, item in columns:
        interval = item.get("interval")
        rows.append(
            [
                label,
                f"{item['avg_improvement']:+.2f}",
                "" if item.get("sd") is None else f"{item['sd']:.2f}",
                "" if interval is None else f"[{interval[0]:+.2f}, {interval[1]:+.2f}]",
                f"{item['wins']}/{item.get('n', summary['n_checkpoints'])}",
                "" if interval is None else interval_words(*interval),
            ]
        )
    over = summary.get("over_ypred", {})
    for name, label in (("aux", "paper's P"), ("binned", "binned P")):
        if name in over:
            item = over[name]
            rows.append(
                [
                    f"{label} over Y_pred only",
                    f"{item['gain']:+.2f}",
                    "",
                    f"[{item['low']:+.2f}, {item['high']:+.2f}]",
                    "",
                    interval_words(item["low"], item["high"]),
                ]
            )
    k = len(summary.get("seeds") or [None])
    out = [
        "## Test gains with intervals",
        "",
        "Gain: mean over checkpoints"
        + (" and seeds" if k > 1 else "")
        + " of the column's test accuracy minus the backbone's (or minus "
        "Y_pred only's), in points. SD: over seeds"
        + ("" if k > 1 else " (one seed: none)")
        + ". Interval: 95 % percentile bootstrap over test images (9,999 "
        "resamples of the images, paired: the same images for both columns, "
        "every checkpoint and every seed); it measures the test set's sampling "
        "noise for the models trained, not the spread over seeds. wins: "
        "checkpoints (of all seeds) where the column beats the backbone.",
        "",
        _table(["column", "gain", "SD", "95 % interval", "wins", "vs. 0"], rows),
        "",
    ]
    for key, label in (
        ("aux", "paper's P vs. backbone"),
        ("aux_vs_ypred", "paper's P vs. Y_pred only"),
    ):
        test = summary.get("paired_test", {}).get(key)
        if test is None:
            continue
        p = test["pvalue"]
        out += [
            f"- Paired test, {label}: {test['test']}, over the {test['n']} "
            f"checkpoint{'-seed pairs' if k > 1 else 's'} ({test['n_nonzero']} "
            "not tied): " + ("no pair differs." if p != p else f"p = {p:.3g}.")
        ]
    if "paired_test" in summary:
        out += [
            "  The test treats checkpoints as independent pairs; checkpoints of "
            "one training run are not, so read p as a rough guide.",
            "",
        ]
    return out


def _avg_row(label, summary_pairs, width):
    cells = [label] + [""] * (width - 1)
    for index, item in summary_pairs:
        cells[index] = "" if item is None else f"{item['avg_improvement']:+.2f}"
    return cells


def markdown_report(records, summary, meta):
    """The report as markdown text.

    Parameters
    ----------
    records : list of dict
        Per-checkpoint measurements.
    summary : dict
        :func:`summarize` of the records.
    meta : dict
        ``command``, ``title``, ``data``, ``backbone``, ``settings``,
        ``machine``, ``wall_time_s``, ``blocks``, ``figure`` (file name or None).

    Returns
    -------
    text : str
        The report: verdicts, Tables 1 to 4, ablations, entropy per class and
        per layer, and a link to the figure.

    Examples
    --------
    >>> records = [
    ...     {"checkpoint": k, "epoch": k, "train_acc": acc, "test_acc": acc - 0.05,
    ...      "aux_train_acc": acc + 0.02, "aux_test_acc": acc - 0.04,
    ...      "entropy": e, "normalized_entropy": e / 100, "n_dead": 0,
    ...      "class_entropy": {"0": e / 2, "1": e / 2}, "layer_entropy": {"relu1": e}}
    ...     for k, (acc, e) in enumerate([(0.6, 80.0), (0.7, 75.0), (0.8, 72.0)], 1)
    ... ]
    >>> meta = {"title": "Demo", "command": "sknap reproduce", "data": "digits",
    ...         "backbone": "fcnn", "machine": "a CPU", "wall_time_s": 60.0,
    ...         "settings": {"n_bins": 10}, "blocks": {"all": ["relu1"]},
    ...         "figure": None}
    >>> from sknap.paper.report import summarize
    >>> text = markdown_report(records, summarize(records), meta)
    >>> print(text.splitlines()[0])
    # Demo
    >>> "## Table 1: correlation between entropy and accuracy" in text
    True
    """
    seeds = summary.get("seeds") or [None]
    if len(seeds) > 1:
        records = mean_over_seeds(records)
    out = [f"# {meta['title']}", ""]
    out += [
        "Command:",
        "",
        "```bash",
        meta["command"],
        "```",
        "",
        f"- data: {meta['data']}",
        f"- backbone: {meta['backbone']}",
        f"- machine: {meta['machine']}",
        f"- wall time: {meta['wall_time_s']:.0f} s "
        f"({meta['wall_time_s'] / 60:.1f} min)",
        "- settings: " + ", ".join(f"{k}={v}" for k, v in meta["settings"].items()),
        f"- layers: {meta['blocks']}",
    ]
    if len(seeds) > 1:
        out += [
            f"- seeds: {', '.join(str(x) for x in seeds)} (the tables per "
            "checkpoint show the mean over seeds; the data split is the same for "
            "every seed)",
        ]
    out += [
        "",
        "## Verdicts",
        "",
        f"- **H1** (entropy vs. accuracy): {summary['h1']}.",
        f"- **H2** (auxiliary model vs. backbone): {summary['h2']}.",
        "",
    ]
    out += [
        "## Table 1: correlation between entropy and accuracy over the checkpoints",
        "",
        "Entropy: total activation-pattern entropy E on the training set. "
        "Normalized entropy gives the same coefficients (it is E times a constant).",
        "",
        _table(
            ["", "train accuracy", "test accuracy"],
            [
                [
                    "PCC",
                    _corr(summary, "pearson_train"),
                    _corr(summary, "pearson_test"),
                ],
                [
                    "SCC",
                    _corr(summary, "spearman_train"),
                    _corr(summary, "spearman_test"),
                ],
            ],
        ),
        "",
    ]
    if len(seeds) > 1:
        out[-1:] = [
            "",
            f"Mean ± SD over {len(seeds)} seeds, [minimum, maximum] over seeds.",
            "",
        ]
    out += _intervals_section(summary)
    rows = [
        [
            r["checkpoint"],
            f"{r['epoch']:.0f}",
            _pct(r["train_acc"]),
            _pct(r["aux_train_acc"]),
            _pct(r["test_acc"]),
            _pct(r["aux_test_acc"]),
            f"{r['entropy']:.1f}",
            f"{r['normalized_entropy']:.4f}",
            f"{r['n_dead']:.0f}",
        ]
        for r in records
    ]
    t2 = summary["table2"]
    rows.append(_avg_row("Avg. Imp.", [(3, t2["train"]), (5, t2["test"])], 9))
    out += [
        "## Table 2/3: backbone (Tr, Te) vs. auxiliary model (PTr, PTe), %",
        "",
        "P fitted in-sample on the training set, as in the paper. Avg. Imp.: mean "
        "of PTr - Tr and PTe - Te in percentage points. E: entropy (bits), "
        "E/Emax: normalized entropy, dead: neurons never active.",
        "",
        _table(
            ["Iter", "epoch", "Tr", "PTr", "Te", "PTe", "E", "E/Emax", "dead"], rows
        ),
        "",
    ]
    if "table4" in summary:
        t4 = summary["table4"]
        rows = [
            [
                r["checkpoint"],
                _pct(r["train_acc"]),
                _pct(r["last2_train_acc"]),
                _pct(r["last_train_acc"]),
                _pct(r["test_acc"]),
                _pct(r["last2_test_acc"]),
                _pct(r["last_test_acc"]),
            ]
            for r in records
        ]
        rows.append(
            _avg_row(
                "Avg. Imp.",
                [
                    (2, t4["last2"]["train"]),
                    (3, t4["last"]["train"]),
                    (5, t4["last2"]["test"]),
                    (6, t4["last"]["test"]),
                ],
                7,
            )
        )
        pcc = t4["pearson_last2_vs_last"]
        rows.append(["PCC", "", _num(pcc["train"]), "", "", _num(pcc["test"]), ""])
        out += [
            "## Table 4: last two layers (L2L) vs. last layer (LL), %",
            "",
            f"L2L: {meta['blocks'].get('last2')}; LL: {meta['blocks'].get('last')}. "
            "PCC: Pearson correlation between the L2L and LL accuracies over the "
            "checkpoints.",
            "",
            _table(
                ["Iter", "Tr", "PTr-L2L", "PTr-LL", "Te", "PTe-L2L", "PTe-LL"], rows
            ),
            "",
        ]
    if summary["ablations"]:
        out += _ablation_section(records, summary)
    out += _entropy_section(records)
    if meta.get("figure"):
        out += [
            "## Figure 2",
            "",
            f"![min-max normalized entropy and accuracy]({meta['figure']})",
            "",
        ]
    return "\n".join(out) + "\n"


def _ablation_section(records, summary):
    ab = summary["ablations"]
    names = [n for n in LABELS if n in ab]
    labels = LABELS
    header = ["Iter", "Te", "PTe"] + [f"Te {labels[n]}" for n in names]
    header += ["Tr", "PTr"] + [f"Tr {labels[n]}" for n in names]
    rows = []
    for r in records:
        row = [r["checkpoint"], _pct(r["test_acc"]), _pct(r["aux_test_acc"])]
        row += [_pct(r[f"{n}_test_acc"]) for n in names]
        row += [_pct(r["train_acc"]), _pct(r["aux_train_acc"])]
        row += [_pct(r[f"{n}_train_acc"]) for n in names]
        rows.append(row)
    k = len(names)
    avg = ["Avg. Imp.", "", f"{summary['table2']['test']['avg_improvement']:+.2f}"]
    avg += [f"{ab[n]['test']['avg_improvement']:+.2f}" for n in names]
    avg += ["", f"{summary['table2']['train']['avg_improvement']:+.2f}"]
    avg += [f"{ab[n]['train']['avg_improvement']:+.2f}" for n in names]
    wins = ["wins", "", str(summary["table2"]["test"]["wins"])]
    wins += [str(ab[n]["test"]["wins"]) for n in names]
    wins += ["", str(summary["table2"]["train"]["wins"])]
    wins += [str(ab[n]["train"]["wins"]) for n in names]
    rows += [avg, wins]
    assert len(rows[0]) == 5 + 2 * k
    return [
        "## Ablations, %",
        "",
        "- *Y_pred only*: the same auxiliary network, trained the same way on "
        "the backbone's softmax alone. If it gains as much as PTe, the gain comes "
        "from training a second model, not from the activation probabilities.",
        "- *binned P*: the auxiliary network fed binned class-conditional "
        "features (`ActivationProbabilityFeatures(n_bins=R)`, R the run's "
        "`n_bins`) instead of the paper's P.",
        "- *LR probe*: a logistic regression (standardized inputs) on the same "
        "activations, fitted on at most `probe_max_samples` training samples; "
        "its train accuracy is measured on the whole training set.",
        "- *cross-fitted P*: P for each training sample comes from the other "
        "folds (`cv` folds), so the auxiliary model is not trained on features "
        "that saw the sample's own label; test features use P from all training "
        "samples.",
        "",
        "Avg. Imp.: mean gain over the backbone (Te or Tr) in points; wins: "
        "checkpoints where the column beats the backbone.",
        "",
        _table(header, rows),
        "",
    ]


def _entropy_section(records):
    classes = list(records[0]["class_entropy"])
    layers = list(records[0]["layer_entropy"])
    out = [
        "## Entropy per class and per layer (training set, bits)",
        "",
        _table(
            ["Iter"] + [f"class {c}" for c in classes],
            [
                [r["checkpoint"]] + [f"{r['class_entropy'][c]:.1f}" for c in classes]
                for r in records
            ],
        ),
        "",
    ]
    if len(layers) <= 8:
        out += [
            _table(
                ["Iter"] + layers,
                [
                    [r["checkpoint"]]
                    + [f"{r['layer_entropy'][name]:.1f}" for name in layers]
                    for r in records
                ],
            ),
            "",
        ]
    else:
        out += [
            f"{len(layers)} layers: per-layer entropy is in the CSV and JSON "
            "(`layer_entropy_<layer>`).",
            "",
        ]
    return out
