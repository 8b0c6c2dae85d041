"""Tests of the shared column layout (sknap/_layout.py, docs/definitions.md)."""

import warnings

import numpy as np
import pytest

from sknap import LayoutWarning
from sknap._layout import (
    PROBA_PREFIX,
    ColumnLayout,
    check_probability_block,
    layer_of,
    resolve_n_outputs,
)


class _Step:
    """Stands in for an estimator: the layout helpers read only these."""

    def __init__(self, n_outputs="auto", feature_names_in_=None):
        self.n_outputs = n_outputs
        if feature_names_in_ is not None:
            self.feature_names_in_ = np.asarray(feature_names_in_, dtype=object)


def test_prefix():
    assert PROBA_PREFIX == "proba_"


@pytest.mark.parametrize("n_outputs, expected", [(0, 0), (2, 2), (np.int64(3), 3)])
def test_int_n_outputs_wins(n_outputs, expected):
    # An int is used as is, even when y or names say otherwise.
    step = _Step(n_outputs, ["a__0", "a__1", "a__2", "proba_0", "proba_1"])
    assert resolve_n_outputs(step, 5, y=[0, 1, 2, 3]) == expected


def test_names_count_the_trailing_proba_columns():
    # Three trailing proba_ columns; a proba_-looking name before a neuron
    # column does not count, and the names come before y.
    names = ["proba_x__0", "fc__0", "proba_a", "proba_b", "proba_c"]
    assert resolve_n_outputs(_Step("auto", names), 5, y=[0, 1]) == 3


def test_names_without_proba_fall_back_to_y():
    # No proba_ name: the number of classes in y, here {0, 1, 2} -> 3.
    step = _Step("auto", ["a__0", "a__1", "a__2", "a__3", "b"])
    assert resolve_n_outputs(step, 5, y=[2, 0, 1, 1, 0]) == 3


def test_y_gives_the_number_of_classes():
    assert resolve_n_outputs(_Step(), 4, y=np.array(["x", "y", "x"])) == 2


def test_nothing_to_go_by_is_an_error():
    with pytest.raises(ValueError, match=r"_Step.fit got no y.*_Step cannot tell"):
        resolve_n_outputs(_Step(), 4)


@pytest.mark.parametrize("n_outputs, n_features", [(3, 3), (4, 3)])
def test_no_activation_left_is_an_error(n_outputs, n_features):
    with pytest.raises(ValueError, match=rf"last {n_outputs} columns.*Set n_outputs"):
        resolve_n_outputs(_Step(n_outputs), n_features)


def test_empty_input_with_zero_classes_is_allowed():
    assert resolve_n_outputs(_Step(0), 0) == 0


@pytest.mark.parametrize(
    "proba",
    [
        [[0.5, 0.5], [1.0, 0.0]],  # exact
        [[0.5, 0.5005], [0.9995, 0.0]],  # within 1e-3 of 1
        np.zeros((0, 3)),  # no sample
        np.zeros((4, 0)),  # no probability column (n_outputs=0)
    ],
)
def test_softmax_block_does_not_warn(proba):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_probability_block(_Step(), np.asarray(proba, dtype=np.float64))


@pytest.mark.parametrize(
    "proba, match",
    [
        # row sums 1.0 and 1.1
        ([[0.5, 0.5], [0.5, 0.6]], r"last 2 columns.*\[1, 1.1\] instead of 1"),
        # row sums 0.5 and 3 (raw activations taken as probabilities)
        ([[0.25, 0.25], [1.0, 2.0]], r"\[0.5, 3\]"),
        # sums to 1 but with a negative entry: not a softmax
        ([[1.5, -0.5]], r"\[1, 1\]"),
    ],
)
def test_non_probability_block_warns(proba, match):
    with pytest.warns(LayoutWarning, match=match):
        check_probability_block(_Step(), np.asarray(proba, dtype=np.float64))


@pytest.mark.parametrize(
    "name, layer",
    [
        ("fc1__7", "fc1"),
        ("layer1.0.relu#2__3", "layer1.0.relu#2"),
        ("conv1__3_1_2", "conv1"),  # reduce="flatten": unit is channel_row_col
        ("a__b__4", "a__b"),  # only the last separator splits
        ("plain", "plain"),
    ],
)
def test_layer_of(name, layer):
    assert layer_of(name) == layer


def _layout():
    """Blocks a (2 neurons) and b (3), then 2 outputs labelled x and y."""
    names = ("a__0", "a__1", "b__0", "b__1", "b__2", "proba_x", "proba_y")
    return ColumnLayout(
        blocks=("a", "b"),
        calls=(("a", 0), ("b", 0)),
        widths=(2, 3),
        shapes=((2,), (3,)),
        classes=("x", "y"),
        feature_names=names,
    )


def test_a_layout_decides_over_names_and_y():
    step = _Step("auto", ["a__0", "a__1", "a__2", "a__3", "a__4", "b", "c"])
    assert resolve_n_outputs(step, 7, y=[0, 1, 2], layout=_layout()) == 2


def test_select_neurons_keeps_the_probability_block():
    kept = _layout().select_neurons([1, 3, 4])
    assert kept.widths == (1, 2)
    assert kept.feature_names == ("a__1", "b__1", "b__2", "proba_x", "proba_y")
    assert (kept.n_neurons, kept.n_outputs) == (3, 2)
    assert kept.blocks == ("a", "b") and kept.classes == ("x", "y")
    assert _layout().select_neurons([2, 3, 4]).widths == (0, 3)
