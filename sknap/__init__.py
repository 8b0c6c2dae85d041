"""Neuron activation patterns of PyTorch classifiers, as scikit-learn estimators.

The top level holds what a user types: the four estimators, the pipeline that
chains them, the entropy of a matrix, and the warnings and errors. Streaming
statistics (:mod:`sknap.streaming`), fused scoring (:mod:`sknap.fused`), the
training monitor (:mod:`sknap.monitor`), statistics of results
(:mod:`sknap.statistics`) and tiny backbones (:mod:`sknap.toy`) are public in
their modules; the paper's reproduction is the subpackage :mod:`sknap.paper`,
which ``import sknap`` does not load.
"""

from ._auxiliary import AuxiliaryClassifier
from ._entropy import ActivationEntropy, activation_entropy
from ._extraction import ActivationExtractor
from ._pipeline import make_nap_pipeline
from ._probabilities import ActivationProbabilityFeatures
from .exceptions import (
    ActivationMemoryError,
    CacheWarning,
    DeadNeuronWarning,
    EmptyClassWarning,
    LayoutWarning,
)

__version__ = "0.1.0"

__all__ = [
    "ActivationEntropy",
    "ActivationExtractor",
    "ActivationMemoryError",
    "ActivationProbabilityFeatures",
    "AuxiliaryClassifier",
    "CacheWarning",
    "DeadNeuronWarning",
    "EmptyClassWarning",
    "LayoutWarning",
    "activation_entropy",
    "make_nap_pipeline",
]
