import json
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

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
