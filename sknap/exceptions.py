"""Warnings that sknap raises for recoverable oddities in the data."""

__all__ = [
    "ActivationMemoryError",
    "DeadNeuronWarning",
    "LayoutWarning",
    "EmptyClassWarning",
]


class ActivationMemoryError(MemoryError, ValueError):
    """The activation matrix asked for would not fit in the available memory.

    Raised by :meth:`ActivationExtractor.transform` before it allocates
    anything; the message gives the size needed. It is a ``MemoryError`` and a
    ``ValueError``, so either ``except`` clause catches it.
    """


class DeadNeuronWarning(UserWarning):
    """Some neurons had no positive activation in the fit data.

    Their entropy is 0 and their activation probability is 0 for every class.
    The result is still sound; choose other layers or more data if this is
    unexpected.
    """


class LayoutWarning(UserWarning):
    """The columns taken as class probabilities do not look like probabilities.

    Raised when the last ``n_classes`` columns of the input have rows that do
    not sum to 1, which means the column layout is not the one that
    :class:`~sknap.ActivationExtractor` writes.
    """


class EmptyClassWarning(UserWarning):
    """A class had no training sample, so its activation probabilities are 0."""
