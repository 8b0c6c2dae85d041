"""One test per row of the error table in docs/errors.md.

Each bad input must end in a ValueError or TypeError whose message says what
to do, or in a warning where the result is still sound; never a bare error
from deep inside torch or numpy, never a silent NaN. The tests are in the
order of the table.
"""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from sknap import (
    ActivationEntropy,
    ActivationExtractor,
    ActivationMemoryError,
    ActivationProbabilityFeatures,
    AuxiliaryClassifier,
    DeadNeuronWarning,
    EmptyClassWarning,
    _device,
    make_nap_pipeline,
)
from sknap.streaming import NeuronStatistics
from sknap.toy import make_mlp

N_FEATURES, N_CLASSES = 4, 3


@pytest.fixture
def net():
    return make_mlp(N_FEATURES, N_CLASSES, hidden=(6,), random_state=0)


@pytest.fixture
def data(make_data):
    return make_data(30, N_FEATURES, N_CLASSES)


@pytest.fixture
def Z(net, data):
    """Extractor output: 6 activations, then 3 probability columns."""
    return ActivationExtractor(net).fit_transform(data[0])


def _pipeline(net, **params):
    return make_nap_pipeline(net, max_iter=2, random_state=0, **params)


class _Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


# --- Row 1: NaN or infinity in X -----------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", ["array", "tensor", "dataset"])
@pytest.mark.parametrize("at", ["fit", "transform", "streamed fit"])
def test_nan_or_inf_in_X(net, data, bad, kind, at):
    X = data[0].copy()
    X[3, 1] = bad
    if kind == "tensor":
        X = torch.from_numpy(X)
    elif kind == "dataset":
        X = TensorDataset(torch.from_numpy(X))
    extractor = ActivationExtractor(net, batch_size=8)
    if at != "fit":
        extractor.fit(data[0])
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        if at == "fit":
            extractor.fit_transform(X)
        elif at == "transform":
            extractor.transform(X)
        else:
            ActivationEntropy(n_outputs=0).fit(extractor.batches(X))


def test_both_infinities_in_X(net, data):
    # Row 1a: scikit-learn's check sums X first, which warns, then raises.
    X = data[0].copy()
    X[0, :2] = [np.inf, -np.inf]
    with pytest.warns(RuntimeWarning, match="invalid value encountered"):
        with pytest.raises(ValueError, match="Input X contains infinity"):
            ActivationExtractor(net).fit(X)


def test_X_beyond_the_range_of_the_backbone_dtype(net, data):
    # 1e39 is finite in float64 but inf in the backbone's float32.
    X = data[0].astype(np.float64)
    X[0, 0] = 1e39
    with pytest.raises(ValueError, match="beyond the range of the backbone's dtype"):
        ActivationExtractor(net).fit_transform(X)


# --- Row 2: NaN or infinity in activations -------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize(
    "step",
    [
        ActivationEntropy(),
        ActivationProbabilityFeatures(),
        AuxiliaryClassifier(max_iter=1),
    ],
    ids=lambda s: type(s).__name__,
)
def test_nan_or_inf_in_activations(Z, data, bad, step):
    Z = Z.copy()
    Z[2, 1] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        step.fit(Z, data[1])


def test_backbone_that_makes_nan(net, data):
    with torch.no_grad():
        net.fc1.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="produced NaN or infinity in layer 'relu1'"):
        ActivationExtractor(net).fit(data[0])


def test_backbone_that_makes_nan_in_a_later_batch(net, data):
    # Fit sees finite values; a batch of transform overflows in the output.
    class Overflow(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = net

        def forward(self, x):
            out = self.body(x)
            return torch.where(x[:, :1] > 100, torch.inf, out)

    X = data[0].copy()
    extractor = ActivationExtractor(Overflow(), batch_size=8).fit(X)
    X[20, 0] = 1000.0
    with pytest.raises(ValueError, match="produced NaN or infinity in its output"):
        extractor.transform(X)


def test_auxiliary_values_beyond_float32(data):
    X = np.abs(data[0]).astype(np.float64) * 1e39
    with pytest.raises(ValueError, match="beyond the range of float32"):
        AuxiliaryClassifier(max_iter=1).fit(X, data[1])


def test_auxiliary_training_that_diverges(data):
    X = data[0].astype(np.float64) * 1e30
    clf = AuxiliaryClassifier(learning_rate_init=1e30, max_iter=3, random_state=0)
    with pytest.raises(ValueError, match="training diverged.*learning_rate_init"):
        clf.fit(X, data[1])


# --- Row 3: wrong number of features at transform --------------------------------


def test_wrong_number_of_features_extractor(net, data):
    extractor = ActivationExtractor(net).fit(data[0])
    with pytest.raises(ValueError, match="X has 3 features, but Activation.*4"):
        extractor.transform(data[0][:, :3])
    with pytest.raises(ValueError, match=r"samples of shape \(3,\).*\(4,\)"):
        extractor.transform(torch.from_numpy(data[0][:, :3]))


@pytest.mark.parametrize(
    "step",
    [ActivationEntropy(), ActivationProbabilityFeatures(), AuxiliaryClassifier()],
    ids=lambda s: type(s).__name__,
)
def test_wrong_number_of_features_steps(Z, data, step):
    step.set_params(**({"max_iter": 1} if "max_iter" in step.get_params() else {}))
    step.fit(Z, data[1])
    method = step.predict if hasattr(step, "predict") else step.transform
    with pytest.raises(ValueError, match="X has 8 features, but .* expecting 9"):
        method(Z[:, :-1])


def test_backbone_rejects_the_input_shape(net):
    with pytest.raises(ValueError, match="backbone failed on a batch.*shape the"):
        ActivationExtractor(net).fit(np.ones((2, 5), dtype=np.float32))


# --- Row 4: labels unseen at fit -----------------------------------------------


def test_labels_the_backbone_has_no_output_for(net, data, Z):
    # Labels 0..4 for a backbone of 3 outputs. The pipeline knows the outputs
    # from the extractor's layout; a step alone finds them from the row sums.
    y = np.arange(len(data[0])) % 5
    with pytest.raises(ValueError, match="y has 5 classes but X has 3 probability"):
        _pipeline(net).fit(data[0], y)
    with pytest.raises(ValueError, match="backbone has 3 outputs.*n_outputs=3"):
        ActivationEntropy().fit(Z, y)


def test_labels_outside_the_outputs_with_n_outputs_set(Z):
    y = np.array([0, 5] * 15)
    with pytest.raises(ValueError, match="y has 2 classes but X has 3 probability"):
        ActivationProbabilityFeatures(n_outputs=3).fit(Z, y)


def test_labels_not_among_the_named_classes(net, data):
    pd = pytest.importorskip("pandas")
    extractor = ActivationExtractor(net, classes=["cat", "dog", "eel"])
    Z = extractor.set_output(transform="pandas").fit_transform(data[0])
    assert isinstance(Z, pd.DataFrame)
    y = np.array(["cat", "dog", "fox"])[data[1]]
    with pytest.raises(ValueError, match=r"labels \['fox'\] that are not among"):
        ActivationProbabilityFeatures().fit(Z, y)


def test_score_with_labels_unseen_at_fit_is_sound(net, data):
    # Labels never seen in training are simply counted wrong; predict only
    # returns classes seen in fit.
    X, y = data
    pipe = _pipeline(net).fit(X, y)
    assert set(pipe.predict(X)) <= set(y)
    assert pipe.score(X, y + 10) == 0.0


# --- Row 5: a single class -----------------------------------------------------


def test_single_class_in_a_pipeline(net, data):
    # The extractor's layout says 3 outputs: classes 1 and 2 are empty, and
    # the auxiliary classifier needs two.
    y = np.zeros(len(data[0]), dtype=int)
    with pytest.warns(EmptyClassWarning, match=r"Classes \[1, 2\]"):
        with pytest.raises(ValueError, match="at least 2 classes.*1 class"):
            _pipeline(net).fit(data[0], y)


def test_single_class_without_a_layout(Z):
    y = np.zeros(len(Z), dtype=int)
    with pytest.raises(ValueError, match="y has a single class"):
        ActivationProbabilityFeatures().fit(Z, y)
    with pytest.warns(EmptyClassWarning, match=r"Classes \[1, 2\]"):
        ActivationProbabilityFeatures(n_outputs=N_CLASSES).fit(Z, y)


# --- Row 6: empty input ----------------------------------------------------------


@pytest.mark.parametrize(
    "X, match",
    [
        (np.zeros((0, N_FEATURES), np.float32), "0 sample"),
        (torch.zeros(0, N_FEATURES), "at least one sample"),
        (TensorDataset(torch.zeros(0, N_FEATURES)), "X is empty"),
        (DataLoader(TensorDataset(torch.zeros(0, N_FEATURES))), "X is empty"),
        ([], "Expected 2D array"),
    ],
    ids=["array", "tensor", "dataset", "dataloader", "list"],
)
def test_empty_input_extractor(net, data, X, match):
    with pytest.raises(ValueError, match=match):
        ActivationExtractor(net).fit(X)
    extractor = ActivationExtractor(net).fit(data[0])
    with pytest.raises(ValueError, match=match):
        extractor.transform(X)


@pytest.mark.parametrize(
    "step",
    [ActivationEntropy(), ActivationProbabilityFeatures(), AuxiliaryClassifier()],
    ids=lambda s: type(s).__name__,
)
def test_empty_input_steps(Z, step):
    with pytest.raises(ValueError, match="0 sample"):
        step.fit(Z[:0], np.zeros(0, dtype=int))


def test_activations_without_columns():
    with pytest.raises(ValueError, match="0 feature"):
        ActivationEntropy(n_outputs=0).fit(np.zeros((3, 0)))


# --- Row 7: string labels ------------------------------------------------------


def test_string_labels_in_a_pipeline(net, data):
    # As many labels as outputs: matched to the columns in sorted order.
    X, y = data
    labels = np.array(["ant", "bee", "cat"])
    pipe = _pipeline(net).fit(X, labels[y])
    assert set(pipe.predict(X)) <= set(labels)
    assert_array_equal(pipe.classes_, labels)


def test_string_labels_follow_the_column_names(net, data):
    # With the extractor's classes as column names, the labels follow the
    # names, not their sorted order.
    pytest.importorskip("pandas")
    names = ["zebra", "ant", "moth"]
    Z = (
        ActivationExtractor(net, classes=names)
        .set_output(transform="pandas")
        .fit_transform(data[0])
    )
    features = ActivationProbabilityFeatures().fit(Z, np.array(names)[data[1]])
    assert_array_equal(features.classes_, names)
    out = features.transform(Z)
    assert_allclose(np.asarray(out)[:, 3:], Z.to_numpy()[:, -3:], rtol=1e-6)


def test_string_labels_fewer_than_outputs(Z):
    y = np.array(["a", "b"] * 15)
    with pytest.raises(ValueError, match="y has 2 classes but X has 3 probability"):
        ActivationProbabilityFeatures(n_outputs=3).fit(Z, y)


# --- Row 8: non-contiguous or integer labels -----------------------------------


def test_non_contiguous_labels_as_many_as_outputs(net, data):
    X, y = data
    labels = np.array([1, 5, 9])
    pipe = _pipeline(net).fit(X, labels[y])
    assert_array_equal(pipe.classes_, labels)
    assert set(pipe.predict(X)) <= set(labels)


def test_integer_labels_missing_an_output(Z, data):
    # Labels 0 and 2 of a 3-output backbone: output indices, class 1 is empty.
    y = np.where(data[1] == 1, 2, data[1])
    with pytest.warns(EmptyClassWarning, match=r"Classes \[1\]"):
        features = ActivationProbabilityFeatures(n_outputs=3).fit(Z, y)
    assert_array_equal(features.classes_, [0, 1, 2])
    assert_array_equal(features.activation_probability_[1], 0.0)


def test_integer_labels_missing_an_output_without_n_outputs(Z, data):
    y = np.where(data[1] == 1, 2, data[1])
    with pytest.raises(ValueError, match="last 2 columns.*Set n_outputs=3"):
        ActivationEntropy().fit(Z, y)


@pytest.mark.parametrize(
    "y, match",
    [
        (np.linspace(0, 1, 30), "Unknown label type: continuous"),
        (np.eye(3)[np.arange(30) % 3], "y should be a 1d array"),
        (np.arange(5), "inconsistent numbers of samples"),
    ],
    ids=["continuous", "one-hot", "length"],
)
def test_bad_targets(net, data, y, match):
    with pytest.raises(ValueError, match=match):
        _pipeline(net).fit(data[0], y)


# --- Row 9: a layer that does not exist ----------------------------------------


def test_layer_name_with_a_close_match(net, data):
    match = "'relu' .* Did you mean 'relu1'.*named_modules"
    with pytest.raises(ValueError, match=match):
        ActivationExtractor(net, layers="relu").fit(data[0])


def test_layer_name_without_a_close_match(net, data):
    with pytest.raises(ValueError, match="'encoder' .*not a module.*named_modules"):
        ActivationExtractor(net, layers=["relu1", "encoder"]).fit(data[0])


def test_layer_call_index_out_of_range(net, data):
    with pytest.raises(ValueError, match=r"'relu1#3'.*must be in \[0, 0\]"):
        ActivationExtractor(net, layers="relu1#3").fit(data[0])


def test_layer_type_not_in_the_backbone(net, data):
    with pytest.raises(ValueError, match="No module of type Conv2d"):
        ActivationExtractor(net, layers=nn.Conv2d).fit(data[0])


def test_backbone_without_relu_modules(data):
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(N_FEATURES, N_CLASSES)

        def forward(self, x):
            return torch.relu(self.fc(x))

    with pytest.raises(ValueError, match="has none.*functional.relu"):
        ActivationExtractor(Functional()).fit(data[0])


# --- Row 10: a backbone that returns a tuple or a dict -------------------------


class _TupleNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x), x


class _DictNet(_TupleNet):
    def forward(self, x):
        return {"scores": self.net(x), "input": x}


@pytest.mark.parametrize(
    "wrapper, key", [(_TupleNet, 0), (_DictNet, "scores")], ids=["tuple", "dict"]
)
def test_backbone_returning_a_tuple_or_dict(net, data, wrapper, key):
    with pytest.raises(ValueError, match=f"Set output_key.*output_key={key!r}"):
        ActivationExtractor(wrapper(net)).fit(data[0])
    Z = ActivationExtractor(wrapper(net), output_key=key).fit_transform(data[0])
    assert_allclose(Z, ActivationExtractor(net).fit_transform(data[0]), rtol=1e-6)


def test_output_key_not_in_the_output(net, data):
    with pytest.raises(ValueError, match="output_key='logits' is not in"):
        ActivationExtractor(_DictNet(net), output_key="logits").fit(data[0])


# --- Row 11: backbone output size differs from the number of classes ----------


def test_more_outputs_than_classes(data):
    # A pipeline reads the 10 outputs from the extractor's layout; a step
    # alone, without it, stops.
    net10 = make_mlp(N_FEATURES, 10, hidden=(6,), random_state=0)
    with pytest.warns(EmptyClassWarning, match=r"Classes \[3, 4, 5, 6, 7, 8, 9\]"):
        pipe = _pipeline(net10).fit(*data)
    assert pipe["entropy"].n_outputs_in_ == 10
    Z10 = pipe["extractor"].transform(data[0])
    with pytest.raises(ValueError, match="backbone has 10 outputs, not one per class"):
        ActivationProbabilityFeatures().fit(Z10, data[1])


def test_fewer_outputs_than_classes(net, data, Z):
    y = np.arange(len(data[0])) % 4
    with pytest.raises(ValueError, match="y has 4 classes but X has 3 probability"):
        _pipeline(net).fit(data[0], y)
    with pytest.raises(ValueError, match="backbone has 3 outputs, not one per class"):
        ActivationEntropy().fit(Z, y)


def test_backbone_with_a_single_output(data):
    net1 = make_mlp(N_FEATURES, 1, hidden=(6,), random_state=0)
    with pytest.raises(ValueError, match="1 score per sample.*torch.zeros_like"):
        ActivationExtractor(net1).fit(data[0])


def test_classes_parameter_of_the_wrong_length(net, data):
    with pytest.raises(
        ValueError, match="'classes' has 2 labels but the backbone has 3"
    ):
        ActivationExtractor(net, classes=["a", "b"]).fit(data[0])


def test_backbone_returning_scores_of_the_wrong_shape(data):
    class Flat(nn.Module):
        def forward(self, x):
            return torch.relu(x).sum(dim=1)

    with pytest.raises(ValueError, match=r"class scores of shape \(n_samples, n_cl"):
        ActivationExtractor(Flat(), layers=[]).fit(data[0])


def test_layout_unknown_without_y_or_names(Z):
    # Row 11b.
    with pytest.raises(ValueError, match="cannot tell how many of the last col"):
        ActivationEntropy().fit(Z)
    with pytest.raises(ValueError, match="which leaves no activation"):
        ActivationEntropy(n_outputs=9).fit(Z)


def test_a_layout_that_does_not_describe_X(net, data, Z):
    # Row 11c.
    layout = ActivationExtractor(net).fit(data[0]).layout_
    with pytest.raises(ValueError, match="n_outputs=2, but the layout given to fit"):
        ActivationEntropy(n_outputs=2).fit(Z, layout=layout)
    with pytest.raises(ValueError, match=r"9 columns \(6 activations.*X has 8"):
        ActivationProbabilityFeatures().fit(Z[:, 1:], data[1], layout=layout)
    with pytest.raises(TypeError, match="got layout of type str"):
        ActivationEntropy().fit(Z, layout="proba")


# --- Row 12: dead neurons ------------------------------------------------------


def test_dead_neurons_warn_and_count_zero(Z, data):
    Z = Z.copy()
    Z[:, [0, 3]] = 0.0
    with pytest.warns(DeadNeuronWarning, match="2 of 6 neurons had no positive"):
        entropy = ActivationEntropy().fit(Z, data[1])
    assert_array_equal(entropy.dead_neurons_[[0, 3]], True)
    assert_array_equal(entropy.neuron_entropy_[[0, 3]], 0.0)
    features = ActivationProbabilityFeatures().fit(Z, data[1])
    assert_array_equal(features.activation_probability_[:, [0, 3]], 0.0)
    assert np.isfinite(features.transform(Z)).all()


# --- Row 13: a sample with no active neuron ------------------------------------


def test_sample_without_active_neuron_keeps_the_backbone_prediction(Z, data):
    features = ActivationProbabilityFeatures().fit(Z, data[1])
    quiet = Z[:2].copy()
    quiet[:, :6] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = features.transform(quiet)
    # No vote: Y_proposed falls back to Y_predicted, never NaN.
    assert_allclose(out[:, :3], quiet[:, 6:], rtol=1e-6)
    assert_allclose(out[:, 3:], quiet[:, 6:], rtol=1e-6)


# --- Row 14: bad parameter values ----------------------------------------------


@pytest.mark.parametrize(
    "estimator, match",
    [
        (ActivationEntropy(n_bins=1), r"'n_bins' .* int in the range \[2, inf\)"),
        (ActivationEntropy(n_bins=2.5), r"'n_bins' .*Got 2.5 instead"),
        (ActivationEntropy(n_bins="10"), r"'n_bins' .*Got '10' instead"),
        (ActivationEntropy(n_bins=True), r"'n_bins' .*Got True instead"),
        (ActivationEntropy(binning="left"), r"'binning' .*among"),
        (ActivationEntropy(base=1), r"'base' .*other than 1"),
        (ActivationEntropy(base=-2), r"'base' .*range \(0.0, inf\)"),
        (ActivationEntropy(n_neurons=0), r"'n_neurons' .*Got 0 instead"),
        (ActivationEntropy(n_neurons=1.5), r"'n_neurons' .*Got 1.5 instead"),
        (ActivationEntropy(n_outputs="all"), r"'n_outputs' .*Got 'all'"),
        (ActivationProbabilityFeatures(alpha=-1), r"'alpha' .*Got -1 instead"),
        (ActivationProbabilityFeatures(cv=1), r"'cv' .*int in the range \[2, inf\)"),
        (ActivationProbabilityFeatures(cv="five"), r"Expected `cv` as an int.*five"),
        (AuxiliaryClassifier(dropout=1.0), r"'dropout' .*\[0.0, 1.0\)"),
        (AuxiliaryClassifier(max_iter=0), r"'max_iter' .*Got 0"),
        (AuxiliaryClassifier(hidden_layer_sizes=(8, 0)), "tuple of positive ints"),
        (AuxiliaryClassifier(device="gpu"), r"'device' .*Got 'gpu'"),
    ],
    ids=repr,
)
def test_bad_parameter_values_of_steps(Z, data, estimator, match):
    # fit_transform, as a Pipeline calls it: a cv that is a string is only
    # found out when the folds are made.
    fit = getattr(estimator, "fit_transform", estimator.fit)
    with pytest.raises((ValueError, TypeError), match=match):
        fit(Z, data[1])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"reduce": "sum"}, r"'reduce' .*among"),
        ({"output": "softmax"}, r"'output' .*among"),
        ({"batch_size": 0}, r"'batch_size' .*range \[1, inf\)"),
        ({"layers": 3}, r"'layers' .*Got 3 instead"),
        ({"layers": ["relu1", 3]}, r"'layers' must be a module name.*Got 3"),
        ({"device": "gpu"}, r"'device' .*Got 'gpu' instead"),
    ],
    ids=repr,
)
def test_bad_parameter_values_of_the_extractor(net, data, params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ActivationExtractor(net, **params).fit(data[0])


def test_backbone_that_is_not_a_module(data):
    with pytest.raises(InvalidParameterError, match="'backbone' .*torch.nn"):
        ActivationExtractor(lambda x: x).fit(data[0])


def test_unknown_parameter_names(net):
    with pytest.raises(ValueError, match="Invalid parameter 'nbins'.*n_bins"):
        _pipeline(net).set_params(entropy__nbins=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nbins'"):
        ActivationEntropy(nbins=4)


def test_cuda_device_without_cuda(net, data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available.*device='auto'"):
        ActivationExtractor(net, device="cuda").fit(data[0])


def test_grid_with_a_bad_candidate_names_the_parameter(net, data):
    from sklearn.model_selection import GridSearchCV

    grid = GridSearchCV(_pipeline(net), {"entropy__n_bins": [1]}, cv=2)
    with pytest.raises(ValueError, match="'n_bins' parameter of ActivationEntropy"):
        grid.fit(*data)


def test_too_few_samples_for_cross_fitting(Z, data):
    # Row 14c.
    features = ActivationProbabilityFeatures(cv=2)
    with pytest.raises(ValueError, match="greater than the number of members"):
        features.fit_transform(Z[:3], [0, 1, 2])
    with pytest.raises(ValueError, match="Cannot have number of splits"):
        features.set_params(cv=40).fit_transform(Z, data[1])
    # A class with fewer members than folds only warns (scikit-learn).
    y = data[1].copy()
    y[y == 2] = 1
    y[0] = 2
    with pytest.warns(UserWarning, match="The least populated class in y has"):
        features.set_params(cv=2, n_outputs=3).fit_transform(Z, y)


# --- Row 15: input dtypes ------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float64, np.int64, np.uint8, np.bool_]
)
def test_input_dtypes_of_the_extractor(net, data, dtype):
    X = data[0]
    if dtype in (np.int64, np.uint8, np.bool_):
        X = (np.abs(X) * 3).astype(dtype)
    else:
        X = X.astype(dtype)
    as_float32 = X.astype(np.float32)
    extractor = ActivationExtractor(net).fit(X)
    for given in (X, torch.from_numpy(X)):
        Z = extractor.transform(given)
        assert Z.dtype == np.float32
        # The backbone computes in float32 whatever the input dtype.
        assert_allclose(Z, extractor.transform(as_float32), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64, np.uint8])
def test_input_dtypes_of_the_steps(Z, data, dtype):
    activations = (np.abs(Z[:, :6]) * 10).astype(dtype)
    expected = ActivationEntropy(n_outputs=0).fit(activations.astype(np.float64))
    got = ActivationEntropy(n_outputs=0).fit(activations)
    assert_allclose(got.neuron_entropy_, expected.neuron_entropy_)
    features = ActivationProbabilityFeatures(n_outputs=0).fit(activations, data[1])
    assert np.isfinite(features.transform(activations)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_backbone_dtypes(data, dtype):
    net = make_mlp(N_FEATURES, N_CLASSES, hidden=(6,), random_state=0)
    reference = ActivationExtractor(net).fit_transform(data[0])
    Z = ActivationExtractor(net.to(dtype)).fit_transform(data[0])
    assert Z.dtype == np.float32
    # float16 keeps about 3 decimal digits.
    assert_allclose(
        Z, reference, rtol=1e-2 if dtype == torch.float16 else 1e-6, atol=1e-3
    )


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.array([["a", "b", "c", "d"]] * 3), ValueError, "bytes/strings"),
        (np.ones((3, 4), dtype=complex), ValueError, "Complex data"),
        (np.ones(4, dtype=np.float32), ValueError, "Expected 2D array"),
        (_Items(["abcd"] * 3), TypeError, "could not be made into a tensor"),
        (_Items([object()] * 3), TypeError, "Reading a batch.*ToTensor"),
        (_Items([np.ones(4), np.ones(3)]), TypeError, "Reading a batch.*one shape"),
        (_Items([{"x": np.ones(4)}] * 3), ValueError, "as keyword arguments"),
    ],
    ids=["strings", "complex", "1d", "str-items", "objects", "ragged", "dicts"],
)
def test_inputs_that_are_not_numeric_arrays(net, X, error, match):
    with pytest.raises(error, match=match):
        ActivationExtractor(net).fit(X)


# --- Row 16: an activation matrix that would not fit in memory ----------------


def test_memory_guard_before_allocating(net, data, monkeypatch):
    extractor = ActivationExtractor(net).fit(data[0])
    calls = []
    handle = net.register_forward_pre_hook(lambda *args: calls.append(1))
    monkeypatch.setattr(_device, "available_memory", lambda: 1000)
    try:
        # 30 samples x (6 + 3) columns x 4 bytes = 1080 bytes > 1000.
        with pytest.raises(
            ActivationMemoryError, match="30 samples x 9 col.*needs 1.1 KiB.*1000 bytes"
        ):
            extractor.transform(data[0])
        with pytest.raises(MemoryError, match="streaming"):
            extractor.transform(TensorDataset(torch.from_numpy(data[0])))
    finally:
        handle.remove()
    # Raised before the first forward pass, so before any allocation.
    assert calls == []
    assert issubclass(ActivationMemoryError, ValueError)


def test_memory_guard_passes_when_it_fits(net, data, monkeypatch):
    extractor = ActivationExtractor(net).fit(data[0])
    monkeypatch.setattr(_device, "available_memory", lambda: 1080)
    assert extractor.transform(data[0]).shape == (30, 9)
    # Unknown memory: no guard.
    monkeypatch.setattr(_device, "available_memory", lambda: None)
    assert extractor.transform(data[0]).shape == (30, 9)


def test_memory_guard_counts_what_a_dataloader_yields(net, data, monkeypatch):
    # A loader over 5 of the 30 samples needs 5 x 9 x 4 = 180 bytes, not
    # the whole dataset's 1080.
    extractor = ActivationExtractor(net).fit(data[0])
    subset = torch.utils.data.Subset(TensorDataset(torch.from_numpy(data[0])), range(5))
    loader = DataLoader(subset, batch_size=2)
    monkeypatch.setattr(_device, "available_memory", lambda: 180)
    assert extractor.transform(loader).shape == (5, 9)
    monkeypatch.setattr(_device, "available_memory", lambda: 179)
    with pytest.raises(ActivationMemoryError, match="5 samples x 9 columns"):
        extractor.transform(loader)


def test_available_memory_is_a_positive_number_or_none():
    available = _device.available_memory()
    assert available is None or available > 0


def test_unknown_length_fills_as_it_goes(net, data, monkeypatch):
    # An IterableDataset has no len(): no guard, and the rows are collected.
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(torch.from_numpy(data[0]))

    extractor = ActivationExtractor(net, batch_size=7).fit(data[0])
    monkeypatch.setattr(_device, "available_memory", lambda: 1)
    Z = extractor.transform(Stream())
    monkeypatch.undo()
    assert_array_equal(Z, extractor.transform(data[0]))


def test_dataloader_that_drops_the_last_batch(net, data):
    extractor = ActivationExtractor(net).fit(data[0])
    loader = DataLoader(
        TensorDataset(torch.from_numpy(data[0])), batch_size=8, drop_last=True
    )
    Z = extractor.transform(loader)
    assert Z.shape == (24, 9)
    assert_allclose(Z, extractor.transform(data[0][:24]), rtol=1e-6, atol=1e-7)


# --- Row 18: a second pass over other samples than the first -----------------


@pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")
def test_second_pass_over_other_samples(Z, data):
    y = data[1]
    parts = [(Z[:10], y[:10]), (Z[10:20], y[10:20]), (Z[20:], y[20:])]
    first = NeuronStatistics().update_from(parts)
    partial = first.begin_histograms(5).update_from(parts[:2])
    seen, expected = int((Z[:20] > 0).sum()), int((Z > 0).sum())
    with pytest.raises(
        ValueError,
        match=f"counted {seen:,} positive values where the first counted {expected:,}",
    ):
        ActivationEntropy(n_bins=5).fit(partial)


# --- Unfitted estimators -------------------------------------------------------


@pytest.mark.parametrize(
    "estimator, method",
    [
        (ActivationEntropy(), "transform"),
        (ActivationProbabilityFeatures(), "transform"),
        (AuxiliaryClassifier(), "predict"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_unfitted(Z, estimator, method):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet"):
        getattr(estimator, method)(Z)


def test_unfitted_extractor(net, data):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet"):
        ActivationExtractor(net).transform(data[0])
