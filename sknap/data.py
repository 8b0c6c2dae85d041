"""A torch Dataset that scikit-learn can split, for cross-validation and grid search.

``cross_val_score(pipe, dataset, y)`` cuts ``X`` into folds with
``X[train_indices]``. A torch ``Dataset`` cannot be indexed by an array of
indices, so scikit-learn would read every item into a list; wrapped in
:class:`IndexedDataset`, a fold is a lazy view of the same Dataset instead,
and the inputs are read batch by batch when the extractor runs the backbone.
skorch's ``SliceDataset`` works the same way and is accepted too.
"""

from numbers import Integral

import numpy as np
import torch

__all__ = ["IndexedDataset"]


class IndexedDataset(torch.utils.data.Dataset):
    """A view of a map-style Dataset that array indices slice lazily.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A map-style Dataset: ``len(dataset)`` and ``dataset[i]``. Its items
        are what :class:`~sknap.ActivationExtractor` reads: an input, an
        ``(input, label, ...)`` tuple, or a dict of tensors.
    indices : array-like of int, default=None
        The items of ``dataset`` in this view, in order; None is all of them.

    Attributes
    ----------
    shape : tuple of int
        ``(len(self),)``, so that scikit-learn indexes this object as an array.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn.model_selection import cross_val_score
    >>> from sknap import make_nap_pipeline
    >>> from sknap.toy import digits_mlp
    >>> model, X, _, y, _ = digits_mlp(epochs=5)
    >>> dataset = torch.utils.data.TensorDataset(torch.from_numpy(X))
    >>> view = IndexedDataset(dataset)
    >>> view[np.array([3, 1])].shape, len(view) == len(X)
    ((2,), True)
    >>> pipe = make_nap_pipeline(model, max_iter=2, device="cpu", random_state=0)
    >>> cross_val_score(pipe, view, y, cv=3).shape
    (3,)
    """

    def __init__(self, dataset, indices=None):
        if isinstance(dataset, torch.utils.data.IterableDataset):
            raise TypeError(
                "IndexedDataset needs a map-style Dataset (len() and [i]); an "
                "IterableDataset cannot be split into folds by index."
            )
        self.dataset = dataset
        n = len(dataset)
        self.indices = (
            np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        )

    @property
    def shape(self):
        """``(len(self),)``."""
        return (len(self.indices),)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        if isinstance(key, tuple):  # scikit-learn asks for X[indices, ...]
            key = key[0]
        if isinstance(key, Integral):
            return self.dataset[int(self.indices[key])]
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        return IndexedDataset(self.dataset, self.indices[key])

    def __repr__(self):
        return f"IndexedDataset({self.dataset!r}, {len(self)} items)"
