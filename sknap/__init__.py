"""Neuron activation patterns of PyTorch classifiers, as scikit-learn estimators."""

from .auxiliary import AuxiliaryClassifier
from .entropy import ActivationEntropy, activation_entropy
from .exceptions import (
    ActivationMemoryError,
    CacheWarning,
    DeadNeuronWarning,
    EmptyClassWarning,
    LayoutWarning,
)
from .extraction import ActivationExtractor
from .fused import fused_transform
from .pipeline import make_nap_pipeline
from .probabilities import (
    ActivationProbabilityFeatures,
    activation_probability,
    proposed_proba,
)
from .streaming import NeuronStatistics, compute_statistics

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
    "NeuronStatistics",
    "activation_entropy",
    "activation_probability",
    "compute_statistics",
    "fused_transform",
    "make_nap_pipeline",
    "proposed_proba",
]
