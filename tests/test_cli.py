import csv
import json
import subprocess
import sys

import pytest
from numpy.testing import assert_allclose
from scipy import stats
from test_datasets import make_idx_folder

from sknap.paper.cli import main

FAST = ["--aux-epochs", "2", "--cv", "2", "--probe-max-samples", "100", "--quiet"]


def test_reproduce_on_digits(tmp_path):
    out = tmp_path / "run"
    argv = ["reproduce", "--train-size", "200", "--test-size", "100"]
    argv += ["--checkpoints", "3", "--output", str(out), *FAST]
    assert main(argv) == 0
    report = (out / "report.md").read_text()
    assert "sknap reproduce --train-size 200" in report
    for heading in ("Table 1", "Table 2/3", "Table 4", "Ablations", "Figure 2"):
        assert heading in report
    assert (out / "figure2.png").exists()
    # The report's correlations are those of the measured series.
    with open(out / "checkpoints.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    entropy = [float(r["entropy"]) for r in rows]
    train = [float(r["train_acc"]) for r in rows]
    summary = json.loads((out / "results.json").read_text())["summary"]
    pearson = stats.pearsonr(entropy, train)[0]
    spearman = stats.spearmanr(entropy, train)[0]
    assert_allclose(summary["table1"]["pearson_train"], pearson)
    assert_allclose(summary["table1"]["spearman_train"], spearman)
    assert f"{pearson:+.2f}" in report


def test_reproduce_on_a_torchvision_folder(tmp_path):
    make_idx_folder(tmp_path / "data" / "MNIST" / "raw", n_train=60, n_test=30)
    out = tmp_path / "run"
    argv = ["reproduce", "--dataset", "mnist", "--data-root", str(tmp_path / "data")]
    argv += ["--backbone", "cnn", "--checkpoints", "2", "--random-labels"]
    argv += ["--output", str(out), "--no-ablations", *FAST]
    assert main(argv) == 0
    payload = json.loads((out / "results.json").read_text())
    assert len(payload["checkpoints"]) == 2
    assert "Mixed" in payload["meta"]["title"]
    assert "ypred_test_acc" not in payload["checkpoints"][0]


def test_missing_data_set_says_how_to_get_it(tmp_path, capsys):
    argv = ["reproduce", "--dataset", "fashion-mnist"]
    argv += ["--data-root", str(tmp_path / "nowhere"), "--quiet"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "sknap reproduce: error: Data set 'fashion-mnist' was not found" in err
    assert "apt-get install dataset-fashion-mnist" in err
    assert "FashionMNIST/raw" in err


def test_bad_choice_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "--backbone", "alexnet"])
    assert "invalid choice" in capsys.readouterr().err


def test_python_m_sknap_help():
    done = subprocess.run(
        [sys.executable, "-m", "sknap", "reproduce", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--dataset", "--backbone", "--checkpoints", "--random-labels"):
        assert option in done.stdout


def test_demo_shows_each_model_and_the_picked_r(capsys):
    assert main(["demo", "--epochs", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "2 epochs" in out and "under-trained backbone, on purpose" in out
    lines = {
        line.strip().rsplit(maxsplit=1)[0]: line
        for line in out.splitlines()
        if line.strip()
    }
    for label in (
        "backbone",
        "auxiliary on Y_pred only",
        "auxiliary on the paper's features",
    ):
        assert label in lines, out
        assert 0.0 <= float(lines[label].split()[-1]) <= 1.0
    # The R of the binned features is the one the grid search picked.
    picked = [line for line in out.splitlines() if line.endswith("<- picked")]
    assert len(picked) == 1
    r = picked[0].split()[0]  # "R=<n>"
    assert f"auxiliary on binned features ({r})" in out
    grid = [line.split()[0] for line in out.splitlines() if line.strip()[:2] == "R="]
    assert grid == ["R=2", "R=5", "R=10", "R=20"]
    assert "activation entropy E" in out and "bits (R=10)" in out


def test_reproduce_with_three_seeds(tmp_path):
    out = tmp_path / "run"
    argv = ["reproduce", "--train-size", "100", "--test-size", "50", "--seeds", "3"]
    argv += ["--checkpoints", "2", "--aux-epochs", "1", "--cv", "2"]
    argv += ["--probe-max-samples", "50", "--no-layer-comparison", "--quiet"]
    argv += ["--output", str(out)]
    assert main(argv) == 0
    payload = json.loads((out / "results.json").read_text())
    seeds = [r["seed"] for r in payload["checkpoints"]]
    assert seeds == [0, 0, 1, 1, 2, 2]
    summary = payload["summary"]
    assert summary["seeds"] == [0, 1, 2] and len(summary["per_seed"]) == 3
    # The mean gain is the mean of the seeds' own gains, and its interval
    # holds it.
    per_seed = [s["table2"]["test"]["avg_improvement"] for s in summary["per_seed"]]
    test = summary["table2"]["test"]
    assert_allclose(test["avg_improvement"], sum(per_seed) / 3)
    low, high = test["interval"]
    assert low <= test["avg_improvement"] <= high
    assert summary["paired_test"]["aux"]["n"] == 6
    report = (out / "report.md").read_text()
    assert "over 3 seeds" in report and "## Test gains with intervals" in report
    assert "binned P" in report
