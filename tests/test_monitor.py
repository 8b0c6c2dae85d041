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
