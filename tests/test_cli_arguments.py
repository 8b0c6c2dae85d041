"""Bad arguments of ``sknap reproduce`` and ``sknap demo``: exit 2 before any work.

Every case runs in ``tmp_path`` with the training entry points replaced by a
function that fails the test, so a case passes only when the command stops
with argparse's ``sknap <command>: error: ...`` and status 2 before a folder
is made or a network trained.
"""

import numpy as np
import pytest
import torch
from test_datasets import make_idx_folder, write_idx

import sknap.paper.cli
import sknap.paper.experiments
import sknap.toy
from sknap.paper.cli import main


@pytest.fixture
def no_training(monkeypatch, tmp_path):
    """Work in ``tmp_path`` and fail the test if any training starts."""

    def training_started(*args, **kwargs):
        raise AssertionError("training started despite a bad argument")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sknap.paper.experiments, "run_sweep", training_started)
    monkeypatch.setattr(sknap.toy, "digits_mlp", training_started)
    return tmp_path


def run_bad(argv, capsys):
    """Run ``sknap *argv``, assert status 2 and return its stderr."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def assert_nothing_written(folder):
    assert not (folder / "run").exists()
    assert not (folder / "sknap-results").exists()


# (option, value, a part of the message that says what is allowed)
BAD_NUMBERS = [
    ("--seeds", "0", "an int in the range [1, inf)"),
    ("--checkpoints", "0", "an int in the range [1, inf)"),
    ("--checkpoints", "-3", "an int in the range [1, inf)"),
    ("--checkpoints", "2.5", "an int in the range [1, inf)"),
    ("--checkpoints", "ten", "an int in the range [1, inf)"),
    ("--epochs-per-checkpoint", "0", "an int in the range [1, inf)"),
    ("--threads", "0", "an int in the range [1, inf)"),
    ("--threads", "-1", "an int in the range [1, inf)"),
    ("--batch-size", "0", "an int in the range [1, inf)"),
    ("--batch-size", "-64", "an int in the range [1, inf)"),
    ("--aux-batch-size", "0", "an int in the range [1, inf)"),
    ("--aux-epochs", "0", "an int in the range [1, inf)"),
    ("--cv", "1", "an int in the range [2, inf)"),
    ("--cv", "0", "an int in the range [2, inf)"),
    ("--n-bins", "1", "an int in the range [2, inf)"),
    ("--probe-max-samples", "0", "an int in the range [1, inf)"),
    ("--channels", "0", "an int in the range [1, inf)"),
    ("--image-size", "0", "an int in the range [1, inf)"),
    ("--train-size", "0", "an int in the range [1, inf)"),
    ("--test-size", "-5", "an int in the range [1, inf)"),
    ("--seed", "-1", "an int in the range [0, 4294967295]"),
    ("--seed", "4294967296", "an int in the range [0, 4294967295]"),
    ("--lr", "0", "a float in the range (0, inf)"),
    ("--lr", "-0.001", "a float in the range (0, inf)"),
    ("--lr", "nan", "a float in the range (0, inf)"),
    ("--lr", "inf", "a float in the range (0, inf)"),
    ("--lr", "fast", "a float in the range (0, inf)"),
    ("--test-fraction", "0", "a float in the range (0, 1)"),
    ("--test-fraction", "1", "a float in the range (0, 1)"),
    ("--test-fraction", "1.5", "a float in the range (0, 1)"),
    ("--test-fraction", "nan", "a float in the range (0, 1)"),
]


@pytest.mark.parametrize(("option", "value", "allowed"), BAD_NUMBERS)
def test_reproduce_rejects_bad_numbers(no_training, capsys, option, value, allowed):
    argv = ["reproduce", option, value, "--output", str(no_training / "run")]
    err = run_bad(argv, capsys)
    assert f"sknap reproduce: error: argument {option}: must be {allowed}" in err
    assert f"Got {value!r}" in err
    assert_nothing_written(no_training)


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--epochs", "0", "an int in the range [1, inf)"),
        ("--epochs", "-1", "an int in the range [1, inf)"),
        ("--n-bins", "1", "an int in the range [2, inf)"),
        ("--seed", "-1", "an int in the range [0, 4294967295]"),
        ("--seed", "x", "an int in the range [0, 4294967295]"),
    ],
)
def test_demo_rejects_bad_numbers(no_training, capsys, option, value, allowed):
    err = run_bad(["demo", option, value], capsys)
    assert f"sknap demo: error: argument {option}: must be {allowed}" in err
    assert f"Got {value!r}" in err


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize(
    ("device", "machine", "message"),
    [
        ("cuda", "no_cuda", "CUDA is not available on this machine"),
        ("cuda:0", "no_cuda", "CUDA is not available on this machine"),
        ("cuda:7", "one_gpu", "this machine has 1 CUDA device (cuda:0)"),
        ("cuda:7", "no_cuda", "CUDA is not available on this machine"),
        ("tpu", "no_cuda", "must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"),
        ("meta", "no_cuda", "must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"),
        (
            "gpu please",
            "no_cuda",
            "must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'",
        ),
        ("", "no_cuda", "must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"),
    ],
)
@pytest.mark.parametrize("command", ["reproduce", "demo"])
def test_unusable_device_is_rejected(
    no_training, capsys, request, command, device, machine, message
):
    request.getfixturevalue(machine)
    argv = [command, "--device", device]
    if command == "reproduce":
        argv += ["--output", str(no_training / "run")]
    err = run_bad(argv, capsys)
    assert f"sknap {command}: error: argument --device: " in err
    assert message in err
    assert f"Got {device!r}" in err
    assert_nothing_written(no_training)


def test_output_that_is_a_file(no_training, capsys):
    (no_training / "run").write_text("keep me")
    err = run_bad(["reproduce", "--output", str(no_training / "run")], capsys)
    assert "sknap reproduce: error: argument --output: " in err
    assert "is a file, not a folder" in err
    assert (no_training / "run").read_text() == "keep me"


def test_output_below_a_file(no_training, capsys):
    (no_training / "file").write_text("keep me")
    output = no_training / "file" / "run"
    err = run_bad(["reproduce", "--output", str(output)], capsys)
    assert "sknap reproduce: error: argument --output: " in err
    assert f"{no_training / 'file'} is a file, not a folder" in err
    assert (no_training / "file").read_text() == "keep me"


def test_default_output_below_a_file(no_training, capsys):
    # Without --output the folder is sknap-results/<dataset>-<backbone>.
    (no_training / "sknap-results").write_text("keep me")
    err = run_bad(["reproduce", "--quiet"], capsys)
    assert "sknap reproduce: error: argument --output: " in err
    assert "sknap-results is a file, not a folder" in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--train-size", "5", "argument --train-size: train_size_limit=5 is smaller"),
        ("--test-size", "9", "argument --test-size: test_size_limit=9 is smaller"),
        (
            "--probe-max-samples",
            "3",
            "argument --probe-max-samples: must be at least the number of classes",
        ),
        ("--image-size", "4", "argument --image-size: image_size=4 is smaller"),
        ("--backbone", "vgg16", "needs at least 32x32 inputs"),
    ],
)
def test_options_that_do_not_fit_the_data(no_training, capsys, option, value, message):
    if value == "vgg16":
        pytest.importorskip("torchvision")
    argv = ["reproduce", option, value, "--output", str(no_training / "run")]
    err = run_bad(argv, capsys)
    assert "sknap reproduce: error: " in err
    assert message in err
    assert_nothing_written(no_training)


def test_cv_larger_than_the_classes(no_training, capsys):
    argv = ["reproduce", "--train-size", "20", "--cv", "5"]
    err = run_bad(argv + ["--output", str(no_training / "run")], capsys)
    assert "sknap reproduce: error: argument --cv: 5 folds" in err
    assert "--no-ablations" in err
    assert_nothing_written(no_training)


def test_missing_data_root_says_how_to_get_the_data(no_training, capsys):
    argv = ["reproduce", "--dataset", "mnist", "--data-root", "nowhere"]
    err = run_bad(argv + ["--output", str(no_training / "run")], capsys)
    assert "sknap reproduce: error: Data set 'mnist' was not found under nowhere" in err
    assert "MNIST/raw" in err and "sknap downloads nothing" in err
    assert_nothing_written(no_training)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("magic", "is not an IDX file"),
        ("truncated", "is truncated"),
        ("float labels", "holds float32 values, not integer class labels"),
        ("bad gzip", "is not a valid gzip file"),
    ],
)
def test_broken_idx_files_end_in_a_clear_error(no_training, capsys, damage, message):
    folder = no_training / "data"
    make_idx_folder(folder, gz=damage == "bad gzip")
    labels = folder / "train-labels-idx1-ubyte"
    if damage == "magic":
        labels.write_bytes(b"\x01\x00" + labels.read_bytes()[2:])
    elif damage == "truncated":
        labels.write_bytes(labels.read_bytes()[:-4])
    elif damage == "float labels":
        write_idx(labels, np.arange(30) % 3, code=0x0D)
    else:
        labels = labels.with_name(labels.name + ".gz")
        labels.write_bytes(labels.read_bytes()[:20])
    argv = ["reproduce", "--dataset", "idx", "--data-root", str(folder)]
    err = run_bad(argv + ["--output", str(no_training / "run")], capsys)
    assert "sknap reproduce: error: " in err
    assert str(labels) in err
    assert message in err
    assert "Traceback" not in err
    assert_nothing_written(no_training)


def test_output_in_a_folder_that_is_not_writable(no_training, capsys, monkeypatch):
    # As root every folder is writable, so the permission check is simulated.
    monkeypatch.setattr(sknap.paper.cli.os, "access", lambda path, mode: False)
    err = run_bad(["reproduce", "--output", str(no_training / "run")], capsys)
    assert "sknap reproduce: error: argument --output: " in err
    assert f"{no_training} is not writable by this user" in err
    assert_nothing_written(no_training)
