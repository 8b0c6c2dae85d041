import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy import stats

from sknap.monitor import ActivationMonitor
from sknap.toy import make_mlp
from sknap.training import train_classifier


@pytest.fixture
def problem():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(120, 6, generator=generator)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return X, y


def test_plain_loop_every_k_steps(problem):
    X, y = problem
    model = make_mlp(6, 2, hidden=(16, 8), random_state=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = ActivationMonitor(
        X, y, X_test=X[:40], y_test=y[:40], every=3, unit="step"
    )
    model.train()
    for _ in range(6):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        optimizer.step()
        monitor.step(model)
    assert [r["step"] for r in monitor.history] == [3, 6]
    assert model.training, "the monitor must restore train mode"
    record = monitor.history[-1]
    assert set(record["layer_entropy"]) == {"relu1", "relu2"}
    assert_allclose(sum(record["layer_entropy"].values()), record["entropy"])
    with torch.no_grad():
        expected = (model(X).argmax(1) == y).float().mean().item()
        expected_test = (model(X[:40]).argmax(1) == y[:40]).float().mean().item()
    assert_allclose(record["train_acc"], expected)
    assert_allclose(record["test_acc"], expected_test)


def test_train_classifier_callback(problem):
    X, y = problem
    model = make_mlp(6, 2, hidden=(16,), random_state=0)
    monitor = ActivationMonitor(X.numpy(), y.numpy(), every=2)
    train_classifier(
        model, X.numpy(), y.numpy(), epochs=6, callback=monitor, device="cpu"
    )
    assert [r["epoch"] for r in monitor.history] == [2, 4, 6]
    assert monitor.series("train_acc").shape == (3,)
    entropy, accuracy = monitor.series("entropy"), monitor.series("train_acc")
    pearson, spearman = monitor.correlation()
    if np.ptp(entropy) > 0 and np.ptp(accuracy) > 0:
        assert_allclose(pearson, stats.pearsonr(entropy, accuracy)[0])
        assert_allclose(spearman, stats.spearmanr(entropy, accuracy)[0])
    else:
        assert np.isnan(pearson) and np.isnan(spearman)


def test_measure_now_with_extra_values(problem):
    X, y = problem
    model = make_mlp(6, 2, hidden=(4,), random_state=0)
    record = ActivationMonitor(X, y).measure(model, loss=0.5)
    assert record["loss"] == 0.5 and record["epoch"] == 0


@pytest.mark.parametrize(
    "kwargs, match", [({"unit": "batch"}, "'unit'"), ({"every": 0}, "'every'")]
)
def test_bad_parameters(problem, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ActivationMonitor(*problem, **kwargs)


def test_skorch_callback(problem):
    skorch = pytest.importorskip("skorch")
    from sknap.monitor import SkorchActivationMonitor

    X, y = problem
    net = skorch.NeuralNetClassifier(
        make_mlp,
        module__n_features=6,
        module__n_classes=2,
        module__hidden=(8,),
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=3,
        lr=0.1,
        train_split=None,
        verbose=0,
        callbacks=[("nap", SkorchActivationMonitor(X.numpy(), y.numpy(), every=1))],
    )
    net.fit(X.numpy(), y.numpy())
    entropies = net.history[:, "nap_entropy"]
    assert len(entropies) == 3
    accuracy = net.history[-1, "nap_acc"]
    assert_allclose(accuracy, np.mean(net.predict(X.numpy()) == y.numpy()))


def _scalars(log_dir):
    """{tag: [(step, value), ...]} read back from the event files in log_dir."""
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    events = event_accumulator.EventAccumulator(str(log_dir))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def test_tensorboard_event_file_holds_the_records(problem, tmp_path):
    pytest.importorskip("tensorboard")
    X, y = problem
    model = make_mlp(6, 2, hidden=(8, 4), random_state=0)
    monitor = ActivationMonitor(
        X, y, X_test=X[:40], y_test=y[:40], every=2, writer=tmp_path
    )
    train_classifier(model, X, y, epochs=4, callback=monitor, device="cpu")
    monitor.measure(model, loss=0.25)
    monitor.close()
    scalars = _scalars(tmp_path)
    assert set(scalars) == {
        "nap/entropy",
        "nap/normalized_entropy",
        "nap/train_acc",
        "nap/test_acc",
        "nap/n_dead",
        "nap/layer_entropy/relu1",
        "nap/layer_entropy/relu2",
        "nap/loss",
    }
    # Steps are the epochs; the values are the records' (float32 in the file).
    assert [step for step, _ in scalars["nap/entropy"]] == [2, 4, 4]
    for key in ("entropy", "normalized_entropy", "train_acc", "test_acc", "n_dead"):
        assert_allclose(
            [value for _, value in scalars[f"nap/{key}"]],
            monitor.series(key),
            rtol=1e-6,
        )
    layer = [r["layer_entropy"]["relu2"] for r in monitor.history]
    assert_allclose(
        [v for _, v in scalars["nap/layer_entropy/relu2"]], layer, rtol=1e-6
    )
    assert scalars["nap/loss"] == [(4, 0.25)]


def test_tensorboard_with_a_writer_of_ones_own(problem, tmp_path):
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    X, y = problem
    model = make_mlp(6, 2, hidden=(8,), random_state=0)
    with tensorboard.SummaryWriter(log_dir=str(tmp_path)) as writer:
        monitor = ActivationMonitor(X, y, unit="step", every=1, writer=writer)
        for _ in range(3):
            monitor.step(model)
        monitor.close()  # not the monitor's writer: left open
        writer.add_scalar("other", 1.0, 0)
    steps = [step for step, _ in _scalars(tmp_path)["nap/train_acc"]]
    assert steps == [1, 2, 3]


def test_tensorboard_missing_says_how_to_install(problem, monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    model = make_mlp(6, 2, hidden=(4,), random_state=0)
    monitor = ActivationMonitor(*problem, writer=tmp_path)
    with pytest.raises(ImportError, match=r"pip install tensorboard"):
        monitor.measure(model)


def _lightning_module(pl):
    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = make_mlp(6, 2, hidden=(8, 4), random_state=0)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Classifier()


@pytest.fixture
def lightning():
    return pytest.importorskip("lightning.pytorch")


def _trainer(pl, tmp_path, callback, logger):
    return pl.Trainer(
        max_epochs=2,
        callbacks=[callback],
        logger=logger,
        default_root_dir=str(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        log_every_n_steps=1,
    )


def test_lightning_callback_logs_every_epoch(problem, lightning, tmp_path):
    from sknap.monitor import LightningActivationMonitor

    X, y = problem
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=30
    )
    callback = LightningActivationMonitor(X, y, X_test=X[:40], y_test=y[:40])
    logger = lightning.loggers.CSVLogger(str(tmp_path), name="run")
    module = _lightning_module(lightning)
    trainer = _trainer(lightning, tmp_path, callback, logger)
    trainer.fit(module, loader)
    history = callback.monitor_.history
    assert [r["epoch"] for r in history] == [1, 2]
    assert [r["step"] for r in history] == [4, 8], "4 batches an epoch"
    assert module.training, "the callback must leave the module in train mode"
    # The last measurement is what the trainer saw, and it is the model's.
    metrics = trainer.callback_metrics
    assert_allclose(float(metrics["nap/entropy"]), history[-1]["entropy"], rtol=1e-6)
    with torch.no_grad():
        module.eval()
        expected = (module(X).argmax(1) == y).float().mean().item()
    assert_allclose(float(metrics["nap/train_acc"]), expected)
    layers = list(history[-1]["layer_entropy"])
    assert layers == ["net.relu1", "net.relu2"]
    assert_allclose(
        [float(metrics[f"nap/layer_entropy/{layer}"]) for layer in layers],
        list(history[-1]["layer_entropy"].values()),
        rtol=1e-6,
    )
    assert "nap/test_acc" in metrics
    # Every logger got the values: the CSV has one row with them per epoch.
    import csv

    with open(logger.log_dir + "/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("nap/entropy")]
    assert_allclose(
        [float(r["nap/entropy"]) for r in rows],
        [r["entropy"] for r in history],
        rtol=1e-6,
    )


def test_lightning_callback_to_tensorboard_every_k_steps(problem, lightning, tmp_path):
    pytest.importorskip("tensorboard")
    from sknap.monitor import LightningActivationMonitor

    X, y = problem
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=30
    )
    callback = LightningActivationMonitor(X, y, every=3, unit="step")
    logger = lightning.loggers.TensorBoardLogger(str(tmp_path), name="run")
    trainer = _trainer(lightning, tmp_path, callback, logger)
    trainer.fit(_lightning_module(lightning), loader)
    # 4 batches an epoch, 2 epochs: steps 3 and 6.
    history = callback.monitor_.history
    assert [r["step"] for r in history] == [3, 6]
    assert [r["epoch"] for r in history] == [0, 1]
    scalars = _scalars(logger.log_dir)
    assert_allclose(
        [v for _, v in scalars["nap/entropy"]],
        [r["entropy"] for r in history],
        rtol=1e-6,
    )


def test_lightning_callback_without_lightning(monkeypatch):
    import sknap._lightning
    import sknap.monitor

    monkeypatch.setattr(sknap._lightning, "LightningActivationMonitor", None)
    with pytest.raises(AttributeError, match="pip install lightning"):
        sknap.monitor.LightningActivationMonitor  # noqa: B018


def test_skorch_callback_writes_to_tensorboard(problem, tmp_path):
    skorch = pytest.importorskip("skorch")
    pytest.importorskip("tensorboard")
    from sknap.monitor import SkorchActivationMonitor

    X, y = problem
    net = skorch.NeuralNetClassifier(
        make_mlp(6, 2, hidden=(8,), random_state=0),
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=2,
        lr=0.1,
        train_split=None,
        verbose=0,
        callbacks=[SkorchActivationMonitor(X.numpy(), y.numpy(), writer=tmp_path)],
    )
    net.fit(X.numpy(), y.numpy())
    net.callbacks[0].monitor_.close()
    scalars = _scalars(tmp_path)
    assert_allclose(
        [v for _, v in scalars["nap/entropy"]], net.history[:, "nap_entropy"], rtol=1e-6
    )
