"""Random shapes, dtypes and degenerate data thrown at every estimator.

Nothing may fail other than with an error of docs/errors.md: a ValueError or
TypeError whose message holds one of the documented phrases below (each of
which the last test finds in the docs). A call that succeeds must return
finite numbers, and warn only with sknap's own warnings or scikit-learn's
note on small cross-validation folds. RuntimeWarnings are errors
(pyproject.toml), so a silent overflow or division by zero fails too.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _models import AnyWidthMLP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sknap import (
    ActivationEntropy,
    ActivationExtractor,
    ActivationProbabilityFeatures,
    AuxiliaryClassifier,
    DeadNeuronWarning,
    EmptyClassWarning,
    LayoutWarning,
    make_nap_pipeline,
)
from sknap.toy import make_mlp

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"

DOCUMENTED = [
    "Input X contains NaN",
    "Input X contains infinity",
    "beyond the range of the backbone's dtype",
    "The backbone produced NaN or infinity in",
    "X has values beyond the range of float32",
    "training diverged",
    "features as input",
    "was fitted on samples of shape",
    "The backbone failed on a batch of shape",
    "Expected 2D array",
    "inconsistent numbers of samples",
    "not one per class of y",
    "probability columns",
    "which leaves no activation",
    "cannot tell how many of the last columns",
    "that are not among the backbone's classes",
    "y has a single class",
    "needs samples of at least 2 classes",
    "Found array with 0 sample(s)",
    "at least one sample",
    "X is empty",
    "Found array with 0 feature(s)",
    "Unknown label type",
    "y should be a 1d array",
    "dtype='numeric' is not compatible",
    "Complex data not supported",
    "could not convert string to float",
    "could not be made into a tensor",
    "Reading a batch from the Dataset or DataLoader failed",
    "needs one score per class, at least 2",
    "must return class scores of shape",
    "parameter of",
    "Cannot have number of splits",
    "cannot be greater than the number of members in each class",
]

_ALLOWED_WARNINGS = (DeadNeuronWarning, EmptyClassWarning, LayoutWarning)
_ALLOWED_WARNING_TEXT = ("The least populated class in y has only",)

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DTYPES = [np.float16, np.float32, np.float64, np.int64, np.uint8, np.bool_]
PATTERNS = [
    "normal",
    "zeros",
    "constant",
    "one_hot",
    "huge",
    "tiny",
    "negative",
    "nan",
    "inf",
]


def _matrix(rng, n, d, dtype, pattern):
    if pattern == "zeros":
        X = np.zeros((n, d))
    elif pattern == "constant":
        X = np.full((n, d), 3.0)
    elif pattern == "one_hot":
        X = np.eye(max(n, d))[:n, :d]
    elif pattern == "huge":
        X = rng.normal(size=(n, d)) * 1e30
    elif pattern == "tiny":
        X = np.abs(rng.normal(size=(n, d))) * 1e-30
    elif pattern == "negative":
        X = -np.abs(rng.normal(size=(n, d)))
    else:
        X = rng.normal(size=(n, d)) * 3
        if pattern in ("nan", "inf") and X.size:
            X.flat[rng.integers(X.size)] = np.nan if pattern == "nan" else np.inf
    if dtype in (np.int64, np.uint8, np.bool_):
        X = np.nan_to_num(np.abs(X), posinf=1e3).clip(0, 200)
    with np.errstate(over="ignore"):
        return X.astype(dtype)


def _labels(rng, n, kind, k):
    if kind == "single":
        return np.zeros(n, dtype=int)
    if kind == "strings":
        return np.array(["cat", "dog", "eel", "fox"])[np.arange(n) % k]
    if kind == "sparse":
        return (np.arange(n) % k) * 7 + 1
    if kind == "continuous":
        return rng.normal(size=n)
    return rng.integers(0, k, size=n)


_ANY_CLASSES = st.integers(1, 4)


@st.composite
def cases(draw, classes=_ANY_CLASSES):
    """(X, y, rng): X of random shape, dtype and pattern; y of k classes."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(0, 9))
    d = draw(st.integers(0, 6))
    dtype = draw(st.sampled_from(DTYPES))
    pattern = draw(st.sampled_from(PATTERNS))
    k = draw(classes)
    kind = draw(st.sampled_from(["ints", "single", "strings", "sparse", "continuous"]))
    X = _matrix(rng, n, d, dtype, pattern)
    y = _labels(rng, n, kind, k)
    if draw(st.booleans()) and n:
        # A softmax block, laid out as the extractor writes it.
        proba = rng.dirichlet(np.ones(k), size=n).astype(np.float32)
        X = np.hstack([X.astype(np.float32), proba]) if d else proba
    return X, y, rng


def _run(call):
    """Run ``call``; an exception must be documented, warnings allowed."""
    allowed = _ALLOWED_WARNING_TEXT
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except (ValueError, TypeError) as err:
            message = str(err)
            assert any(p in message for p in DOCUMENTED), (
                f"Undocumented error: {type(err).__name__}: {message}"
            )
            result = None
            if "Input X contains infinity" in message:
                # scikit-learn's finiteness check sums X first, which warns
                # when X holds both +inf and -inf (docs/errors.md, row 1).
                allowed = (*allowed, "invalid value encountered in reduce")
    for w in caught:
        assert issubclass(w.category, _ALLOWED_WARNINGS) or any(
            text in str(w.message) for text in allowed
        ), f"Unexpected warning {w.category.__name__}: {w.message}"
    return result


def _assert_finite(out):
    if out is not None:
        out = np.asarray(out, dtype=np.float64)
        assert np.isfinite(out).all()


# --- the steps on activation matrices ------------------------------------------


@SETTINGS
@given(
    case=cases(),
    n_bins=st.integers(2, 6),
    n_outputs=st.sampled_from(["auto", 0, 1, 2, 3]),
    n_neurons=st.sampled_from([None, 1, 0.5]),
    binning=st.sampled_from(["right", "reference"]),
)
def test_activation_entropy(case, n_bins, n_outputs, n_neurons, binning):
    X, y, _ = case
    est = ActivationEntropy(
        n_bins, binning=binning, n_neurons=n_neurons, n_outputs=n_outputs
    )
    out = _run(lambda: est.fit(X, y).transform(X))
    _assert_finite(out)
    if out is not None:
        _assert_finite(est.neuron_entropy_)
        assert 0 <= est.normalized_entropy_ <= 1 + 1e-9
        _assert_finite(_run(lambda: est.entropy_of(X)))
        # Another width is a documented error, not a crash.
        _run(lambda: est.transform(X[:, :-1]))


@SETTINGS
@given(
    case=cases(),
    alpha=st.sampled_from([0.0, 1.0]),
    cv=st.sampled_from([None, 2]),
    n_outputs=st.sampled_from(["auto", 0, 2, 3]),
)
def test_activation_probability_features(case, alpha, cv, n_outputs):
    X, y, _ = case
    est = ActivationProbabilityFeatures(alpha=alpha, cv=cv, n_outputs=n_outputs)
    out = _run(lambda: est.fit_transform(X, y))
    _assert_finite(out)
    if out is not None:
        _assert_finite(est.activation_probability_)
        _assert_finite(_run(lambda: est.transform(X)))


@settings(SETTINGS, max_examples=25)
@given(case=cases(classes=st.integers(2, 4)))
def test_auxiliary_classifier(case):
    X, y, _ = case
    clf = AuxiliaryClassifier(max_iter=2, random_state=0)
    out = _run(lambda: clf.fit(X, y).predict_proba(X))
    _assert_finite(out)
    if out is not None:
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


# --- the extractor and the whole pipeline --------------------------------------


class _TinyConv(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = nn.Linear(2, 3)

    def forward(self, x):
        return self.out(self.pool(self.relu(self.conv(x))).flatten(1))


BACKBONES = {
    "mlp4": lambda: make_mlp(4, 3, hidden=(5,), random_state=0),
    "any_width": lambda: AnyWidthMLP(n_classes=3),
    "conv": _TinyConv,
    "half": lambda: make_mlp(4, 3, hidden=(5,), random_state=0).half(),
}


@SETTINGS
@given(
    case=cases(),
    backbone=st.sampled_from(sorted(BACKBONES)),
    reduce=st.sampled_from(["mean", "max", "active_fraction", "flatten"]),
    batch_size=st.integers(1, 4),
    container=st.sampled_from(["array", "tensor", "dataset", "dataloader"]),
    image=st.booleans(),
)
def test_extractor(case, backbone, reduce, batch_size, container, image):
    X, _, _ = case
    n_samples = X.shape[0]
    if image and X.shape[1] > 0:
        # (n, 1, h, w) images of a random, maybe wrong, size.
        X = np.resize(X, (X.shape[0], 1, X.shape[1], X.shape[1]))
    if container != "array":
        X = torch.from_numpy(np.ascontiguousarray(X))
    if container in ("dataset", "dataloader"):
        X = TensorDataset(X)
    if container == "dataloader":
        X = DataLoader(X, batch_size=3)
    est = ActivationExtractor(
        BACKBONES[backbone](), reduce=reduce, batch_size=batch_size
    )
    out = _run(lambda: est.fit(X).transform(X))
    _assert_finite(out)
    if out is not None:
        assert out.dtype == np.float32
        assert out.shape == (n_samples, est.n_neurons_ + est.n_outputs_)


@settings(SETTINGS, max_examples=25)
@given(
    # Mostly as many classes as the backbone has outputs, to reach the end.
    case=cases(classes=st.sampled_from([3, 3, 3, 1, 2, 4])),
    n_neurons=st.sampled_from([None, 0.5]),
    cv=st.sampled_from([None, 2]),
)
def test_pipeline(case, n_neurons, cv):
    X, y, _ = case
    pipe = make_nap_pipeline(
        AnyWidthMLP(n_classes=3), n_neurons=n_neurons, cv=cv, max_iter=2,
        random_state=0,
    )  # fmt: skip
    out = _run(lambda: pipe.fit(X, y).predict_proba(X))
    _assert_finite(out)
    if out is not None:
        assert set(pipe.predict(X)) <= set(np.unique(y))


def test_every_documented_phrase_is_in_the_docs():
    text = DOCS.read_text()
    missing = [phrase for phrase in DOCUMENTED if phrase not in text]
    assert not missing


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_pattern_and_dtype_through_the_pipeline(pattern, dtype):
    # The grid of degenerate data, deterministically, on a well-formed task.
    rng = np.random.default_rng(0)
    X = _matrix(rng, 12, 4, dtype, pattern)
    y = np.arange(12) % 3
    pipe = make_nap_pipeline(AnyWidthMLP(n_classes=3), max_iter=2, random_state=0)
    out = _run(lambda: pipe.fit(X, y).predict_proba(X))
    if not np.isfinite(X.astype(np.float64)).all():
        # NaN, inf, or 1e30 in float16.
        assert out is None
    else:
        assert out is not None
        _assert_finite(out)
