import json
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from sknap.paper.experiments import SweepResult
from sknap.paper.markdown import markdown_report
from sknap.paper.report import (
    average_improvement,
    flatten_record,
    summarize,
    write_report,
)
from sknap.statistics import correlation


def test_correlation_by_hand():
    # x = 1, 2, 3 and y = 1, 2, 4: deviations (-1, 0, 1) and (-4/3, -1/3, 5/3),
    # so r = 3 / sqrt(2 * 42/9) = 9 / sqrt(84); the ranks agree, so rho = 1.
    pearson, spearman = correlation([1, 2, 3], [1, 2, 4])
    assert_allclose(pearson, 9 / math.sqrt(84))
    assert_allclose(spearman, 1.0)
    # Ranks 1..4 against 2, 1, 4, 3: sum d^2 = 4, rho = 1 - 6*4 / (4*15) = 0.6,
    # and Pearson of the ranks themselves is the same.
    pearson, spearman = correlation([1, 2, 3, 4], [2, 1, 4, 3])
    assert_allclose([pearson, spearman], [0.6, 0.6])


def test_correlation_undefined():
    assert all(math.isnan(v) for v in correlation([1, 2], [2, 1]))
    assert all(math.isnan(v) for v in correlation([1, 1, 1], [1, 2, 3]))


def test_average_improvement_by_hand():
    assert_allclose(average_improvement([0.90, 0.92], [0.91, 0.95]), 2.0)
    assert_allclose(average_improvement([0.5, 0.5], [0.4, 0.5]), -5.0)


def make_records(n=4):
    records = []
    for i in range(1, n + 1):
        records.append(
            {
                "checkpoint": i,
                "epoch": i,
                "train_acc": 0.5 + 0.1 * i,
                "test_acc": 0.45 + 0.1 * i,
                "entropy": 100.0 - 10 * i + (5 if i == 2 else 0),
                "normalized_entropy": (100.0 - 10 * i) / 200,
                "n_neurons": 20,
                "n_dead": 0,
                "class_entropy": {"0": 50.0, "1": 40.0 - i},
                "layer_entropy": {"relu1": 60.0, "relu2": 40.0 - 10 * i},
                "aux_train_acc": 0.5 + 0.1 * i + 0.02,
                "aux_test_acc": 0.45 + 0.1 * i + (0.01 if i != 3 else -0.01),
                "ypred_train_acc": 0.5 + 0.1 * i,
                "ypred_test_acc": 0.45 + 0.1 * i,
                "probe_train_acc": 1.0,
                "probe_test_acc": 0.7,
                "cv_aux_train_acc": 0.5 + 0.1 * i,
                "cv_aux_test_acc": 0.45 + 0.1 * i + 0.005,
                "last2_train_acc": 0.5 + 0.1 * i + 0.02,
                "last2_test_acc": 0.45 + 0.1 * i + 0.01,
                "last_train_acc": 0.5 + 0.1 * i + 0.01,
                "last_test_acc": 0.45 + 0.1 * i,
                "seconds": 1.0,
            }
        )
    return records


def test_summarize_by_hand():
    records = make_records()
    summary = summarize(records)
    # Entropy 90, 85, 70, 60 against 0.6 .. 0.9: deviations from the means
    # (76.25, 0.75) give sum dx*dy = -5.25, sum dx^2 = 568.75, sum dy^2 = 0.05.
    expected = -5.25 / math.sqrt(568.75 * 0.05)
    assert_allclose(summary["table1"]["pearson_train"], expected)
    assert summary["table1"]["spearman_train"] == pytest.approx(-1.0)
    assert "holds" in summary["h1"]
    test = summary["table2"]["test"]
    # +1, +1, -1, +1 points.
    assert_allclose(test["avg_improvement"], 0.5)
    assert test["wins"] == 3
    assert "3 of 4" in summary["h2"] and "does not hold" in summary["h2"]
    assert_allclose(summary["table2"]["train"]["avg_improvement"], 2.0)
    assert_allclose(summary["ablations"]["ypred"]["test"]["avg_improvement"], 0.0)
    assert summary["ablations"]["probe"]["test"]["wins"] == 2
    assert_allclose(summary["table4"]["last"]["train"]["avg_improvement"], 1.0)
    assert_allclose(summary["table4"]["pearson_last2_vs_last"]["train"], 1.0)


def test_h1_verdict_when_entropy_rises():
    records = make_records()
    for r in records:
        r["entropy"] = 10.0 * r["checkpoint"]
    assert "does not hold" in summarize(records)["h1"]


def test_verdicts_of_the_mixed_control():
    # With shuffled labels the paper expects no negative relation, so a
    # falling entropy is a control that fails, and rising entropy one that works.
    records = make_records()
    summary = summarize(records, random_labels=True)
    assert "does not behave as the paper's" in summary["h1"]
    assert "no H2 claim" in summary["h2"]
    for r in records:
        r["entropy"] = 10.0 * r["checkpoint"]
    assert (
        "behaves as the paper's Mixed" in summarize(records, random_labels=True)["h1"]
    )


def test_flatten_record():
    row = flatten_record(make_records(1)[0])
    assert row["class_entropy_1"] == 39.0
    assert row["layer_entropy_relu2"] == 30.0


META = {
    "title": "t",
    "command": "sknap reproduce --checkpoints 4",
    "data": "d",
    "backbone": "b",
    "machine": "m",
    "wall_time_s": 12.0,
    "settings": {"n_checkpoints": 4},
    "blocks": {
        "all": ["relu1", "relu2"],
        "last2": ["relu1", "relu2"],
        "last": ["relu2"],
    },
}


def test_markdown_numbers_come_from_the_records():
    records = make_records()
    text = markdown_report(records, summarize(records), dict(META, figure=None))
    assert "sknap reproduce --checkpoints 4" in text
    # Table 2, checkpoint 3: Tr 80.0, PTr 82.0, Te 75.0, PTe 74.0.
    assert "| 3 | 3 | 80.0 | 82.0 | 75.0 | 74.0 |" in text
    assert "| Avg. Imp. |  |  | +2.00 |  | +0.50 |" in text
    assert "Table 4" in text and "Ablations" in text


def test_write_report(tmp_path):
    records = make_records()
    result = SweepResult(
        records=records, settings={"n_checkpoints": 4}, blocks=META["blocks"]
    )
    paths = write_report(
        result, {k: v for k, v in META.items() if k != "blocks"}, tmp_path
    )
    assert paths["figure"].read_bytes()[:4] == b"\x89PNG"
    payload = json.loads(paths["json"].read_text())
    assert payload["summary"]["table2"]["test"]["wins"] == 3
    assert len(payload["checkpoints"]) == 4
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert "class_entropy_0" in header and "layer_entropy_relu1" in header
    assert "![" in paths["report"].read_text()


def test_nan_becomes_null_in_json(tmp_path):
    records = make_records(2)
    result = SweepResult(records=records, blocks=META["blocks"])
    paths = write_report(
        result, {k: v for k, v in META.items() if k != "blocks"}, tmp_path
    )
    payload = json.loads(paths["json"].read_text())
    assert payload["summary"]["table1"]["pearson_train"] is None
    assert "n/a" in paths["report"].read_text()
    assert np.isfinite(payload["summary"]["table2"]["test"]["avg_improvement"])


def seeded(records, seed, shift):
    """``records`` as the run of ``seed``, every accuracy of the aux moved."""
    out = []
    for r in records:
        r = dict(r, seed=seed)
        r["aux_test_acc"] = r["aux_test_acc"] + shift
        out.append(r)
    return out


def correct_for(records, n_test, aux_extra, ypred_extra=0):
    """Per-record correctness of ``n_test`` images: the backbone right on the
    first half; the aux also on ``aux_extra`` more, Y_pred only on
    ``ypred_extra`` more."""
    out = []
    for _ in records:
        base = np.arange(n_test) < n_test // 2
        aux = np.arange(n_test) < n_test // 2 + aux_extra
        ypred = np.arange(n_test) < n_test // 2 + ypred_extra
        out.append({"backbone": base, "aux": aux, "ypred": ypred, "binned": aux})
    return out


def test_summarize_over_seeds_by_hand():
    base = make_records()
    records = seeded(base, 0, 0.0) + seeded(base, 1, 0.02) + seeded(base, 2, 0.04)
    summary = summarize(records)
    assert summary["seeds"] == [0, 1, 2]
    # Seed s moves the aux's test accuracy by 2 s points at every checkpoint:
    # gains g, g + 2, g + 4, so mean g + 2 and SD 2.
    one = summarize(base)["table2"]["test"]["avg_improvement"]
    test = summary["table2"]["test"]
    assert_allclose([test["avg_improvement"], test["sd"]], [one + 2, 2.0])
    assert test["n"] == 12
    assert [s["table2"]["test"]["n"] for s in summary["per_seed"]] == [4, 4, 4]
    spread = summary["spread"]["table1.pearson_train"]
    assert spread["sd"] == pytest.approx(0.0, abs=1e-12)
    assert "both negative on 3 of 3 seeds" in summary["h1"]
    assert "holds" in summary["h1"]


def test_intervals_against_scipy():
    records = make_records()
    # 100 images; the aux right on 3 more than the backbone at every checkpoint.
    correct = correct_for(records, 100, aux_extra=3, ypred_extra=1)
    summary = summarize(records, test_correct=correct)
    diff = correct[0]["aux"].astype(float) - correct[0]["backbone"]
    ref = stats.bootstrap(
        (diff,), np.mean, method="percentile", random_state=np.random.default_rng(0)
    ).confidence_interval
    assert_allclose(
        summary["table2"]["test"]["interval"], [100 * ref.low, 100 * ref.high]
    )
    over = summary["over_ypred"]["aux"]
    assert_allclose(over["gain"], 2.0)
    # Wilcoxon over the checkpoints, computed by scipy directly.
    te = [r["test_acc"] for r in records]
    aux = [r["aux_test_acc"] for r in records]
    ref = stats.wilcoxon(np.subtract(aux, te), alternative="greater")
    assert_allclose(summary["paired_test"]["aux"]["pvalue"], ref.pvalue)


def test_verdict_when_the_interval_contains_zero():
    records = make_records()
    # One image of 100 more: the interval over images reaches down to 0.
    summary = summarize(records, test_correct=correct_for(records, 100, 1, 1))
    low, high = summary["table2"]["test"]["interval"]
    assert low <= 0 <= high
    assert "the gain is not distinguishable from zero" in summary["h2"]
    assert (
        "add +0.00 [+0.00, +0.00] points over it: not distinguishable"
        in (summary["h2"])
    )


def test_verdict_when_the_interval_excludes_zero():
    records = make_records()
    summary = summarize(records, test_correct=correct_for(records, 400, 40))
    low, _ = summary["table2"]["test"]["interval"]
    assert low > 0
    assert "the gain is above zero" in summary["h2"]
    assert "not distinguishable from zero" not in summary["h2"].split(";")[0]


def test_report_over_seeds_shows_spread_and_intervals(tmp_path):
    base = make_records()
    records = seeded(base, 0, 0.0) + seeded(base, 1, 0.02)
    correct = correct_for(records, 50, 5)
    result = SweepResult(records=records, test_correct=correct, settings={})
    meta = dict(META, blocks={"all": ["relu1"]}, seeds=[0, 1])
    paths = write_report(result, meta, tmp_path)
    text = paths["report"].read_text()
    assert "## Test gains with intervals" in text
    assert "Mean ± SD over 2 seeds" in text
    assert "95 % percentile bootstrap" in text
    saved = np.load(paths["test_correct"])
    assert saved["aux"].shape == (8, 50)
    payload = json.loads(paths["json"].read_text())
    assert len(payload["summary"]["per_seed"]) == 2
    assert {r["seed"] for r in payload["checkpoints"]} == {0, 1}
