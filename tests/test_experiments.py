import numpy as np
import pytest
from numpy.testing import assert_allclose

from sknap.paper.backbones import make_backbone
from sknap.paper.datasets import load_dataset
from sknap.paper.experiments import (
    SweepSettings,
    auto_aux_batch_size,
    evaluate_checkpoint,
    run_sweep,
    select_blocks,
)

FAST = dict(aux_epochs=2, probe_max_iter=50, cv=2)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", train_size_limit=200, test_size_limit=100)


def sweep(data, backbone="fcnn", **settings):
    model = make_backbone(backbone, data.input_shape, data.n_classes, random_state=0)
    options = {**FAST, **settings}
    return run_sweep(model, data, SweepSettings(**options), progress=False)


def test_records_of_a_tiny_sweep(data):
    result = sweep(data, n_checkpoints=2, epochs_per_checkpoint=2)
    assert [r["checkpoint"] for r in result.records] == [1, 2]
    assert [r["epoch"] for r in result.records] == [2, 4]
    record = result.records[-1]
    for key in (
        "train_acc",
        "test_acc",
        "aux_train_acc",
        "aux_test_acc",
        "ypred_test_acc",
        "binned_test_acc",
        "probe_test_acc",
        "cv_aux_test_acc",
        "last2_test_acc",
        "last_test_acc",
    ):
        assert 0.0 <= record[key] <= 1.0, key
    assert record["n_neurons"] == 1024
    assert 0 < record["normalized_entropy"] < 1
    assert_allclose(sum(record["layer_entropy"].values()), record["entropy"])
    assert sorted(record["class_entropy"]) == [str(c) for c in range(10)]
    assert result.blocks == {
        "all": ["relu1", "relu2"],
        "last2": ["relu1", "relu2"],
        "last": ["relu2"],
    }
    assert result.settings["aux_batch_size"] == 16
    assert result.wall_time_s > 0
    # Which test images each model gets right, kept beside the records: their
    # means are the records' test accuracies.
    assert len(result.test_correct) == 2 and "test_correct" not in record
    correct = result.test_correct[-1]
    assert correct["backbone"].shape == (100,)
    for name in ("backbone", "aux", "ypred", "binned", "probe", "cv_aux", "last"):
        key = "test_acc" if name == "backbone" else f"{name}_test_acc"
        assert_allclose(correct[name].mean(), record[key], err_msg=name)
    assert record["seed"] == 0


def test_last_two_layers_of_the_fcnn_are_all_layers(data):
    record = sweep(data, n_checkpoints=1, ablations=False).records[0]
    assert record["last2_test_acc"] == record["aux_test_acc"]
    assert "ypred_test_acc" not in record


def test_measurements_do_not_change_the_training(data):
    # Evaluation must draw nothing from the training loop's random streams.
    a = sweep(data, n_checkpoints=2, ablations=True, compare_layers=True)
    b = sweep(data, n_checkpoints=2, ablations=False, compare_layers=False)
    for key in ("train_acc", "test_acc", "entropy"):
        assert [r[key] for r in a.records] == [r[key] for r in b.records]


def test_layers_choice_changes_the_neurons(data):
    record = sweep(
        data, n_checkpoints=1, layers="last", ablations=False, compare_layers=False
    ).records[0]
    assert record["n_neurons"] == 512
    assert list(record["layer_entropy"]) == ["relu2"]


def test_backbone_accuracy_matches_a_forward_pass(data):
    from sknap.training import predict_proba

    model = make_backbone("cnn", data.input_shape, data.n_classes)
    settings = SweepSettings(ablations=False, compare_layers=False, **FAST)
    record, blocks = evaluate_checkpoint(model, data, settings)
    expected = np.mean(predict_proba(model, data.X_test).argmax(1) == data.y_test)
    assert_allclose(record["test_acc"], expected)
    assert blocks["last"] == ["relu3"]


def test_on_checkpoint_sees_every_record(data):
    seen = []
    model = make_backbone("fcnn", data.input_shape, data.n_classes)
    settings = SweepSettings(n_checkpoints=2, ablations=False, **FAST)
    run_sweep(model, data, settings, progress=False, on_checkpoint=seen.append)
    assert [r["checkpoint"] for r in seen] == [1, 2]


def test_select_blocks():
    names = ["a", "b", "c"]
    assert select_blocks(names, "all") == names
    assert select_blocks(names, "last") == ["c"]
    with pytest.raises(ValueError, match="'layers' setting must be one of"):
        select_blocks(names, "first")


def test_bad_settings(data):
    with pytest.raises(ValueError, match="must be positive"):
        sweep(data, n_checkpoints=0)


@pytest.mark.parametrize(
    "n, expected", [(100, 16), (4000, 16), (4001, 17), (60000, 240)]
)
def test_auto_aux_batch_size(n, expected):
    assert auto_aux_batch_size(n) == expected


def test_seeds_change_the_backbone_not_the_data(data):
    from sknap.paper.seeds import run_seeds

    def make_model(seed):
        return make_backbone(
            "fcnn", data.input_shape, data.n_classes, random_state=seed
        )

    settings = SweepSettings(
        n_checkpoints=1, ablations=False, compare_layers=False, **FAST
    )
    result = run_seeds(make_model, data, settings, [3, 4], progress=False)
    assert [r["seed"] for r in result.records] == [3, 4]
    assert result.settings["seeds"] == [3, 4]
    # Seed 3 alone gives the same record as within the pair.
    alone = run_sweep(
        make_model(3),
        data,
        SweepSettings(
            n_checkpoints=1,
            ablations=False,
            compare_layers=False,
            random_state=3,
            **FAST,
        ),
        progress=False,
    ).records[0]
    assert_allclose(alone["test_acc"], result.records[0]["test_acc"])
    assert_allclose(alone["entropy"], result.records[0]["entropy"])
    assert result.records[0]["entropy"] != result.records[1]["entropy"]
