"""The second pass of the streaming statistics: bin counts on fixed edges.

:class:`HistogramStatistics` is made by
:meth:`~sknap.streaming.NeuronStatistics.begin_histograms` and exported by
:mod:`sknap.streaming`.
"""

import copy
import hashlib

import numpy as np
import torch

from . import _engine, _kernels
from ._counting import CountingPass

__all__ = ["HistogramStatistics"]

_OTHER_FIRST_PASS = (
    "These second-pass statistics started from different first passes (their "
    "edges, bins or classes differ). Merge the shards' first passes, call "
    "begin_histograms on the merged statistics, and count every shard's second "
    "pass from that one object."
)


class HistogramStatistics(CountingPass):
    """Second-pass sums over activation batches: every value in its bin.

    Made by :meth:`NeuronStatistics.begin_histograms`, which fixes the bin
    edges from the first pass's maxima. :meth:`update` then counts, for every
    class and neuron, each value in its state: inactive or one of the bins
    on the neuron's shared edges (``counts_``); ``hist_`` sums it over
    classes and ``class_hist_`` is its per-class slice. The first pass's
    counts stay with these statistics, which :meth:`check_same_samples`
    compares with what this pass saw.

    Statistics of two shards merge with ``a + b`` when they started from the
    same (merged) first pass; those of processes with :meth:`all_reduce`.

    Parameters
    ----------
    first_pass : NeuronStatistics
        The first pass over all the data; copied.
    n_bins : int, default=10
        Number of equal bins ``R`` over ``(0, max]``.
    binning : {"right", "reference"}, default="right"
        As in :class:`~sknap.ActivationEntropy`.
    per_class : bool, default=True
        Report the counts within each class (``class_hist_``) when the
        batches have labels.

    Attributes
    ----------
    first_pass : NeuronStatistics
        The copy of the first pass these statistics began from.
    n_bins, binning : int, str
        The bins.
    per_class : bool
        Whether ``class_hist_`` is reported (``per_class`` and labels).
    bin_edges_ : Tensor of shape (n_neurons, n_bins + 1), dtype=float64
        Edges of each neuron's bins.
    counts_ : Tensor of shape (n_classes, n_neurons, n_bins + 1)
        Values of each class and neuron in each state: ``counts_[c, j, 0]``
        those ``<= 0``, ``counts_[c, j, k + 1]`` those in bin ``k``.
    hist_ : Tensor of shape (n_neurons, n_bins)
        Counts of the positive values of each neuron in its bins.
    class_hist_ : Tensor of shape (n_classes, n_neurons, n_bins) or None
        The same within each class (``per_class``).
    n_samples_, n_neurons_, classes_, class_count_, active_count_, \
class_max_, max_
        Those of ``first_pass``.
    feature_names : ndarray of str or None
        Column names, as in :class:`NeuronStatistics`.

    See Also
    --------
    NeuronStatistics : The first pass, and both passes at work.
    compute_statistics : Both passes over a re-iterable source of batches.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap.streaming import NeuronStatistics
    >>> A = np.array([[0.0, 1.0], [0.5, 2.0], [1.0, 3.0], [1.0, 4.0]])
    >>> first = NeuronStatistics().update(A)
    >>> second = first.begin_histograms(2).update(A)
    >>> second.bin_edges_[1].tolist()
    [0.0, 2.0, 4.0]
    >>> second.hist_.tolist()          # neurons x bins
    [[1, 2], [2, 2]]
    >>> second.check_same_samples()    # this pass saw the first pass's samples
    """

    _caches = ("_limits",)

    def __init__(self, first_pass, n_bins=10, *, binning="right", per_class=True):
        from .streaming import NeuronStatistics

        if not isinstance(first_pass, NeuronStatistics):
            raise TypeError(
                "HistogramStatistics begins from the first pass, a "
                f"NeuronStatistics; got {type(first_pass).__name__}. Call "
                "begin_histograms on the statistics of the first pass."
            )
        if first_pass.class_max_ is None:
            raise ValueError(
                "begin_histograms needs the first pass: call update() on every "
                "batch first."
            )
        if binning not in _engine.BINNINGS:
            raise ValueError(
                f"binning must be one of {_engine.BINNINGS}. Got {binning!r}."
            )
        n_classes, n = first_pass.class_max_.shape
        _engine.check_counts_memory(n_classes, n, int(n_bins), first_pass.device)
        self.first_pass = copy.deepcopy(first_pass)
        self.device = first_pass.device
        self.feature_names = self.first_pass.feature_names
        self.n_bins, self.binning = int(n_bins), binning
        self._labelled = first_pass.classes_ is not None
        self.per_class = bool(per_class) and self._labelled
        self.bin_edges_ = _engine.bin_edges(first_pass.max_, self.n_bins, binning)
        k = self.n_bins * (2 if binning == "reference" else 1)
        self._above = torch.zeros(
            (n_classes, k, n), dtype=torch.int64, device=self.device
        )
        self._seen_count = torch.zeros_like(first_pass.class_count_)
        self._seen_max = torch.zeros_like(first_pass.class_max_)
        self._limits = {}

    # -- state ----------------------------------------------------------------

    @property
    def counts_(self):
        """Counts of shape (n_classes, n_neurons, n_bins + 1) in each state."""
        return _kernels.states_from_above(self._above, self._seen_count, self.binning)

    @property
    def hist_(self):
        """Counts of shape (n_neurons, n_bins), all classes."""
        return self.counts_[:, :, 1:].sum(dim=0)

    @property
    def class_hist_(self):
        """Counts of shape (n_classes, n_neurons, n_bins) within each class.

        On the neurons' shared edges; None unless ``per_class``.
        """
        return self.counts_[:, :, 1:] if self.per_class else None

    @property
    def second_pass(self):
        """True: these are second-pass statistics (see :class:`NeuronStatistics`)."""
        return True

    @property
    def n_samples_(self):
        """Samples of the first pass."""
        return self.first_pass.n_samples_

    @property
    def n_neurons_(self):
        """Columns of every batch."""
        return self.first_pass.n_neurons_

    @property
    def classes_(self):
        """Sorted labels of the first pass; None for batches without labels."""
        return self.first_pass.classes_

    @property
    def class_count_(self):
        """Samples of each class in the first pass."""
        return self.first_pass.class_count_

    @property
    def active_count_(self):
        """Values > 0 of each class and neuron in the first pass."""
        return self.first_pass.active_count_

    @property
    def class_max_(self):
        """Largest value of each class and neuron in the first pass, at least 0."""
        return self.first_pass.class_max_

    @property
    def max_(self):
        """Largest value of each neuron in the first pass, at least 0."""
        return self.first_pass.max_

    def _new_classes(self, labels):
        raise ValueError(
            f"The second pass met labels {labels.tolist()} that the first pass did "
            "not see. Both passes must go over the same samples."
        )

    # -- counting ---------------------------------------------------------------

    def update(self, A, y=None):
        """Count one batch: every value in its state, per class and neuron.

        Parameters
        ----------
        A : array-like or Tensor of shape (n_samples, n_neurons)
            One batch of activations, as in the first pass.
        y : array-like or Tensor of shape (n_samples,), default=None
            Class labels of the batch.

        Returns
        -------
        self : HistogramStatistics
            These statistics, updated in place.
        """
        return self._update(A, y)

    def update_from(self, batches, *, probabilities=True):
        """Call :meth:`update` on every batch of ``batches``.

        Parameters
        ----------
        batches : iterable
            The batches of the first pass, again.
        probabilities : bool, default=True
            False skips an extractor's probability columns, for fits that do
            not read them: the backbone's softmax is not computed and those
            columns are not counted. Other batches are counted whole.

        Returns
        -------
        self : HistogramStatistics
            These statistics, updated in place.
        """
        return self._update_from(batches, probabilities)

    def start_batch(self, y, n_rows, n_columns, device=None):
        """Begin a batch that arrives in blocks of columns.

        For batch sources that deliver a batch column block by column block;
        see :meth:`NeuronStatistics.start_batch`.

        Parameters
        ----------
        y : array-like or Tensor of shape (n_rows,), or None
            Class labels of the batch's rows; None for a batch without labels.
        n_rows : int
            Rows of the batch.
        n_columns : int
            Columns of the whole batch, those of the first pass.
        device : str or torch.device, default=None
            Unused: the state lives where the first pass's does.

        Returns
        -------
        rows : Tensor of shape (n_rows,), dtype=int64
            The class row of each sample, on ``self.device``.
        """
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
        counted : bool
            True. This pass does not look for NaN or infinity: the first did,
            and :meth:`check_same_samples` finds a NaN that came since (it
            keeps NaN as the largest value).
        """
        block = _engine.check_batch(block, None)
        if block.device != self.device:
            block = block.to(self.device)
        dtype = _kernels.working_dtype(block.dtype)
        if dtype not in self._limits:
            self._limits[dtype] = _kernels.thresholds(
                self.bin_edges_, dtype, self.binning
            )
        limits = self._limits[dtype]
        _kernels.count_above(block, rows, limits, self._above, self._seen_max, offset)
        return True

    def end_batch(self, rows):
        """Count the samples of a batch once all its blocks are counted.

        Parameters
        ----------
        rows : Tensor of shape (n_rows,)
            What :meth:`start_batch` returned for the batch.
        """
        self._seen_count += torch.bincount(rows, minlength=len(self._seen_count))

    def check_same_samples(self):
        """Raise when this pass did not see the first pass's samples.

        Per class, the number of samples, and per class and neuron, the count
        of values > 0 and the largest value must equal the first pass's: not
        so after a partial second pass, NaN, a backbone that is not
        deterministic, or other data that differ in any of those. (Other data
        with the same sign pattern and the same maxima in every class and
        neuron pass unseen: the check compares counts, not values.)

        Raises
        ------
        ValueError
            Saying what differs.
        """
        first = self.first_pass
        # The first threshold of both binnings is 0: its counts are the values > 0.
        positive = self._above[:, 0]
        if not torch.equal(positive, first.active_count_):
            seen, expected = int(positive.sum()), int(first.active_count_.sum())
            detail = (
                f"counted {seen:,} positive values where the first counted {expected:,}"
                if seen != expected
                else "counted as many positive values as the first, but in other "
                "neurons or classes"
            )
        elif not torch.equal(self._seen_count, first.class_count_):
            detail = (
                f"counted {int(self._seen_count.sum()):,} samples where the first "
                f"counted {first.n_samples_:,}"
            )
        # A backbone gives a sample's activations to within a few float32 ulps
        # depending on the batch it sits in (a shuffled loader), hence the slack.
        elif not torch.allclose(self._seen_max, first.class_max_, rtol=1e-5, atol=0):
            far = ~torch.isclose(self._seen_max, first.class_max_, rtol=1e-5, atol=0)
            c, j = far.nonzero()[0].tolist()
            detail = (
                f"met a largest value of {float(self._seen_max[c, j])!r} in neuron "
                f"{j} where the first met {float(first.class_max_[c, j])!r}"
            )
        else:
            return
        raise ValueError(
            f"The second pass {detail}: both passes must go over the same "
            "samples, all of them, with the same labels, and give the same "
            "activations (a deterministic backbone in eval mode; merge the "
            "second passes of all shards before fitting)."
        )

    # -- merging --------------------------------------------------------------

    def merge(self, other):
        """Statistics of both shards, as one pass over their union would give.

        Both must come from the same first pass (the same edges); their
        counts add.

        Parameters
        ----------
        other : HistogramStatistics
            Second-pass statistics of another shard.

        Returns
        -------
        stats : HistogramStatistics
            A new object.
        """
        self._check_same_pass(other)
        _engine.check_same_columns(self, other)
        same = (
            (self.n_bins, self.binning, self.per_class, self.n_samples_)
            == (other.n_bins, other.binning, other.per_class, other.n_samples_)
            and self._labelled == other._labelled
            and (not self._labelled or np.array_equal(self.classes_, other.classes_))
            and torch.equal(self.bin_edges_, other.bin_edges_.to(self.device))
        )
        if not same:
            raise ValueError(_OTHER_FIRST_PASS)
        out = copy.deepcopy(self)
        out._above += other._above.to(out.device)
        out._seen_count += other._seen_count.to(out.device)
        torch.maximum(out._seen_max, other._seen_max.to(out.device), out=out._seen_max)
        return out

    def _pass_key(self):
        """What second passes that can be summed share: the first pass's
        samples and classes, and the bins."""
        edges = self.bin_edges_.cpu().numpy().tobytes()
        classes = None if self.classes_ is None else tuple(self.classes_.tolist())
        bins = (self.n_bins, self.binning, self.per_class, self.n_samples_)
        return (*bins, classes, hashlib.sha256(edges).hexdigest())

    def all_reduce(self, group=None):
        """Sum (and max) these statistics over the processes of ``group``, in place.

        Every process calls it with its own shard's second pass, begun from
        the all-reduced first pass (:meth:`NeuronStatistics.all_reduce`).

        Parameters
        ----------
        group : ProcessGroup, default=None
            None is the default group.

        Returns
        -------
        self : HistogramStatistics
            These statistics, now those of all processes.
        """
        import torch.distributed as dist

        known = self._agree(group, self._pass_key())
        if len({m[4] for m in known}) > 1:
            raise ValueError(_OTHER_FIRST_PASS)
        dist.all_reduce(self._above, group=group)
        dist.all_reduce(self._seen_count, group=group)
        dist.all_reduce(self._seen_max, op=dist.ReduceOp.MAX, group=group)
        return self
