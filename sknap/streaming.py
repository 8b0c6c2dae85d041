"""Exact statistics of activations that never sit in memory all at once.

Entropy and activation probabilities need only sums over samples
(docs/definitions.md): per class and neuron, the largest value and how many
values are positive; per class and neuron, how many values fall in each bin.
The bins need the maxima first, so an exact fit takes two passes over the
data: the first (:class:`NeuronStatistics`) gathers maxima and the counts for ``P``, the
second (:class:`HistogramStatistics`, from
:meth:`NeuronStatistics.begin_histograms`) counts the bins. The second pass
counts, per class, neuron and state (inactive or one of the bins on the
neuron's shared edges), one integer: ``O(n_classes x n_neurons x n_bins)``,
kept on the device the activations come from.

Both passes are sums, so statistics of shards merge by addition (``+``) and
those of processes by ``torch.distributed`` (:meth:`NeuronStatistics.all_reduce`).
An in-memory fit is these statistics over one batch, so the numbers are equal
by construction. :class:`NeuronStatistics` shows both passes at work.

Sources that deliver a batch in blocks of columns (the extractor counts each
layer's output inside its forward hook) count it with ``rows =
stats.start_batch(y, n_rows, n_columns, device)``, ``stats.count_block(block,
rows, offset)`` for every block and ``stats.end_batch(rows)``; ``update`` is
these three steps over the whole batch.
"""

import copy

import numpy as np
import torch

from . import _engine, _kernels
from ._counting import CountingPass, check_label_kinds
from ._engine_sources import ActivationBatches, compute_statistics, is_batch_source
from ._second_pass import HistogramStatistics

__all__ = [
    "ActivationBatches",
    "HistogramStatistics",
    "NeuronStatistics",
    "compute_statistics",
    "is_batch_source",
]


class NeuronStatistics(CountingPass):
    """First-pass sums over activation batches: maxima and active counts.

    :meth:`update` on every batch records, for every class ``c`` and neuron
    ``j``, the largest value ``class_max_[c, j]`` (0 when none is positive)
    and the number of values > 0 ``active_count_[c, j]``, and the number of
    samples of each class. Batches without labels count as one class.
    :meth:`begin_histograms` then fixes the bin edges from those maxima and
    returns the second pass, a :class:`HistogramStatistics`, whose
    ``update`` counts every value in its bin.

    Statistics of two shards merge with ``a + b``; those of processes with
    :meth:`all_reduce`.

    :class:`~sknap.ActivationEntropy` fits from second-pass statistics and
    :class:`~sknap.ActivationProbabilityFeatures` from either.

    Parameters
    ----------
    device : str, torch.device or None, default=None
        Where the state lives; None takes the device of the first batch.

    Attributes
    ----------
    n_samples_ : int
        Samples counted.
    n_neurons_ : int or None
        Columns of every batch (activations and probabilities alike).
    classes_ : ndarray of shape (n_classes,) or None
        Sorted labels seen; None for batches without labels.
    class_count_ : Tensor of shape (n_classes,)
        Samples of each class (one entry when there are no labels).
    active_count_ : Tensor of shape (n_classes, n_neurons)
        Values > 0 of each class and neuron.
    class_max_ : Tensor of shape (n_classes, n_neurons), dtype=float64
        Largest value of each class and neuron, at least 0.
    max_ : Tensor of shape (n_neurons,), dtype=float64
        Largest value of each neuron, at least 0.
    feature_names : ndarray of str or None
        Column names, when the batches came from
        :meth:`ActivationExtractor.batches`; they tell the estimators which
        columns are probabilities.

    See Also
    --------
    HistogramStatistics : The second pass.
    compute_statistics : Both passes over a re-iterable source of batches.
    ActivationEntropy.fit, ActivationProbabilityFeatures.fit : Accept these.

    Examples
    --------
    Two shards, counted apart and merged, fit as all the data would:

    >>> import numpy as np
    >>> from sknap import ActivationEntropy, ActivationProbabilityFeatures
    >>> rng = np.random.default_rng(0)
    >>> A = np.maximum(rng.normal(size=(100, 3)), 0)
    >>> y = rng.integers(0, 2, size=100)
    >>> shard1, shard2 = [(A[:50], y[:50])], [(A[50:], y[50:])]
    >>> first = (NeuronStatistics().update_from(shard1)
    ...          + NeuronStatistics().update_from(shard2))
    >>> first.n_samples_, first.active_count_.shape
    (100, torch.Size([2, 3]))
    >>> second = (first.begin_histograms(5).update_from(shard1)
    ...           + first.begin_histograms(5).update_from(shard2))
    >>> type(second).__name__
    'HistogramStatistics'
    >>> entropy = ActivationEntropy(n_bins=5, n_outputs=0).fit(second)
    >>> in_memory = ActivationEntropy(n_bins=5, n_outputs=0).fit(A)
    >>> bool(np.allclose(entropy.neuron_entropy_, in_memory.neuron_entropy_))
    True
    >>> proba = ActivationProbabilityFeatures(n_outputs=0).fit(first)
    >>> proba.activation_probability_.shape          # classes x neurons
    (2, 3)
    """

    def __init__(self, *, device=None):
        self.device = None if device is None else torch.device(device)
        self.n_samples_ = 0
        self.n_neurons_ = None
        self.classes_ = None
        self.class_count_ = None
        self.active_count_ = None
        self.class_max_ = None
        self.feature_names = None
        self._labelled = None

    @property
    def max_(self):
        """Largest value of each neuron over all classes, at least 0."""
        if self.class_max_ is None:
            return None
        if not len(self.class_max_):  # labelled, but no sample yet
            return torch.zeros(self.n_neurons_, dtype=torch.float64, device=self.device)
        return self.class_max_.amax(dim=0)

    @property
    def second_pass(self):
        """False: these are first-pass statistics (see :class:`HistogramStatistics`)."""
        return False

    def _allocate(self, n, n_classes, device):
        self.n_neurons_ = n
        if self.device is None:
            self.device = torch.device("cpu" if device is None else device)
        self.class_count_ = torch.zeros(
            n_classes, dtype=torch.int64, device=self.device
        )
        self.active_count_ = torch.zeros(
            (n_classes, n), dtype=torch.int64, device=self.device
        )
        self.class_max_ = torch.zeros(
            (n_classes, n), dtype=torch.float64, device=self.device
        )

    def _grow(self, classes):
        """Re-index the class rows on the sorted labels ``classes``."""
        rows = torch.as_tensor(
            np.searchsorted(classes, self.classes_), device=self.device
        )
        for name in ("class_count_", "active_count_", "class_max_"):
            old = getattr(self, name)
            new = torch.zeros(
                (len(classes), *old.shape[1:]), dtype=old.dtype, device=old.device
            )
            new[rows] = old
            setattr(self, name, new)
        self.classes_ = classes

    def _new_classes(self, labels):
        self._grow(np.union1d(self.classes_, labels))

    # -- counting ---------------------------------------------------------------

    def update(self, A, y=None):
        """Count one batch: the maxima and values > 0 of each class and neuron.

        Parameters
        ----------
        A : array-like or Tensor of shape (n_samples, n_neurons)
            One batch of activations (with the probability columns, if any).
        y : array-like or Tensor of shape (n_samples,), default=None
            Class labels of the batch.

        Returns
        -------
        self : NeuronStatistics
            These statistics, updated in place.
        """
        return self._update(A, y)

    def update_from(self, batches, *, probabilities=True):
        """Call :meth:`update` on every batch of ``batches``.

        Parameters
        ----------
        batches : iterable
            Arrays or tensors of shape (n_samples, n_neurons), or
            ``(activations, labels)`` pairs, such as
            :meth:`ActivationExtractor.batches` yields.
        probabilities : bool, default=True
            False skips an extractor's probability columns, for fits that do
            not read them: the backbone's softmax is not computed and those
            columns count as 0. Other batches are counted whole.

        Returns
        -------
        self : NeuronStatistics
            These statistics, updated in place.
        """
        return self._update_from(batches, probabilities)

    def start_batch(self, y, n_rows, n_columns, device=None):
        """Begin a batch that arrives in blocks of columns.

        For batch sources that deliver a batch column block by column block
        (the extractor's pass counts each layer's output inside its forward
        hook): ``rows = start_batch(...)``, then :meth:`count_block` for
        every block and :meth:`end_batch`. :meth:`update` is these steps
        with the whole batch as one block.

        Parameters
        ----------
        y : array-like or Tensor of shape (n_rows,), or None
            Class labels of the batch's rows; None for a batch without labels.
        n_rows : int
            Rows of the batch.
        n_columns : int
            Columns of the whole batch, every block together.
        device : str or torch.device, default=None
            Where the state goes at the first batch, unless ``device`` was
            given to the constructor; None is the CPU.

        Returns
        -------
        rows : Tensor of shape (n_rows,), dtype=int64
            The class row of each sample, on ``self.device``.
        """
        if self.class_max_ is None:
            # No class rows yet when labelled: _class_index adds them.
            if y is not None:
                self.classes_ = np.asarray(_engine.to_numpy(y)).reshape(-1)[:0]
            self._allocate(n_columns, 0 if y is not None else 1, device)
        self._check_columns(n_columns)
        return self._class_index(y, n_rows)

    def count_block(self, block, rows, offset=0):
        """Count the columns ``offset, offset + 1, ...`` of a started batch.

        Parameters
        ----------
        block : Tensor of shape (n_rows, n_block_columns)
            Some columns of the batch, floating point.
        rows : Tensor of shape (n_rows,)
            What :meth:`start_batch` returned for the batch.
        offset : int, default=0
            Column of the batch where the block starts.

        Returns
        -------
        finite : bool
            False when the block holds NaN or infinity (it is then partly
            counted: raise, and count no further).
        """
        if self.class_max_ is None:
            raise ValueError(
                "count_block counts a started batch: call start_batch first."
            )
        block = _engine.check_batch(block, None)
        if block.device != self.device:
            block = block.to(self.device)
        return _kernels.first_pass(
            block, rows, self.class_max_, self.active_count_, offset
        )

    def end_batch(self, rows):
        """Count the samples of a batch once all its blocks are counted.

        Parameters
        ----------
        rows : Tensor of shape (n_rows,)
            What :meth:`start_batch` returned for the batch.
        """
        self.n_samples_ += len(rows)
        self.class_count_ += torch.bincount(rows, minlength=len(self.class_count_))

    def begin_histograms(self, n_bins=10, *, binning="right", per_class=True):
        """Statistics of the second pass, with edges from these maxima.

        Call it after the first pass over all the data (and after merging the
        shards' first passes), then ``update`` the result with the same
        batches.

        Parameters
        ----------
        n_bins : int, default=10
            Number of equal bins ``R`` over ``(0, max]``.
        binning : {"right", "reference"}, default="right"
            As in :class:`~sknap.ActivationEntropy`.
        per_class : bool, default=True
            Report the counts within each class (``class_hist_``), on the
            neurons' shared edges, when the batches have labels.

        Returns
        -------
        stats : HistogramStatistics
            A new object, holding a copy of these statistics; this one is
            left as it is.
        """
        return HistogramStatistics(self, n_bins, binning=binning, per_class=per_class)

    # -- merging --------------------------------------------------------------

    def merge(self, other):
        """Statistics of both shards, as one pass over their union would give.

        Counts add and maxima take the larger, with classes aligned by label.

        Parameters
        ----------
        other : NeuronStatistics
            First-pass statistics of another shard.

        Returns
        -------
        stats : NeuronStatistics
            A new object.
        """
        self._check_same_pass(other)
        if other.class_max_ is None:
            return copy.deepcopy(self)
        if self.class_max_ is None:
            return copy.deepcopy(other)
        _engine.check_same_columns(self, other)
        if self._labelled != other._labelled:
            raise ValueError(
                "Cannot merge statistics with and without labels: the batches of "
                "every shard must carry labels, or those of none."
            )
        check_label_kinds([self.classes_, other.classes_])
        out = copy.deepcopy(self)
        theirs = copy.deepcopy(other).to(out.device)
        if out._labelled:
            classes = np.union1d(out.classes_, theirs.classes_)
            out._grow(classes)
            theirs._grow(classes)
        out.n_samples_ += theirs.n_samples_
        out.class_count_ += theirs.class_count_
        out.active_count_ += theirs.active_count_
        torch.maximum(out.class_max_, theirs.class_max_, out=out.class_max_)
        if out.feature_names is None:
            out.feature_names = theirs.feature_names
        return out

    def all_reduce(self, group=None):
        """Sum (and max) these statistics over the processes of ``group``, in place.

        Every process calls it with its own shard's statistics; afterwards
        each holds those of all shards. Run it before
        :meth:`begin_histograms`, so that every process uses the same edges,
        and again on the second pass (:meth:`HistogramStatistics.all_reduce`).
        Works with any backend that supports SUM and MAX (gloo on the CPU,
        NCCL on CUDA).

        Parameters
        ----------
        group : ProcessGroup, default=None
            None is the default group.

        Returns
        -------
        self : NeuronStatistics
            These statistics, now those of all processes.
        """
        import torch.distributed as dist

        known = self._agree(group, None)
        if not known:
            return self
        n, labelled = known[0][0], known[0][1]
        if self.class_max_ is None:
            self._labelled = labelled
            if labelled:
                self.classes_ = np.asarray(known[0][2])[:0]
            device = self.device or _engine.default_device(group)
            self._allocate(n, 0 if labelled else 1, device)
        if labelled:
            classes = self.classes_
            for m in known:
                classes = np.union1d(classes, m[2])
            self._grow(classes)
        samples = torch.tensor([self.n_samples_], dtype=torch.int64, device=self.device)
        for tensor in (samples, self.class_count_, self.active_count_):
            dist.all_reduce(tensor, group=group)
        dist.all_reduce(self.class_max_, op=dist.ReduceOp.MAX, group=group)
        self.n_samples_ = int(samples.item())
        return self
