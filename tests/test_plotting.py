import subprocess
import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

matplotlib = pytest.importorskip("matplotlib")
plt = pytest.importorskip("matplotlib.pyplot")

from sknap import (  # noqa: E402
    ActivationEntropy,
    ActivationExtractor,
    ActivationProbabilityFeatures,
    DeadNeuronWarning,
)
from sknap.monitor import ActivationMonitor  # noqa: E402
from sknap.paper.report import plot_figure2  # noqa: E402
from sknap.plotting import (  # noqa: E402
    plot_activation_probabilities,
    plot_entropy_accuracy,
    plot_layer_entropy,
    plot_neuron_entropy,
)


@pytest.fixture(autouse=True)
def _backend_untouched(monkeypatch):
    """No plot may switch the backend: with the backend resolved (as pyplot
    does on first use), matplotlib.use and pyplot.switch_backend raise, and
    the backend is the same after each test."""
    before = matplotlib.get_backend()

    def refuse(*args, **kwargs):
        raise AssertionError("a plot called matplotlib.use")

    monkeypatch.setattr(matplotlib, "use", refuse)
    monkeypatch.setattr(plt, "switch_backend", refuse)
    yield
    plt.close("all")
    assert matplotlib.get_backend() == before


def _records(entropy, train, test, seed=None, x="checkpoint"):
    out = []
    for k, (e, a, b) in enumerate(zip(entropy, train, test, strict=True), 1):
        record = {x: k, "entropy": e, "train_acc": a, "test_acc": b}
        if seed is not None:
            record["seed"] = seed
        out.append(record)
    return out


def test_importing_sknap_does_not_import_matplotlib():
    code = (
        "import sys, sknap, sknap.plotting, sknap.monitor\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entropy_accuracy_lines_are_the_records():
    records = _records([80.0, 75.0, 72.0, 70.0], [0.6, 0.7, 0.8, 0.85], [0.5] * 4)
    fig, given = plt.subplots()
    ax = plot_entropy_accuracy(records, ax=given)
    assert ax is given
    entropy, train, test = ax.get_lines()
    assert_allclose(entropy.get_xdata(), [1, 2, 3, 4])
    # Min-max by hand: (E - 70) / (80 - 70).
    assert_allclose(entropy.get_ydata(), [1.0, 0.5, 0.2, 0.0])
    assert_allclose(train.get_ydata(), [0.6, 0.7, 0.8, 0.85])
    assert_allclose(test.get_ydata(), [0.5] * 4)
    assert ax.get_xlabel() == "checkpoint"
    assert not ax.collections, "one seed draws no band"


def test_entropy_accuracy_spread_over_seeds():
    # Seed 0: entropy 10, 20, 30 -> 0, 0.5, 1; seed 1: 5, 5, 15 -> 0, 0, 1.
    records = _records([10, 20, 30], [0.2, 0.4, 0.6], [0.1, 0.2, 0.3], seed=0)
    records += _records([5, 5, 15], [0.4, 0.6, 0.8], [0.1, 0.2, 0.5], seed=1)
    ax = plot_entropy_accuracy(records)
    entropy, train, test = ax.get_lines()
    assert_allclose(entropy.get_ydata(), [0.0, 0.25, 1.0])
    assert_allclose(train.get_ydata(), [0.3, 0.5, 0.7])
    assert_allclose(test.get_ydata(), [0.1, 0.2, 0.4])
    assert len(ax.collections) == 3
    # The band of the train accuracy spans the two seeds at every checkpoint.
    y = ax.collections[1].get_paths()[0].vertices[:, 1]
    assert_allclose([y.min(), y.max()], [0.2, 0.8])
    assert set(np.round(y, 6)) == {0.2, 0.4, 0.6, 0.8}
    assert "2 seeds" in ax.get_title()


def test_entropy_accuracy_from_a_monitor(make_data):
    import torch

    from sknap.toy import make_mlp

    X, y = make_data(60, 4, 2)
    model = make_mlp(4, 2, hidden=(8,), random_state=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = ActivationMonitor(X, y)
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(torch.from_numpy(X)), torch.from_numpy(y)
        )
        loss.backward()
        optimizer.step()
        monitor.epoch_end(model)
    ax = plot_entropy_accuracy(monitor)
    assert ax.get_xlabel() == "epoch"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["entropy (min-max normalized)", "train_acc"]
    assert_allclose(ax.get_lines()[1].get_ydata(), monitor.series("train_acc"))


@pytest.mark.parametrize(
    ("records", "kwargs", "match"),
    [
        ([], {}, "non-empty list of dicts"),
        ([{"entropy": 1.0}], {}, "pass the key of the horizontal axis as x="),
        ([{"epoch": 1, "acc": 0.5}], {}, r"no \['entropy'\]"),
        (
            [
                {"epoch": 1, "entropy": 1.0, "train_acc": 0.5},
                {"epoch": 2, "entropy": 2.0},
            ],
            {},
            r"no \['train_acc'\]",
        ),
    ],
)
def test_entropy_accuracy_errors(records, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_entropy_accuracy(records, **kwargs)


@pytest.fixture
def fitted(make_data):
    from sknap.toy import make_mlp

    X, y = make_data(90, 6, 3)
    model = make_mlp(6, 3, hidden=(8, 4), random_state=0)
    extractor = ActivationExtractor(model, device="cpu").fit(X)
    Z = extractor.transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeadNeuronWarning)
        entropy = ActivationEntropy(n_bins=4).fit(Z, y)
        probabilities = ActivationProbabilityFeatures().fit(Z, y)
    return extractor, entropy, probabilities


def test_layer_entropy_bars(fitted):
    extractor, entropy, _ = fitted
    names = extractor.get_feature_names_out()
    ax = plot_layer_entropy(entropy, feature_names=names)
    expected = entropy.layer_entropy(names)
    assert_allclose([bar.get_height() for bar in ax.patches], list(expected.values()))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu1", "relu2"]
    # Per layer, the bars sum to the total entropy.
    assert_allclose(sum(bar.get_height() for bar in ax.patches), entropy.entropy_)


def test_layer_entropy_errors():
    with pytest.raises(ValueError, match="'entropy' parameter of plot_layer_entropy"):
        plot_layer_entropy({})


def test_neuron_entropy_histogram(fitted):
    _, entropy, _ = fitted
    entropy.neuron_entropy_[:2] = 0.0
    entropy.dead_neurons_ = entropy.dead_neurons_.copy()
    entropy.dead_neurons_[:2] = True
    entropy.n_dead_neurons_ = int(entropy.dead_neurons_.sum())
    bins = np.linspace(0, 2, 9)
    ax = plot_neuron_entropy(entropy, bins=bins)
    alive = entropy.neuron_entropy_[~entropy.dead_neurons_]
    counts, _ = np.histogram(alive, bins=bins)
    assert_allclose([bar.get_height() for bar in ax.patches], counts)
    assert_allclose([bar.get_x() for bar in ax.patches], bins[:-1])
    assert f"{entropy.n_dead_neurons_} dead neurons left out" in ax.get_title()
    # The dashed line marks log2(4) = 2 bits, the largest entropy of a neuron.
    assert_allclose(ax.get_lines()[0].get_xdata(), [2.0, 2.0])

    ax = plot_neuron_entropy(entropy, bins=bins, include_dead=True)
    counts, _ = np.histogram(entropy.neuron_entropy_, bins=bins)
    assert_allclose([bar.get_height() for bar in ax.patches], counts)


def test_neuron_entropy_errors():
    with pytest.raises(ValueError, match="1-D array of per-neuron entropies"):
        plot_neuron_entropy(np.zeros((2, 3)))


def test_activation_probability_image(fitted):
    extractor, _, probabilities = fitted
    names = extractor.get_feature_names_out()
    ax = plot_activation_probabilities(probabilities, feature_names=names)
    image = ax.images[0]
    assert_allclose(
        np.asarray(image.get_array()), probabilities.activation_probability_
    )
    assert image.get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu1", "relu2"]
    # relu1 has 8 neurons: the white line between the layers is at 7.5.
    assert_allclose(ax.get_lines()[0].get_xdata(), [7.5, 7.5])


@pytest.mark.parametrize(
    ("P", "kwargs", "match"),
    [
        (np.zeros(3), {}, "2-D array of shape"),
        (np.zeros((2, 3)), {"classes": ["a"]}, "1 labels but P has 2 rows"),
        (np.zeros((2, 3)), {"feature_names": ["relu1__0"]}, "1 names but P has 3"),
    ],
)
def test_activation_probability_errors(P, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_activation_probabilities(P, **kwargs)


def test_plot_figure2_leaves_pyplot_alone(tmp_path):
    records = _records([3.0, 2.0, 1.0], [0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    figures = plt.get_fignums()
    path = plot_figure2(records, tmp_path / "figure2.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert plt.get_fignums() == figures, "plot_figure2 left a pyplot figure open"
