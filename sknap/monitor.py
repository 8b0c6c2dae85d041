"""Watch activation-pattern entropy and accuracy while a model trains.

:class:`ActivationMonitor` is dropped into a plain PyTorch training loop:
call :meth:`~ActivationMonitor.step` after each optimiser step or
:meth:`~ActivationMonitor.epoch_end` after each epoch, and every ``every``
steps or epochs it records the entropy (total, normalized, per layer) and the
accuracy on the data it holds. It is also a ``callback`` for
:func:`sknap.training.train_classifier`, and writes each record to
TensorBoard when given a ``writer`` (a log folder or a
``torch.utils.tensorboard.SummaryWriter``; needs the ``tensorboard`` package,
the extra ``tensorboard``).

Where the training framework is installed, the same monitor comes as its
callback:

* :class:`SkorchActivationMonitor` (skorch; the extra ``skorch``) writes into
  the net's history;
* :class:`LightningActivationMonitor` (PyTorch Lightning, ``lightning`` or
  ``pytorch_lightning``; the extra ``lightning``) logs with
  ``LightningModule.log``, so every logger of the trainer (TensorBoard, CSV,
  ...) receives the values.

This module imports only sknap's library and, when present, these packages.
"""

import importlib.util
import warnings

import numpy as np

from ._device import module_device
from ._entropy import ActivationEntropy
from ._extraction import ActivationExtractor
from .exceptions import DeadNeuronWarning
from .statistics import backbone_accuracy, correlation

__all__ = ["ActivationMonitor"]


class ActivationMonitor:
    """Record entropy and accuracy every ``every`` epochs or steps.

    Parameters
    ----------
    X : array-like or Tensor of shape (n_samples, ...)
        Inputs on which entropy and accuracy are measured (a training subset
        keeps it cheap: each measurement is one forward pass over ``X``).
    y : array-like of shape (n_samples,)
        Their labels (integers ``0 .. n_classes - 1``).
    X_test, y_test : array-like, default=None
        Optional held-out data; its accuracy is recorded as ``test_acc``.
    every : int, default=1
        Measure every ``every``-th call of :meth:`step` (``unit="step"``) or of
        :meth:`epoch_end` (``unit="epoch"``).
    unit : {"epoch", "step"}, default="epoch"
        Which calls count.
    layers : see ActivationExtractor, default=None
        Layers to read; None is every ``nn.ReLU``.
    reduce : str or callable, default="mean"
        How conv maps become neurons (see ActivationExtractor).
    n_bins : int, default=10
        Histogram bins R.
    batch_size : int, default=256
        Samples per forward pass.
    device : str, default=None
        Where to run the forward pass; None is where the model's weights are,
        so nothing is copied.
    writer : str, Path or SummaryWriter, default=None
        Where to write each record for TensorBoard: a log folder (a
        ``torch.utils.tensorboard.SummaryWriter`` is made there at the first
        measurement; :meth:`close` closes it) or a writer of your own (anything
        with ``add_scalar``, which you close). Scalars are tagged
        ``nap/entropy``, ``nap/normalized_entropy``, ``nap/train_acc``,
        ``nap/test_acc``, ``nap/n_dead``, ``nap/layer_entropy/<layer>`` and
        ``nap/<key>`` for numbers passed to :meth:`measure`; their step is the
        epoch (``unit="epoch"``) or the step count (``unit="step"``). None
        writes nothing.

    Attributes
    ----------
    history : list of dict
        One dict per measurement: ``epoch``, ``step``, ``train_acc``
        (accuracy on ``X``), ``test_acc`` (when ``X_test`` is given),
        ``entropy``, ``normalized_entropy``, ``n_dead``, ``layer_entropy``.

    Examples
    --------
    >>> import torch
    >>> from sknap.monitor import ActivationMonitor
    >>> from sknap.toy import make_mlp
    >>> X = torch.randn(64, 4)
    >>> y = (X[:, 0] > 0).long()
    >>> model = make_mlp(4, 2, hidden=(8,), random_state=0)
    >>> optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    >>> monitor = ActivationMonitor(X, y, every=2)
    >>> for epoch in range(4):
    ...     optimizer.zero_grad()
    ...     torch.nn.functional.cross_entropy(model(X), y).backward()
    ...     optimizer.step()
    ...     _ = monitor.epoch_end(model)
    >>> [record["epoch"] for record in monitor.history]
    [2, 4]
    >>> sorted(monitor.history[-1]["layer_entropy"])
    ['relu1']

    The same records in TensorBoard (``tensorboard --logdir runs``):

    >>> import tempfile
    >>> log_dir = tempfile.mkdtemp()
    >>> monitor = ActivationMonitor(X, y, writer=log_dir)
    >>> _ = monitor.epoch_end(model)
    >>> monitor.close()
    """

    def __init__(
        self,
        X,
        y,
        *,
        X_test=None,
        y_test=None,
        every=1,
        unit="epoch",
        layers=None,
        reduce="mean",
        n_bins=10,
        batch_size=256,
        device=None,
        writer=None,
    ):
        if unit not in ("epoch", "step"):
            raise ValueError(
                f"The 'unit' parameter of ActivationMonitor must be 'epoch' or "
                f"'step'. Got {unit!r} instead."
            )
        if int(every) < 1:
            raise ValueError(
                "The 'every' parameter of ActivationMonitor must be an int >= 1. "
                f"Got {every!r} instead."
            )
        self.X, self.y = X, np.asarray(y)
        self.X_test = X_test
        self.y_test = None if y_test is None else np.asarray(y_test)
        self.every = int(every)
        self.unit = unit
        self.layers = layers
        self.reduce = reduce
        self.n_bins = n_bins
        self.batch_size = batch_size
        self.device = device
        self.writer = writer
        self._summary_writer = None  # made from a log folder at first use
        self.history = []
        self.epoch = 0
        self.n_steps = 0

    def step(self, model):
        """Count one optimiser step; measure when the step count is due.

        Parameters
        ----------
        model : torch.nn.Module
            The model being trained.

        Returns
        -------
        record : dict or None
            The measurement, or None when none was due.
        """
        self.n_steps += 1
        return self._measure_if_due(model, "step", self.n_steps)

    def epoch_end(self, model):
        """Count one epoch; measure when the epoch count is due.

        Parameters
        ----------
        model : torch.nn.Module
            The model being trained.

        Returns
        -------
        record : dict or None
            The measurement, or None when none was due.
        """
        self.epoch += 1
        return self._measure_if_due(model, "epoch", self.epoch)

    def _measure_if_due(self, model, unit, count):
        """Measure when ``unit`` is the counted one and ``count`` is due."""
        if self.unit == unit and count % self.every == 0:
            return self.measure(model)
        return None

    def __call__(self, model, epoch):
        """``callback(model, epoch)`` of :func:`sknap.training.train_classifier`.

        Parameters
        ----------
        model : torch.nn.Module
            The model being trained.
        epoch : int
            The epoch just finished, from 1.

        Returns
        -------
        record : dict or None
            The measurement, or None when none was due.
        """
        self.epoch = int(epoch) - 1
        return self.epoch_end(model)

    def measure(self, model, **extra):
        """Measure now, whatever the counters say, and append to ``history``.

        Parameters
        ----------
        model : torch.nn.Module
            The model being trained; its train/eval mode is restored after.
        **extra
            Added to the record (a loss, a learning rate).

        Returns
        -------
        record : dict
            The measurement, also appended to ``history``.
        """
        extractor = ActivationExtractor(
            model,
            layers=self.layers,
            reduce=self.reduce,
            batch_size=self.batch_size,
            device=self.device if self.device is not None else module_device(model),
        )
        Z = extractor.fit_transform(self.X)
        n_outputs = extractor.n_outputs_
        est = ActivationEntropy(n_bins=self.n_bins, per_class=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeadNeuronWarning)
            est.fit(Z, layout=extractor.layout_)
        record = {
            "epoch": self.epoch,
            "step": self.n_steps,
            "train_acc": backbone_accuracy(Z, self.y, n_outputs),
            "entropy": float(est.entropy_),
            "normalized_entropy": float(est.normalized_entropy_),
            "n_dead": int(est.n_dead_neurons_),
            "layer_entropy": est.layer_entropy(extractor.get_feature_names_out()),
        }
        if self.X_test is not None:
            Z_test = extractor.transform(self.X_test)
            record["test_acc"] = backbone_accuracy(Z_test, self.y_test, n_outputs)
        record.update(extra)
        self.history.append(record)
        self._write(record)
        return record

    def _summary(self):
        """The writer to use, made from a log folder the first time; or None."""
        if self.writer is None or hasattr(self.writer, "add_scalar"):
            return self.writer
        if self._summary_writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError(
                    "ActivationMonitor(writer=<folder>) writes with "
                    "torch.utils.tensorboard, which needs the tensorboard package: "
                    "`pip install tensorboard`, or sknap's extra "
                    '(`pip install ".[tensorboard]"` in a clone of sknap).'
                ) from err
            self._summary_writer = SummaryWriter(log_dir=str(self.writer))
        return self._summary_writer

    def _write(self, record):
        """Write ``record``'s numbers to TensorBoard, when there is a writer."""
        writer = self._summary()
        if writer is None:
            return
        step = record["step"] if self.unit == "step" else record["epoch"]
        for key, value in record.items():
            if key in ("epoch", "step"):
                continue
            if key == "layer_entropy":
                for layer, entropy in value.items():
                    writer.add_scalar(f"nap/layer_entropy/{layer}", entropy, step)
            elif isinstance(value, (int, float, np.number)) and not isinstance(
                value, bool
            ):
                writer.add_scalar(f"nap/{key}", float(value), step)
        if hasattr(writer, "flush"):
            writer.flush()

    def close(self):
        """Close the TensorBoard writer the monitor made from a log folder.

        A writer passed in is left open (its owner closes it); without a
        writer this does nothing. A later measurement opens a new one.
        """
        if self._summary_writer is not None:
            self._summary_writer.close()
            self._summary_writer = None

    def series(self, key):
        """One recorded quantity as an array, in measurement order.

        Parameters
        ----------
        key : str
            A key of the records, such as ``"entropy"`` or ``"test_acc"``.

        Returns
        -------
        values : ndarray of shape (n_measurements,)
            The values, as floats.

        Examples
        --------
        >>> ActivationMonitor([[0.0]], [0]).series("entropy")
        array([], dtype=float64)
        """
        return np.asarray([r[key] for r in self.history], dtype=float)

    def correlation(self, accuracy="train_acc"):
        """Pearson and Spearman correlation of entropy with an accuracy series.

        Parameters
        ----------
        accuracy : {"train_acc", "test_acc"}, default="train_acc"
            The series to correlate the entropy with.

        Returns
        -------
        pearson, spearman : float
            NaN with fewer than 3 measurements or a constant series.
        """
        return correlation(self.series("entropy"), self.series(accuracy))


try:  # The skorch callback exists only where skorch does.
    from skorch.callbacks import Callback as _SkorchCallback
except ImportError:  # pragma: no cover - depends on the environment
    _SkorchCallback = None


if _SkorchCallback is not None:

    class SkorchActivationMonitor(_SkorchCallback):
        """A skorch callback around :class:`ActivationMonitor`.

        Every ``every`` epochs it measures the net's module on ``X``, ``y`` and
        writes ``nap_entropy``, ``nap_normalized_entropy`` and ``nap_acc`` (and
        ``nap_test_acc``) into ``net.history``; the full records are in
        ``monitor_.history``.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Inputs on which entropy and accuracy are measured.
        y : array-like of shape (n_samples,)
            Their labels.
        X_test, y_test : array-like, default=None
            Optional held-out data.
        every : int, default=1
            Measure every ``every``-th epoch.
        layers : see ActivationExtractor, default=None
            Layers to read; None is every ``nn.ReLU``.
        reduce : str or callable, default="mean"
            How conv maps become neurons.
        n_bins : int, default=10
            Histogram bins R.
        batch_size : int, default=256
            Samples per forward pass.
        writer : str, Path or SummaryWriter, default=None
            Also write each record to TensorBoard (see
            :class:`ActivationMonitor`).

        Attributes
        ----------
        monitor_ : ActivationMonitor
            The monitor, with every record in ``monitor_.history``.

        See Also
        --------
        ActivationMonitor : The same for any training loop.
        LightningActivationMonitor : The same for PyTorch Lightning.

        Examples
        --------
        >>> import numpy as np
        >>> import torch
        >>> from skorch import NeuralNetClassifier
        >>> from sknap.toy import make_mlp
        >>> X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        >>> y = (X[:, 0] > 0).astype(np.int64)
        >>> net = NeuralNetClassifier(
        ...     make_mlp(4, 2, hidden=(8,), random_state=0),
        ...     criterion=torch.nn.CrossEntropyLoss, max_epochs=2, lr=0.1,
        ...     train_split=None, verbose=0,
        ...     callbacks=[SkorchActivationMonitor(X, y)],
        ... )
        >>> net = net.fit(X, y)
        >>> len(net.history[:, "nap_entropy"])
        2
        """

        def __init__(
            self,
            X,
            y,
            *,
            X_test=None,
            y_test=None,
            every=1,
            layers=None,
            reduce="mean",
            n_bins=10,
            batch_size=256,
            writer=None,
        ):
            self.X = X
            self.y = y
            self.X_test = X_test
            self.y_test = y_test
            self.every = every
            self.layers = layers
            self.reduce = reduce
            self.n_bins = n_bins
            self.batch_size = batch_size
            self.writer = writer

        def initialize(self):
            """Make a fresh monitor (skorch calls this when the net initializes).

            Returns
            -------
            self : SkorchActivationMonitor
                The callback.
            """
            self.monitor_ = ActivationMonitor(
                self.X,
                self.y,
                X_test=self.X_test,
                y_test=self.y_test,
                every=self.every,
                layers=self.layers,
                reduce=self.reduce,
                n_bins=self.n_bins,
                batch_size=self.batch_size,
                writer=self.writer,
            )
            return self

        def on_epoch_end(self, net, **kwargs):
            """Measure ``net.module_`` when due and write into ``net.history``.

            Parameters
            ----------
            net : skorch.NeuralNet
                The net being trained.
            **kwargs : dict
                Further arguments skorch passes; unused.
            """
            record = self.monitor_.epoch_end(net.module_)
            if record is None:
                return
            net.history.record("nap_entropy", record["entropy"])
            net.history.record("nap_normalized_entropy", record["normalized_entropy"])
            net.history.record("nap_acc", record["train_acc"])
            if "test_acc" in record:
                net.history.record("nap_test_acc", record["test_acc"])

    __all__.append("SkorchActivationMonitor")


# The Lightning callback lives in sknap._lightning and is imported on first
# use: importing Lightning takes seconds (and loads matplotlib), which users of
# the other monitors should not pay.
_LIGHTNING = any(
    importlib.util.find_spec(name) is not None
    for name in ("lightning", "pytorch_lightning")
)
if _LIGHTNING:
    __all__.append("LightningActivationMonitor")


def __getattr__(name):
    if name == "LightningActivationMonitor":
        from . import _lightning

        if _lightning.LightningActivationMonitor is None:
            raise AttributeError(
                "sknap.monitor.LightningActivationMonitor needs PyTorch Lightning: "
                "`pip install lightning`, or sknap's extra "
                '(`pip install ".[lightning]"` in a clone of sknap).'
            )
        return _lightning.LightningActivationMonitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
