"""Exact statistics of activations that never sit in memory all at once.

Entropy and activation probabilities need only sums over samples
(docs/definitions.md): per class and neuron, the largest value and how many
values are positive; per neuron, how many values fall in each bin. The bins need the
maxima first, so an exact fit takes two passes over the data: the first
gathers maxima and the counts for ``P``, the second counts the bins. The second
pass counts, per class, neuron and state (inactive or one of the bins on the
neuron's shared edges), one integer: ``O(n_classes x n_neurons x n_bins)``,
kept on the device the activations come from.

Both passes are sums, so statistics of shards merge by addition (``+``) and
those of processes by ``torch.distributed`` (:meth:`NeuronStatistics.all_reduce`).
An in-memory fit is these statistics over one batch, so the numbers are equal
by construction. :class:`NeuronStatistics` shows both passes at work.
"""

import copy
import hashlib

import numpy as np
import torch

from . import _engine, _kernels
from ._engine_sources import (
    ActivationBatches,
    compute_statistics,
    count_extractor_pass,
    is_batch_source,
    iter_batches,
)

__all__ = [
    "ActivationBatches",
    "NeuronStatistics",
    "compute_statistics",
    "is_batch_source",
]


class NeuronStatistics:
    """Mergeable sums over activation batches: maxima, active counts, histograms.

    A first pass (:meth:`update` on every batch) records, for every class
    ``c`` and neuron ``j``, the largest value ``class_max_[c, j]`` (0 when
    none is positive) and the number of values > 0 ``active_count_[c, j]``,
    and the number of samples of each class. :meth:`begin_histograms` then
    fixes the bin edges from those maxima and returns the statistics of the
    second pass, whose :meth:`update` counts every value in its bin, for all
    class and neuron in its state: inactive or one of the bins on the
    neuron's shared edges (``counts_``); ``hist_`` sums it over classes and
    ``class_hist_`` is its per-class slice. Batches without labels count as
    one class.

    Statistics of two shards merge with ``a + b``; those of processes with
    :meth:`all_reduce`. Second-pass statistics merge when they started from
    the same (merged) first pass.

    :class:`~sknap.ActivationEntropy` fits from second-pass statistics and
    :class:`~sknap.ActivationProbabilityFeatures` from either.

    Parameters
    ----------
    device : str, torch.device or None, default=None
        Where the state lives; None takes the device of the first batch.

    Attributes
    ----------
    n_samples_ : int
        Samples of the first pass.
    n_neurons_ : int or None
        Columns of every batch (activations and probabilities alike).
    classes_ : ndarray of shape (n_classes,) or None
        Sorted labels seen in the first pass; None for batches without labels.
    class_count_ : Tensor of shape (n_classes,)
        Samples of each class (one entry when there are no labels).
    active_count_ : Tensor of shape (n_classes, n_neurons)
        Values > 0 of each class and neuron.
    class_max_ : Tensor of shape (n_classes, n_neurons), dtype=float64
        Largest value of each class and neuron, at least 0.
    max_ : Tensor of shape (n_neurons,), dtype=float64
        Largest value of each neuron, at least 0.
    n_bins, binning, per_class
        Set by :meth:`begin_histograms`; ``n_bins`` is None in the first pass.
    bin_edges_ : Tensor of shape (n_neurons, n_bins + 1)
        Edges of the second pass.
    counts_ : Tensor of shape (n_classes, n_neurons, n_bins + 1)
        Values of each class and neuron in each state: ``counts_[c, j, 0]``
        those ``<= 0``, ``counts_[c, j, k + 1]`` those in bin ``k``.
    hist_ : Tensor of shape (n_neurons, n_bins)
        Counts of the positive values of each neuron in its bins.
    class_hist_ : Tensor of shape (n_classes, n_neurons, n_bins)
        The same within each class (``per_class`` and labels).
    feature_names : ndarray of str or None
        Column names, when the batches came from
        :meth:`ActivationExtractor.batches`; they tell the estimators which
        columns are probabilities.

    See Also
    --------
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
    >>> entropy = ActivationEntropy(n_bins=5, n_classes=0).fit(second)
    >>> in_memory = ActivationEntropy(n_bins=5, n_classes=0).fit(A)
    >>> bool(np.allclose(entropy.neuron_entropy_, in_memory.neuron_entropy_))
    True
    >>> proba = ActivationProbabilityFeatures(n_classes=0).fit(first)
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
        self.n_bins = None
        self.binning = None
        self.per_class = None
        self.bin_edges_ = None
        self._above = None
        self._labelled = None
        self._seen_count = None
        self._seen_max = None
        self._limits = {}

    # -- state ----------------------------------------------------------------

    @property
    def max_(self):
        """Largest value of each neuron over all classes, at least 0."""
        if self.class_max_ is None:
            return None
        return self.class_max_.amax(dim=0)

    @property
    def counts_(self):
        """Counts of shape (n_classes, n_neurons, n_bins + 1) in each state."""
        if self._above is None:
            return None
        return _kernels.states_from_above(self._above, self._seen_count, self.binning)

    @property
    def hist_(self):
        """Counts of shape (n_neurons, n_bins) of the second pass, all classes."""
        counts = self.counts_
        return None if counts is None else counts[:, :, 1:].sum(dim=0)

    @property
    def class_hist_(self):
        """Counts of shape (n_classes, n_neurons, n_bins) within each class.

        On the neurons' shared edges; None unless ``per_class``.
        """
        counts = self.counts_ if self.per_class else None
        return None if counts is None else counts[:, :, 1:]

    @property
    def second_pass(self):
        """Whether these are histogram statistics (after begin_histograms)."""
        return self.n_bins is not None

    def _allocate(self, n, n_classes, device):
        self.n_neurons_ = n
        self.device = device if self.device is None else self.device
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

    def _class_index(self, y, n_rows):
        """Row of each sample's class, as an int64 tensor on the device."""
        if y is None:
            if self._labelled:
                raise ValueError(
                    "A batch came without labels after batches with labels. Yield "
                    "(activations, labels) pairs for every batch, or for none."
                )
            self._labelled = False
            return torch.zeros(n_rows, dtype=torch.int64, device=self.device)
        if self._labelled is False:
            raise ValueError(
                "A batch came with labels after batches without labels. Yield "
                "(activations, labels) pairs for every batch, or for none."
            )
        labels = _engine.check_labels(y, n_rows)
        self._labelled = True
        if len(labels) and len(self.classes_):
            mine = _engine.kind_of(self.classes_)
            theirs = _engine.kind_of(labels)
            if mine != theirs:
                raise ValueError(
                    f"A batch has {theirs} labels but earlier batches had {mine} "
                    "labels; class labels must be all numbers or all strings."
                )
            # Common case, every label already seen: no sort per batch.
            pos = np.searchsorted(self.classes_, labels)
            if pos.max() < len(self.classes_):
                if np.array_equal(self.classes_[pos], labels):
                    return torch.from_numpy(pos.astype(np.int64, copy=False)).to(
                        self.device
                    )
        uniq, inverse = np.unique(labels, return_inverse=True)
        pos = np.searchsorted(self.classes_, uniq)
        known = pos < len(self.classes_)
        known[known] = self.classes_[pos[known]] == uniq[known]
        if not known.all():
            if self.second_pass:
                raise ValueError(
                    f"The second pass met labels {uniq[~known].tolist()} that the "
                    "first pass did not see. Both passes must go over the same "
                    "samples."
                )
            self._grow(np.union1d(self.classes_, uniq[~known]))
            pos = np.searchsorted(self.classes_, uniq)
        rows = pos[inverse]
        return torch.as_tensor(rows, dtype=torch.int64).to(self.device)

    # -- the passes -----------------------------------------------------------

    def update(self, A, y=None):
        """Add one batch: first-pass counts, or bin counts in the second pass.

        The second pass is the statistics :meth:`begin_histograms` returns.

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
        # The kernels look for NaN and infinity in the first pass; the second
        # pass's check compares its counts and maxima with the first's.
        A = _engine.check_batch(A, self.n_neurons_)
        self._begin(y, A.shape[1], A.device)
        A = A.to(self.device, non_blocking=True)
        rows = self._class_index(y, A.shape[0])
        if not self._count(A, rows, 0):
            raise ValueError(_engine.NONFINITE_BATCH)
        self._add_samples(rows)
        return self

    def _begin(self, y, n_columns, device):
        """Allocate the state at the first batch (``y`` its labels or None)."""
        if self.class_max_ is None:
            # No class rows yet when labelled: _class_index adds them.
            if y is not None:
                self.classes_ = np.asarray(_engine.to_numpy(y))[:0]
            self._allocate(n_columns, 0 if y is not None else 1, device)

    def _count(self, A, rows, offset):
        """Count block ``A`` (columns ``offset ..``) of a batch whose rows are
        of classes ``rows``; False when the first pass met NaN or infinity."""
        if not self.second_pass:
            return _kernels.first_pass(
                A, rows, self.class_max_, self.active_count_, offset
            )
        dtype = _kernels.working_dtype(A.dtype)
        if dtype not in self._limits:
            self._limits[dtype] = _kernels.thresholds(
                self.bin_edges_, dtype, self.binning
            )
        limits = self._limits[dtype]
        _kernels.count_above(A, rows, limits, self._above, self._seen_max, offset)
        return True

    def _add_samples(self, rows):
        """Count the samples of a batch, once all its columns are counted."""
        added = torch.bincount(rows, minlength=len(self.class_count_))
        if self.second_pass:
            self._seen_count += added
        else:
            self.n_samples_ += len(rows)
            self.class_count_ += added

    def update_from(self, batches):
        """Call :meth:`update` on every batch of ``batches``.

        Parameters
        ----------
        batches : iterable
            Arrays or tensors of shape (n_samples, n_neurons), or
            ``(activations, labels)`` pairs, such as
            :meth:`ActivationExtractor.batches` yields.

        Returns
        -------
        self : NeuronStatistics
            These statistics, updated in place.
        """
        return self._update_all(batches)

    def _update_all(self, batches, probabilities=True):
        names = getattr(batches, "feature_names", None)
        if names is not None:
            self.feature_names = np.asarray(names, dtype=object)
        if isinstance(batches, ActivationBatches):
            count_extractor_pass(
                self, batches.extractor, batches.X, batches.y, probabilities
            )
            return self
        for A, y in iter_batches(batches):
            self.update(A, y)
        return self

    def _check_same_samples(self):
        """Raise when the second pass did not see the first pass's samples."""
        if self.second_pass:
            _engine.check_same_samples(self)

    def begin_histograms(self, n_bins=10, *, binning="right", per_class=True):
        """Statistics of the second pass, with edges from these maxima.

        Call it after the first pass over all the data (and after merging the
        shards' first passes), then :meth:`update` the result with the same
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
        stats : NeuronStatistics
            A new object; this one is left as it is.
        """
        if self.class_max_ is None:
            raise ValueError(
                "begin_histograms needs the first pass: call update() on every "
                "batch first."
            )
        if self.second_pass:
            raise ValueError("These statistics are already of the second pass.")
        if binning not in _engine.BINNINGS:
            raise ValueError(
                f"binning must be one of {_engine.BINNINGS}. Got {binning!r}."
            )
        n_classes, n = self.class_max_.shape
        _engine.check_counts_memory(n_classes, n, int(n_bins), self.device)
        out = copy.deepcopy(self)
        out.n_bins, out.binning = int(n_bins), binning
        out.per_class = bool(per_class) and bool(self._labelled)
        out.bin_edges_ = _engine.bin_edges(self.max_, out.n_bins, binning)
        k = out.n_bins * (2 if binning == "reference" else 1)
        out._above = torch.zeros(
            (n_classes, k, n), dtype=torch.int64, device=self.device
        )
        out._seen_count = torch.zeros_like(self.class_count_)
        out._seen_max = torch.zeros_like(self.class_max_)
        return out

    # -- merging --------------------------------------------------------------

    def __add__(self, other):
        return self.merge(other)

    def merge(self, other):
        """Statistics of both shards, as one pass over their union would give.

        First-pass statistics add (counts) and take the larger (maxima), with
        classes aligned by label. Second-pass statistics must come from the
        same first pass (the same edges); their bin counts add.

        Parameters
        ----------
        other : NeuronStatistics
            Statistics of another shard.

        Returns
        -------
        stats : NeuronStatistics
            A new object.
        """
        if not isinstance(other, NeuronStatistics):
            return NotImplemented
        if other.class_max_ is None:
            return copy.deepcopy(self)
        if self.class_max_ is None:
            return copy.deepcopy(other)
        _engine.check_same_columns(self, other)
        if self._labelled != other._labelled:
            raise ValueError("Cannot merge statistics with and without labels.")
        if self.second_pass or other.second_pass:
            return self._merge_second(other)
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

    def _merge_second(self, other):
        if not (self.second_pass and other.second_pass):
            raise ValueError(
                "Cannot merge first-pass with second-pass statistics: merge the "
                "first passes, call begin_histograms on the result, and count each "
                "shard's second pass from it."
            )
        same = (
            self.n_bins == other.n_bins
            and self.binning == other.binning
            and self.per_class == other.per_class
            and torch.equal(self.bin_edges_, other.bin_edges_.to(self.device))
            and self.n_samples_ == other.n_samples_
            and (not self._labelled or np.array_equal(self.classes_, other.classes_))
        )
        if not same:
            raise ValueError(_OTHER_FIRST_PASS)
        out = copy.deepcopy(self)
        out._above += other._above.to(out.device)
        out._seen_count += other._seen_count.to(out.device)
        torch.maximum(out._seen_max, other._seen_max.to(out.device), out=out._seen_max)
        return out

    def _pass_key(self):
        """What second passes that can be summed share: the first pass and
        the bins; None in the first pass."""
        if not self.second_pass:
            return None
        edges = self.bin_edges_.cpu().numpy().tobytes()
        classes = None if self.classes_ is None else tuple(self.classes_.tolist())
        bins = (self.n_bins, self.binning, self.per_class, self.n_samples_)
        return (*bins, classes, hashlib.sha256(edges).hexdigest())

    def all_reduce(self, group=None):
        """Sum (and max) these statistics over the processes of ``group``, in place.

        Every process calls it with its own shard's statistics; afterwards
        each holds those of all shards. Run it on the first-pass statistics
        before :meth:`begin_histograms`, so that every process uses the same
        edges, and again on the second-pass statistics. Works with any
        backend that supports SUM and MAX (gloo on the CPU, NCCL on CUDA).

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

        names = None if self.feature_names is None else tuple(self.feature_names)
        meta = (self.n_neurons_, self._labelled, self.classes_, self.second_pass)
        gathered = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, (*meta, names, self._pass_key()), group=group)
        known = [m for m in gathered if m[0] is not None]
        if not known:
            return self
        named = {m[4] for m in known if m[4] is not None}
        if len({m[0] for m in known}) > 1 or len({m[1] for m in known}) > 1:
            raise ValueError(
                "The processes hold statistics of different shapes or some with "
                "and some without labels; every shard needs the same columns."
            )
        if len(named) > 1:
            raise ValueError(
                "The processes hold statistics of different columns (their "
                "feature_names differ); every shard needs the same layers."
            )
        if self.second_pass:
            if len({m[5] for m in known}) > 1:
                raise ValueError(_OTHER_FIRST_PASS)
            dist.all_reduce(self._above, group=group)
            dist.all_reduce(self._seen_count, group=group)
            dist.all_reduce(self._seen_max, op=dist.ReduceOp.MAX, group=group)
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

    def to(self, device):
        """These statistics with every tensor on ``device`` (a copy if it moves).

        Parameters
        ----------
        device : str or torch.device
            Where the tensors go.

        Returns
        -------
        stats : NeuronStatistics
            ``self`` when already there, else a copy.
        """
        device = torch.device(device)
        if self.device is not None and self.device == device:
            return self
        out = copy.copy(self)
        out.device = device
        out._limits = {}
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(out, name, value.to(device))
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_limits"] = {}
        return state

    def __deepcopy__(self, memo):
        # Tensors cloned, arrays copied (their items, names and labels, are
        # immutable: copy.deepcopy copied each of a thousand names one by one).
        out = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(out, name, value.clone())
            elif isinstance(value, np.ndarray):
                setattr(out, name, value.copy())
        out._limits = {}
        return out


_OTHER_FIRST_PASS = (
    "These second-pass statistics started from different first passes (their "
    "edges, bins or classes differ). Merge the shards' first passes, call "
    "begin_histograms on the merged statistics, and count every shard's second "
    "pass from that one object."
)
