"""What the statistics of both passes share: labels, batches, copies.

:class:`~sknap.streaming.NeuronStatistics` (the first pass) and
:class:`~sknap.streaming.HistogramStatistics` (the second) derive from
:class:`CountingPass`. Each counts a batch with the same three steps,
``rows = start_batch(y, n_rows, n_columns, device)``, ``count_block(block,
rows, offset)`` for every block of columns, ``end_batch(rows)``: ``update``
gives the whole batch as one block, the extractor's pass one block per layer.
Labels become class rows by one implementation (:meth:`CountingPass._class_index`):
the first pass adds the labels it meets, the second refuses those the first
did not see.
"""

import copy

import numpy as np
import torch

from . import _engine
from ._engine_sources import ActivationBatches, count_extractor_pass, iter_batches

__all__ = ["MIXED_PASSES", "CountingPass", "check_label_kinds"]

MIXED_PASSES = (
    "Cannot merge first-pass with second-pass statistics (NeuronStatistics and "
    "HistogramStatistics): merge the shards' first passes, call begin_histograms "
    "on the result, and count each shard's second pass from that one object."
)


def check_label_kinds(classes):
    """Raise when some of the label arrays ``classes`` hold numbers and others
    strings (merging them would turn the numbers into strings)."""
    kinds = {_engine.kind_of(c) for c in classes if c is not None and len(c)}
    if len(kinds) > 1:
        raise ValueError(
            "The statistics hold number labels in some shards and string labels "
            "in others; class labels must be all numbers or all strings. Count "
            "every shard with labels of one type."
        )


class CountingPass:
    """Base of :class:`~sknap.streaming.NeuronStatistics` and
    :class:`~sknap.streaming.HistogramStatistics`.

    A subclass has ``device``, ``n_neurons_``, ``classes_`` (None without
    labels), ``feature_names`` and ``_labelled`` (None until the first batch
    says whether batches carry labels), the block protocol (``start_batch``,
    ``count_block``, ``end_batch``), ``merge``, and ``_new_classes``.
    """

    # Attributes that hold what is rebuilt on demand: emptied in copies.
    _caches = ()

    # -- labels -----------------------------------------------------------------

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
            self._new_classes(uniq[~known])
            pos = np.searchsorted(self.classes_, uniq)
        rows = pos[inverse]
        return torch.as_tensor(rows, dtype=torch.int64).to(self.device)

    def _new_classes(self, labels):
        """Take in the sorted ``labels`` no batch had before, or refuse them."""
        raise NotImplementedError

    def _check_columns(self, n_columns):
        if self.n_neurons_ is not None and n_columns != self.n_neurons_:
            raise ValueError(
                f"A batch has {n_columns} columns but the earlier ones had "
                f"{self.n_neurons_}; every batch needs the same columns."
            )

    # -- batches ----------------------------------------------------------------

    def _update(self, A, y):
        """Count batch ``A`` (labels ``y`` or None) as one block."""
        A = _engine.check_batch(A, None)  # start_batch checks the columns
        rows = self.start_batch(y, A.shape[0], A.shape[1], A.device)
        A = A.to(self.device, non_blocking=True)
        if not self.count_block(A, rows, 0):
            raise ValueError(_engine.NONFINITE_BATCH)
        self.end_batch(rows)
        return self

    def _update_from(self, batches, probabilities):
        """Count every batch of ``batches``; an extractor's inside its hooks."""
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

    # -- merging ----------------------------------------------------------------

    def __add__(self, other):
        if not isinstance(other, CountingPass):
            return NotImplemented
        return self.merge(other)

    def _check_same_pass(self, other):
        """Raise unless ``other`` is statistics of the same pass as these."""
        if not isinstance(other, CountingPass):
            raise TypeError(
                f"{type(self).__name__} merges with statistics of the same pass; "
                f"got {type(other).__name__}."
            )
        if type(other) is not type(self):
            raise ValueError(MIXED_PASSES)

    def _agree(self, group, key):
        """What every process of ``group`` holds, once all can be reduced
        together: ``(n_neurons_, labelled, classes_, names, key)`` of the
        processes that counted a batch."""
        import torch.distributed as dist

        names = None if self.feature_names is None else tuple(self.feature_names)
        mine = (self.n_neurons_, self._labelled, self.classes_, names, key)
        gathered = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, (type(self).__name__, mine), group=group)
        if len({kind for kind, _ in gathered}) > 1:
            raise ValueError(
                "Some processes called all_reduce on first-pass statistics and "
                "others on second-pass ones; every process must reduce the same "
                "pass: all first passes, then all second passes."
            )
        known = [m for _, m in gathered if m[0] is not None]
        check_label_kinds([m[2] for m in known])
        if len({m[0] for m in known}) > 1 or len({m[1] for m in known}) > 1:
            raise ValueError(
                "The processes hold statistics of different shapes or some with "
                "and some without labels; every shard needs the same columns."
            )
        if len({m[3] for m in known if m[3] is not None}) > 1:
            raise ValueError(
                "The processes hold statistics of different columns (their "
                "feature_names differ); every shard needs the same layers."
            )
        return known

    # -- copies -----------------------------------------------------------------

    def to(self, device):
        """These statistics with every tensor on ``device`` (a copy if it moves).

        Parameters
        ----------
        device : str or torch.device
            Where the tensors go.

        Returns
        -------
        stats : NeuronStatistics or HistogramStatistics
            ``self`` when already there, else a copy of the same class.
        """
        device = torch.device(device)
        if self.device is not None and self.device == device:
            return self
        out = copy.copy(self)
        out.device = device
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor | CountingPass):
                setattr(out, name, value.to(device))
        for name in self._caches:
            setattr(out, name, {})
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in self._caches:
            state[name] = {}
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
            elif isinstance(value, CountingPass):
                setattr(out, name, copy.deepcopy(value, memo))
        for name in self._caches:
            setattr(out, name, {})
        return out
