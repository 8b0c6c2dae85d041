"""Exact statistics of activations that never sit in memory all at once.

Entropy and activation probabilities need only sums over samples (design.md,
section 5): per class and neuron, the largest value and how many values are
positive; per neuron, how many values fall in each bin. The bins need the
maxima first, so an exact fit takes two passes over the data: the first
gathers maxima and the counts for ``P``, the second counts the bins. The state
is ``O(n_neurons x (n_classes + n_bins))`` tensors (plus
``n_classes x n_neurons x n_bins`` counts for per-class entropy), kept on the
device the activations come from.

Both passes are sums, so statistics of shards merge by addition (``+``) and
those of processes by ``torch.distributed`` (:meth:`NeuronStatistics.all_reduce`).
The numbers equal those of the in-memory fit: the same kernels count the same
values against the same edges.

Examples
--------
>>> import numpy as np
>>> from sknap import ActivationEntropy
>>> from sknap.streaming import NeuronStatistics
>>> rng = np.random.default_rng(0)
>>> A = np.maximum(rng.normal(size=(100, 4)), 0)
>>> y = rng.integers(0, 2, size=100)
>>> batches = [(A[:60], y[:60]), (A[60:], y[60:])]
>>> stats = NeuronStatistics().update_from(batches)          # first pass
>>> stats = stats.begin_histograms(n_bins=5).update_from(batches)  # second
>>> streamed = ActivationEntropy(n_bins=5, n_classes=0).fit(stats)
>>> in_memory = ActivationEntropy(n_bins=5, n_classes=0).fit(A, y)
>>> bool(np.all(streamed.neuron_entropy_ == in_memory.neuron_entropy_))
True
"""

import copy
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from scipy import sparse

from . import _device, _histogram, _kernels

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
    samples (``hist_``) and, with ``per_class``, within each class with that
    class's own edges (``class_hist_``). Batches without labels count as one
    class.

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
    hist_ : Tensor of shape (n_neurons, n_bins)
        Counts of the positive values of each neuron in its bins.
    class_bin_edges_, class_hist_ : Tensor of shape (n_classes, n_neurons, ...)
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
        self.class_bin_edges_ = None
        self._labelled = None
        self._above = None
        self._class_above = None
        self._thresholds = {}

    # -- state ----------------------------------------------------------------

    @property
    def max_(self):
        """Largest value of each neuron over all classes, at least 0."""
        if self.class_max_ is None:
            return None
        return self.class_max_.amax(dim=0)

    @property
    def hist_(self):
        """Counts of shape (n_neurons, n_bins) of the second pass."""
        if self._above is None:
            return None
        return _kernels.bins_from_counts(self._above, self.n_bins, self.binning)

    @property
    def class_hist_(self):
        """Counts of shape (n_classes, n_neurons, n_bins) within each class."""
        if self._class_above is None:
            return None
        return _kernels.bins_from_counts(self._class_above, self.n_bins, self.binning)

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
        self._labelled = True
        labels = np.asarray(_to_numpy(y))
        if labels.ndim != 1 or len(labels) != n_rows:
            raise ValueError(
                f"A batch has {n_rows} rows but its labels have shape "
                f"{labels.shape}; give one label per row."
            )
        if len(self.classes_):
            # Common case, every label already seen: no sort per batch.
            pos = np.searchsorted(self.classes_, labels)
            if len(pos) and pos.max() < len(self.classes_):
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
        return self._update(A, y)

    def _update(self, A, y):
        # The first pass looks for NaN and infinity within its counting kernel.
        A = _check_batch(A, self.n_neurons_, self.second_pass)
        self._begin(y, A.shape[1], A.device)
        A = A.to(self.device, non_blocking=True)
        rows = self._class_index(y, A.shape[0])
        count = self._counter(_kernels.working_dtype(A.dtype))
        if self.second_pass:
            count(A, _kernels.labels_of(rows), 0)
            return self
        if not count(A, _kernels.labels_of(rows), 0):
            raise ValueError(NONFINITE_BATCH)
        self.n_samples_ += A.shape[0]
        self.class_count_ += torch.bincount(rows, minlength=len(self.class_count_))
        return self

    def _begin(self, y, n_columns, device):
        """Allocate the state at the first batch (``y`` its labels or None)."""
        if self.class_max_ is None:
            # No class rows yet when labelled: _class_index adds them.
            if y is not None:
                self.classes_ = np.asarray(_to_numpy(y))[:0]
            self._allocate(n_columns, 0 if y is not None else 1, device)

    def _update_from_extractor(self, extractor, X, y, probabilities=True):
        """Count the extractor's blocks inside its forward hooks, while each
        layer's output is in the cache: the rows are never assembled.

        The first pass's kernel checks for NaN and infinity (the extractor
        then names the layer); the second reads the same values. Without
        ``probabilities`` the backbone's probability columns are neither
        computed nor counted (they stay 0), for fits that do not read them.
        """
        n_columns = extractor.n_neurons_ + extractor.n_outputs_
        if self.n_neurons_ is not None and self.n_neurons_ != n_columns:
            raise ValueError(
                f"The extractor makes {n_columns} columns but the earlier batches "
                f"had {self.n_neurons_}; every batch needs the same columns."
            )
        # Per batch, only what changes: the counters are made for the state
        # once (again when new classes grow it), and labels given as an array
        # are looked up once for the whole pass (batches are its slices).
        rows_of_y, address, position, done = None, 0, 0, 0
        move, counter, counted = False, None, None

        def start(labels, n_rows, device):
            nonlocal rows_of_y, address, position, move, counter, counted
            self._begin(labels, n_columns, device)
            if y is None:
                rows = _kernels.labels_of(self._class_index(labels, n_rows))
            else:
                if rows_of_y is None:
                    rows_of_y, _, address = _kernels.labels_of(
                        self._class_index(y, len(y))
                    )
                rows = rows_of_y, position, address and address + 8 * position
                position += n_rows
            state = self._above if self.second_pass else self.class_max_
            if state is not counted:
                move, counter, counted = device != self.device, self._counter(), state
            return rows

        def consume(rows, offset, block):
            if move:
                block = block.to(self.device)
            # The first pass's counter says whether the block was finite.
            return counter(block, rows, offset) is not False

        def finish(rows):
            nonlocal done
            if self.second_pass:
                return
            if y is None:
                labels = rows[0]
                self.n_samples_ += len(labels)
                self.class_count_ += torch.bincount(
                    labels, minlength=len(self.class_count_)
                )
            else:
                done = position

        try:
            extractor._consume_blocks(X, y, start, consume, finish, probabilities)
        finally:
            if done:  # the class counts of the batches counted, all at once
                self.n_samples_ += done
                self.class_count_ += torch.bincount(
                    rows_of_y[:done], minlength=len(self.class_count_)
                )
        return self

    def _counter(self, dtype=torch.float32):
        """``count(block, labels, offset)`` into this state, for blocks in
        ``dtype`` (the thresholds of the second pass are in that dtype)."""
        if not self.second_pass:
            return _kernels.class_stats_counter(
                self.class_max_, self.active_count_, check_finite=True
            )
        shared, by_class = self._thresholds_of(dtype)
        if not self.per_class:
            return _kernels.count_above_counter(shared, self._above)
        return _kernels.count_above_counter(
            shared, self._above, by_class, self._class_above
        )

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
            return self._update_from_extractor(
                batches.extractor, batches.X, batches.y, probabilities
            )
        for A, y in iter_batches(batches):
            self._update(A, y)
        return self

    def _check_same_samples(self):
        """Raise when the second pass did not see the first pass's samples.

        Row 0 of the counts is ``#{v > 0}`` in both binnings: it must equal
        the first pass's active counts, column by column (a partial second
        pass, other data, NaN, or a backbone that is not deterministic).
        """
        if not self.second_pass:
            return
        first = self.active_count_.sum(dim=0)
        same = torch.equal(self._above[0], first)
        if same and self.per_class:
            same = torch.equal(self._class_above[:, 0], self.active_count_)
        if not same:
            seen, expected = int(self._above[0].sum()), int(first.sum())
            detail = (
                f"counted {seen:,} positive values where the first counted {expected:,}"
                if seen != expected
                else "counted as many positive values as the first, but in other "
                "neurons or classes"
            )
            raise ValueError(
                f"The second pass {detail}: both passes must go over the same "
                "samples, all of them, with the same labels, and give the same "
                "activations (a deterministic backbone in eval mode; merge the "
                "second passes of all shards before fitting)."
            )

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
            Also count within each class, with the class's own edges (when
            the batches have labels).

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
        if binning not in _histogram.BINNINGS:
            raise ValueError(
                f"binning must be one of {_histogram.BINNINGS}. Got {binning!r}."
            )
        out = copy.deepcopy(self)
        out.n_bins, out.binning = int(n_bins), binning
        out.per_class = bool(per_class) and bool(self._labelled)
        out.bin_edges_ = _histogram.bin_edges(self.max_, out.n_bins, binning)
        k = out.n_bins * (2 if binning == "reference" else 1)
        out._above = torch.zeros(
            (k, self.n_neurons_), dtype=torch.int64, device=self.device
        )
        if out.per_class:
            C = len(self.classes_)
            flat = _histogram.bin_edges(self.class_max_.reshape(-1), n_bins, binning)
            out.class_bin_edges_ = flat.reshape(C, self.n_neurons_, n_bins + 1)
            out._class_above = torch.zeros(
                (C, k, self.n_neurons_), dtype=torch.int64, device=self.device
            )
        return out

    def _thresholds_of(self, dtype):
        """Thresholds of the bins (shared, per class or None) in ``dtype``."""
        if dtype not in self._thresholds:
            shared = _kernels.thresholds(self.bin_edges_, dtype, self.binning)
            by_class = None
            if self.per_class:
                by_class = _kernels.thresholds(
                    self.class_bin_edges_, dtype, self.binning
                )
            self._thresholds[dtype] = (shared, by_class)
        return self._thresholds[dtype]

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
        if self.n_neurons_ != other.n_neurons_:
            raise ValueError(
                f"Cannot merge statistics of {self.n_neurons_} and "
                f"{other.n_neurons_} columns."
            )
        if self._labelled != other._labelled:
            raise ValueError("Cannot merge statistics with and without labels.")
        if self.second_pass or other.second_pass:
            return self._merge_second(other)
        out = copy.deepcopy(self)
        theirs = copy.deepcopy(other)
        theirs = theirs.to(out.device)
        if out._labelled:
            classes = np.union1d(out.classes_, theirs.classes_)
            out._grow(classes)
            theirs._grow(classes)
        out.n_samples_ += theirs.n_samples_
        out.class_count_ += theirs.class_count_
        out.active_count_ += theirs.active_count_
        torch.maximum(out.class_max_, theirs.class_max_, out=out.class_max_)
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
            raise ValueError(
                "These second-pass statistics started from different first passes "
                "(their edges differ). Merge the shards' first passes, call "
                "begin_histograms on the merged statistics, and count every shard's "
                "second pass from that one object."
            )
        out = copy.deepcopy(self)
        out._above += other._above.to(out.device)
        if out.per_class:
            out._class_above += other._class_above.to(out.device)
        return out

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

        meta = (self.n_neurons_, self._labelled, self.classes_, self.second_pass)
        gathered = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, meta, group=group)
        known = [m for m in gathered if m[0] is not None]
        if not known:
            return self
        if len({m[0] for m in known}) > 1 or len({m[1] for m in known}) > 1:
            raise ValueError(
                "The processes hold statistics of different shapes or some with "
                "and some without labels; every shard needs the same columns."
            )
        if self.second_pass:
            dist.all_reduce(self._above, group=group)
            if self.per_class:
                dist.all_reduce(self._class_above, group=group)
            return self
        n, labelled = known[0][0], known[0][1]
        if self.class_max_ is None:
            self._labelled = labelled
            if labelled:
                self.classes_ = np.asarray(known[0][2])[:0]
            device = self.device or _default_device(group)
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
        out._thresholds = {}
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(out, name, value.to(device))
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_thresholds"] = {}
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
        out._thresholds = {}
        return out


def _default_device(group):
    import torch.distributed as dist

    backend = dist.get_backend(group)
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


NONFINITE_BATCH = (
    "A batch contains NaN or infinity. Remove or impute those values before "
    "computing statistics."
)


def _to_numpy(y):
    return y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y


def _check_batch(A, n_columns, check_finite=True):
    """A 2-D floating tensor, finite, with the expected number of columns."""
    A = _histogram.as_tensor(A) if not isinstance(A, torch.Tensor) else A.detach()
    if A.ndim != 2:
        raise ValueError(
            "Each batch must be a 2-D array of shape (n_samples, n_neurons); got "
            f"shape {tuple(A.shape)}."
        )
    if n_columns is not None and A.shape[1] != n_columns:
        raise ValueError(
            f"A batch has {A.shape[1]} columns but the earlier ones had "
            f"{n_columns}; every batch needs the same columns."
        )
    if not A.is_floating_point():
        A = A.to(torch.float64)
    if check_finite and not _device.all_finite(A):
        raise ValueError(NONFINITE_BATCH)
    return A


# -- batch sources ------------------------------------------------------------


def is_batch_source(X):
    """Whether ``X`` is streamed (statistics or an iterable of batches).

    True for :class:`NeuronStatistics`, a DataLoader, an iterator, and a list
    or other iterable whose first item is a 2-D array or tensor, or an
    ``(activations, labels)`` pair. Arrays, tensors, DataFrames and lists of
    rows are in-memory data.

    Parameters
    ----------
    X : object
        What an estimator's ``fit`` was given.

    Returns
    -------
    streamed : bool
        Whether ``fit`` reads ``X`` batch by batch.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.ones((4, 3))
    >>> is_batch_source(A), is_batch_source([A[:2], A[2:]]), is_batch_source(A.tolist())
    (False, True, False)
    """
    if isinstance(X, NeuronStatistics | torch.utils.data.DataLoader):
        return True
    if (
        isinstance(X, np.ndarray | torch.Tensor | str | bytes)
        or hasattr(X, "__array__")
        or sparse.issparse(X)
    ):
        return False
    if isinstance(X, Iterator):
        return True
    if isinstance(X, list | tuple):
        if not X:
            return False
        first = X[0]
        if isinstance(first, tuple | list) and len(first) == 2:
            first = first[0]
        return getattr(first, "ndim", None) == 2
    return isinstance(X, Iterable) and not isinstance(X, dict)


def iter_batches(batches):
    """Yield ``(A, y)`` from arrays, tensors, or ``(A, y)`` pairs."""
    for item in batches:
        if isinstance(item, tuple | list) and len(item) == 2:
            yield item[0], item[1]
        else:
            yield item, None


class ActivationBatches:
    """The rows of :meth:`ActivationExtractor.transform`, computed batch by batch.

    Made by :meth:`ActivationExtractor.batches`. Every iteration runs the
    backbone over the data again and yields ``(Z, labels)``, ``Z`` a float32
    tensor on the extractor's device, so that a two-pass fit never holds more
    than one batch.

    Parameters
    ----------
    extractor : ActivationExtractor
        A fitted extractor.
    X : array-like, Tensor, Dataset or DataLoader
        Its inputs.
    y : array-like of shape (n_samples,), default=None
        Labels, cut into batches along with ``X``.

    Attributes
    ----------
    extractor : ActivationExtractor
        The fitted extractor.
    feature_names : ndarray of str
        Names of the columns of ``Z`` (they mark the probability block).

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import ActivationExtractor
    >>> from sknap.toy import make_mlp
    >>> X = np.ones((10, 4), dtype=np.float32)
    >>> extractor = ActivationExtractor(make_mlp(4, 3, hidden=(5,)), batch_size=4)
    >>> batches = extractor.fit(X).batches(X, np.arange(10) % 3)
    >>> [(tuple(Z.shape), labels.tolist()) for Z, labels in batches][-1]
    ((2, 8), [2, 0])
    """

    def __init__(self, extractor, X, y=None):
        self.extractor = extractor
        self.X = X
        self.y = y
        self.feature_names = extractor.get_feature_names_out()

    def __iter__(self):
        return self.extractor._iter_blocks(self.X, self.y)

    def __repr__(self):
        return f"ActivationBatches({self.extractor!r})"


def _check_reiterable(batches, what):
    if isinstance(batches, Iterator):
        raise TypeError(
            f"{what} needs two passes over the batches, but an iterator (such as "
            "a generator) can be read only once. Pass a list, a DataLoader, "
            "ActivationExtractor.batches(X, y), or any object whose iteration "
            "restarts; or compute NeuronStatistics yourself."
        )


def compute_statistics(batches, *, n_bins=10, binning="right", per_class=True):
    """Both passes over ``batches``: statistics that both estimators fit from.

    Parameters
    ----------
    batches : re-iterable
        Arrays or tensors of shape (n_samples, n_columns), or
        ``(activations, labels)`` pairs; a list, a DataLoader or
        :meth:`ActivationExtractor.batches`, which runs the backbone again on
        the second pass.
    n_bins : int, default=10
        Number of equal bins ``R``.
    binning : {"right", "reference"}, default="right"
        As in :class:`~sknap.ActivationEntropy`.
    per_class : bool, default=True
        Also count within each class (when the batches have labels).

    Returns
    -------
    stats : NeuronStatistics
        Second-pass statistics.

    Examples
    --------
    >>> import numpy as np
    >>> from sknap import ActivationEntropy
    >>> A = np.maximum(np.random.default_rng(0).normal(size=(100, 3)), 0)
    >>> stats = compute_statistics([A[:60], A[60:]], n_bins=4)
    >>> stats.n_samples_, tuple(stats.hist_.shape)
    (100, (3, 4))
    >>> entropy = ActivationEntropy(n_bins=4, n_classes=0).fit(stats)
    >>> entropy.neuron_entropy_.shape
    (3,)
    """
    stats = _two_passes(batches, "compute_statistics", n_bins, binning, per_class)
    if not stats.second_pass:
        raise ValueError("The batches are empty: there is nothing to count.")
    return stats


def _two_passes(batches, what, n_bins, binning, per_class, probabilities=True):
    """Second-pass statistics of ``batches``; the empty first pass if no batch.

    Without ``probabilities``, an extractor's probability columns are not
    counted (see ``NeuronStatistics._update_from_extractor``).
    """
    _check_reiterable(batches, what)
    first = NeuronStatistics()._update_all(batches, probabilities)
    if first.class_max_ is None:
        return first
    second = first.begin_histograms(n_bins, binning=binning, per_class=per_class)
    return second._update_all(batches, probabilities)
