"""Warnings that sknap raises for recoverable oddities in the data."""

__all__ = [
    "ActivationMemoryError",
    "CacheWarning",
    "DeadNeuronWarning",
    "LayoutWarning",
    "EmptyClassWarning",
]


class ActivationMemoryError(MemoryError, ValueError):
    """The activation matrix asked for would not fit in the available memory.

    Raised by :meth:`ActivationExtractor.transform` before it allocates
    anything; the message gives the size needed. It is a ``MemoryError`` and a
    ``ValueError``, so either ``except`` clause catches it.

    Examples
    --------
    Fall back to the streaming fit, which never builds the matrix:

    >>> import numpy as np
    >>> from sknap import ActivationEntropy, ActivationExtractor, ActivationMemoryError
    >>> from sknap.toy import make_mlp
    >>> X = np.random.default_rng(0).random((50, 4), dtype=np.float32)
    >>> y = np.arange(50) % 3
    >>> net = make_mlp(4, 3, hidden=(8,), random_state=0)
    >>> extractor = ActivationExtractor(net).fit(X)
    >>> try:
    ...     entropy = ActivationEntropy().fit(extractor.transform(X), y)
    ... except ActivationMemoryError:
    ...     entropy = ActivationEntropy().fit(extractor.batches(X, y))
    >>> issubclass(ActivationMemoryError, (MemoryError, ValueError))
    True
    """


class DeadNeuronWarning(UserWarning):
    """Some neurons had no positive activation in the fit data.

    Their entropy is 0 and their activation probability is 0 for every class.
    The result is still sound; choose other layers or more data if this is
    unexpected.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from sknap import ActivationEntropy, DeadNeuronWarning
    >>> A = np.array([[0.0, 1.0], [0.0, 2.0]])     # neuron 0 is never active
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     entropy = ActivationEntropy(n_outputs=0).fit(A)
    >>> caught[0].category is DeadNeuronWarning, entropy.dead_neurons_.tolist()
    (True, [True, False])
    """


class LayoutWarning(UserWarning):
    """The columns taken as class probabilities do not look like probabilities.

    Raised when the last ``n_outputs`` columns of the input have rows that do
    not sum to 1, which means the column layout is not the one that
    :class:`~sknap.ActivationExtractor` writes.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from sknap import ActivationEntropy, LayoutWarning
    >>> Z = np.array([[1.0, 0.5, 0.2], [2.0, 0.1, 0.3]])   # last 2 do not sum to 1
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = ActivationEntropy(n_outputs=2).fit(Z)
    >>> caught[0].category is LayoutWarning
    True
    """


class EmptyClassWarning(UserWarning):
    """A class had no training sample, so its activation probabilities are 0.

    ``Y_proposed`` then never favours that class. Set ``alpha > 0`` in
    :class:`~sknap.ActivationProbabilityFeatures`, or add samples of it.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from sknap import ActivationProbabilityFeatures, EmptyClassWarning
    >>> Z = np.array([[1.0, 0.2, 0.7, 0.1], [2.0, 0.6, 0.3, 0.1]])   # 3 classes
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = ActivationProbabilityFeatures(n_outputs=3).fit(Z, [0, 1])
    >>> print(caught[0].message)
    Classes [2] have no training sample, ...
    """


class CacheWarning(UserWarning):
    """The activation cache could not be used for one call; it computed instead.

    Raised when an entry does not hold what its key says (another shape or
    dtype, bytes whose checksum differs, a folder where a file should be),
    when the cache folder cannot be created, read or written (read-only, full,
    a dangling link), when others than its owner can write to it, and when a
    parameter cannot be keyed (a callable ``reduce`` whose state the key cannot
    see). The result is still right: it was computed from the data.

    Examples
    --------
    A folder that others can write to is not used:

    >>> import os, tempfile, warnings
    >>> import numpy as np
    >>> from sknap import ActivationExtractor, CacheWarning
    >>> from sknap.toy import make_mlp
    >>> folder = tempfile.mkdtemp()
    >>> os.chmod(folder, 0o777)
    >>> X = np.ones((4, 3), dtype=np.float32)
    >>> extractor = ActivationExtractor(make_mlp(3, 2, hidden=(4,)), cache=folder)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     Z = extractor.fit(X).transform(X)
    >>> caught[0].category is CacheWarning, os.listdir(folder)
    (True, [])
    """
