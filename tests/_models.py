"""Models that only the tests use."""

import torch
from torch import nn


class AnyWidthMLP(nn.Module):
    """A tiny classifier that accepts any number of input features.

    It summarises each row by four statistics (mean, mean absolute value,
    minimum, maximum) and maps them through ``Linear(4, hidden) -> ReLU ->
    Linear(hidden, n_classes)``. Only useful where inputs of varying width
    arrive, as in scikit-learn's estimator checks.

    Parameters
    ----------
    n_classes : int, default=3
        Number of outputs.
    hidden : int, default=8
        Width of the hidden ReLU layer.
    random_state : int, default=0
        Seed of the weights.

    """

    def __init__(self, n_classes=3, hidden=8, random_state=0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            self.fc1 = nn.Linear(4, hidden)
            self.relu1 = nn.ReLU()
            self.out = nn.Linear(hidden, n_classes)

    def forward(self, x):
        """Class scores of a batch.

        Parameters
        ----------
        x : Tensor of shape (n_samples, ...)
            Inputs of any shape; each sample is flattened.

        Returns
        -------
        logits : Tensor of shape (n_samples, n_classes)
            Class scores.
        """
        x = x.flatten(1)
        stats = torch.stack([x.mean(1), x.abs().mean(1), x.amin(1), x.amax(1)], dim=1)
        return self.out(self.relu1(self.fc1(stats)))
