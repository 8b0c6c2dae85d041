"""The verdicts on H1 and H2, in words, from a summary.

Every clause is read off :func:`sknap.paper.report.summarize`'s numbers: the
correlations' signs on each seed for H1; for H2 the wins, the mean gain, its
spread over seeds, its bootstrap interval over test images and the paired
test. A gain whose interval contains 0 is called "not distinguishable from
zero", whatever its sign.
"""

import math

__all__ = ["h1_verdict", "h2_verdict", "interval_words"]


def interval_words(low, high):
    """Where a gain's interval lies with respect to 0, in words.

    Parameters
    ----------
    low, high : float
        The interval's ends.

    Returns
    -------
    words : str
        "above zero", "below zero" or "not distinguishable from zero".

    Examples
    --------
    >>> interval_words(-0.1, 0.4), interval_words(0.05, 0.4)
    ('not distinguishable from zero', 'above zero')
    """
    if low > 0:
        return "above zero"
    if high < 0:
        return "below zero"
    return "not distinguishable from zero"


def _sd(sp):
    return "" if sp is None or sp["sd"] is None else f" ± {sp['sd']:.2f}"


def h1_verdict(summary, random_labels=False):
    """The H1 verdict: does entropy fall as training accuracy rises?

    Parameters
    ----------
    summary : dict
        From :func:`~sknap.paper.report.summarize` (before the verdicts).
    random_labels : bool, default=False
        The Mixed control, where the paper expects no negative relation.

    Returns
    -------
    verdict : str
        One sentence, without the final full stop.
    """
    t1 = summary["table1"]
    p, s = t1["pearson_train"], t1["spearman_train"]
    seeds = summary.get("seeds") or [None]
    sp_p = summary.get("spread", {}).get("table1.pearson_train")
    sp_s = summary.get("spread", {}).get("table1.spearman_train")
    if math.isnan(p) or math.isnan(s):
        return "undefined (fewer than 3 checkpoints, or a constant series)"
    k = len(seeds)
    if k > 1:
        pairs = list(zip(sp_p["values"], sp_s["values"], strict=True))
        negative = sum(a < 0 and b < 0 for a, b in pairs)
        coefficients = (
            f"PCC {p:+.2f}{_sd(sp_p)}, SCC {s:+.2f}{_sd(sp_s)}, mean ± SD over "
            f"{k} seeds; both negative on {negative} of {k} seeds"
        )
        everywhere, nowhere = negative == k, negative == 0
    else:
        coefficients = f"PCC {p:+.2f}, SCC {s:+.2f}"
        everywhere = p < 0 and s < 0
        nowhere = not everywhere
    if random_labels:
        found = (
            "entropy falls as training accuracy rises"
            if everywhere
            else "no negative relation between entropy and training accuracy"
            if nowhere
            else "entropy falls as training accuracy rises on some seeds only"
        )
        behaves = (
            "the control does not behave as the paper's: a negative relation "
            "appears without learnable labels"
            if everywhere
            else "the control behaves as the paper's Mixed runs"
            if nowhere
            else "the control is not consistent over seeds"
        )
        return (
            f"shuffled labels (Mixed), where the paper expects no negative "
            f"relation; {found} ({coefficients}): {behaves}"
        )
    if everywhere:
        return (
            f"entropy falls as training accuracy rises ({coefficients}): "
            "the paper's H1 relation holds on this run"
        )
    if nowhere:
        return (
            f"no negative relation between entropy and training accuracy "
            f"({coefficients}): the paper's H1 relation does not hold on this run"
        )
    return (
        f"entropy falls as training accuracy rises on some seeds only "
        f"({coefficients}): the paper's H1 relation is not consistent over seeds "
        "on this run"
    )


def _gain(item, sd=True):
    """``+0.28 ± 0.10 [+0.05, +0.50]`` from a gain dict."""
    text = f"{item['avg_improvement']:+.2f}"
    if sd and item.get("sd") is not None:
        text += f" ± {item['sd']:.2f}"
    if "interval" in item:
        low, high = item["interval"]
        text += f" [{low:+.2f}, {high:+.2f}]"
    return text


def h2_verdict(summary):
    """The H2 verdict: does the auxiliary model beat the backbone?

    Parameters
    ----------
    summary : dict
        From :func:`~sknap.paper.report.summarize` (before the verdicts).

    Returns
    -------
    verdict : str
        One paragraph, without the final full stop.
    """
    test = summary["table2"]["test"]
    n = test.get("n", summary["n_checkpoints"])
    k = len(summary.get("seeds") or [None])
    where = f"{n} checkpoints" if k == 1 else f"{n} checkpoints of {k} seeds"
    notes = []
    if k > 1:
        notes.append("mean ± SD over seeds")
    if "interval" in test:
        notes.append("95 % percentile bootstrap interval over test images")
    note = f" ({'; '.join(notes)})" if notes else ""
    text = (
        f"the auxiliary model's test accuracy beats the backbone's at "
        f"{test['wins']} of {where} ({test['ties']} ties), by {_gain(test)} "
        f"points on average{note}"
    )
    if "interval" in test:
        text += f": the gain is {interval_words(*test['interval'])}"
    paired = summary.get("paired_test", {}).get("aux")
    if paired is not None:
        pvalue = paired["pvalue"]
        text += (
            f"; one-sided Wilcoxon signed-rank test over the {paired['n']} pairs "
            f"({paired['n_nonzero']} not tied): "
            + ("no pair differs" if math.isnan(pvalue) else f"p = {pvalue:.3g}")
        )
    ypred = summary["ablations"].get("ypred")
    if ypred is not None:
        text += f"; the same network fed Y_predicted alone gains {_gain(ypred['test'])}"
        over = summary.get("over_ypred", {})
        if "aux" in over:
            item = over["aux"]
            text += (
                f", so the activation probabilities add {item['gain']:+.2f} "
                f"[{item['low']:+.2f}, {item['high']:+.2f}] points over it: "
                f"{interval_words(item['low'], item['high'])}"
            )
        else:
            margin = test["avg_improvement"] - ypred["test"]["avg_improvement"]
            text += f", so the activation probabilities add {margin:+.2f} points"
        if "binned" in over:
            item = over["binned"]
            text += (
                f"; the binned features add {item['gain']:+.2f} "
                f"[{item['low']:+.2f}, {item['high']:+.2f}]: "
                f"{interval_words(item['low'], item['high'])}"
            )
    verdict = "holds" if test["wins"] == n else "does not hold at every checkpoint"
    return f"{text}. H2 (better at every checkpoint) {verdict} on this run"
