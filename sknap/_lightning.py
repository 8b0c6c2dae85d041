"""The PyTorch Lightning callback of :mod:`sknap.monitor`.

Imported by ``sknap.monitor`` on first use of
``sknap.monitor.LightningActivationMonitor``, which is where it is documented;
``LightningActivationMonitor`` is None where neither ``lightning`` nor
``pytorch_lightning`` is installed.
"""

from .monitor import ActivationMonitor

__all__ = ["LightningActivationMonitor"]

try:  # The Lightning callback exists only where Lightning does.
    from lightning.pytorch import Callback as _LightningCallback
except ImportError:  # pragma: no cover - depends on the environment
    try:
        from pytorch_lightning import Callback as _LightningCallback
    except ImportError:
        _LightningCallback = None

LightningActivationMonitor = None


if _LightningCallback is not None:

    class LightningActivationMonitor(_LightningCallback):
        """A PyTorch Lightning callback around :class:`ActivationMonitor`.

        Every ``every`` training epochs (or steps, with ``unit="step"``) it
        measures the LightningModule on ``X``, ``y`` and logs ``nap/entropy``,
        ``nap/normalized_entropy``, ``nap/train_acc``, ``nap/n_dead``,
        ``nap/layer_entropy/<layer>`` and, with ``X_test``, ``nap/test_acc``
        to every logger of the trainer (``TensorBoardLogger`` and
        ``CSVLogger`` among them). With ``unit="epoch"`` it logs them with
        ``LightningModule.log``, so ``trainer.callback_metrics`` holds the
        last ones (and ``ModelCheckpoint`` or ``EarlyStopping`` can monitor
        them); with ``unit="step"`` it writes them to the loggers at the
        trainer's ``global_step``.
        The module's ``forward`` must return the class scores (logits or
        probabilities), as a classifier's does. The full records are in
        ``monitor_.history``.

        It subclasses ``lightning.pytorch.Callback``, or
        ``pytorch_lightning.Callback`` where only the older package is
        installed: use it with the ``Trainer`` of the same package.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Inputs on which entropy and accuracy are measured.
        y : array-like of shape (n_samples,)
            Their labels.
        X_test, y_test : array-like, default=None
            Optional held-out data.
        every : int, default=1
            Measure every ``every``-th epoch or step.
        unit : {"epoch", "step"}, default="epoch"
            Count training epochs or optimiser steps (training batches).
        layers : see ActivationExtractor, default=None
            Layers to read; None is every ``nn.ReLU``.
        reduce : str or callable, default="mean"
            How conv maps become neurons.
        n_bins : int, default=10
            Histogram bins R.
        batch_size : int, default=256
            Samples per forward pass.

        Attributes
        ----------
        monitor_ : ActivationMonitor
            The monitor, with every record in ``monitor_.history``; made
            afresh when training starts.

        See Also
        --------
        ActivationMonitor : The same for any training loop.

        Examples
        --------
        >>> import torch
        >>> from lightning.pytorch import LightningModule, Trainer
        >>> from sknap.monitor import LightningActivationMonitor
        >>> from sknap.toy import make_mlp
        >>> class Classifier(LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = make_mlp(4, 2, hidden=(8,), random_state=0)
        ...     def forward(self, x):
        ...         return self.net(x)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         return torch.nn.functional.cross_entropy(self(x), y)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> X = torch.randn(64, 4)
        >>> y = (X[:, 0] > 0).long()
        >>> loader = torch.utils.data.DataLoader(
        ...     torch.utils.data.TensorDataset(X, y), batch_size=16)
        >>> callback = LightningActivationMonitor(X, y)
        >>> trainer = Trainer(max_epochs=2, callbacks=[callback], logger=False,
        ...                   enable_checkpointing=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, accelerator="cpu")
        >>> trainer.fit(Classifier(), loader)
        >>> [r["epoch"] for r in callback.monitor_.history]
        [1, 2]
        >>> "nap/entropy" in trainer.callback_metrics
        True
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
        ):
            super().__init__()
            self.X = X
            self.y = y
            self.X_test = X_test
            self.y_test = y_test
            self.every = every
            self.unit = unit
            self.layers = layers
            self.reduce = reduce
            self.n_bins = n_bins
            self.batch_size = batch_size

        def on_train_start(self, trainer, pl_module):
            """Make a fresh monitor when training starts.

            Parameters
            ----------
            trainer : lightning.pytorch.Trainer
                The trainer.
            pl_module : lightning.pytorch.LightningModule
                The module being trained.
            """
            self.monitor_ = ActivationMonitor(
                self.X,
                self.y,
                X_test=self.X_test,
                y_test=self.y_test,
                every=self.every,
                unit=self.unit,
                layers=self.layers,
                reduce=self.reduce,
                n_bins=self.n_bins,
                batch_size=self.batch_size,
            )

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            """Count one step; with ``unit="step"``, measure and log when due.

            Parameters
            ----------
            trainer : lightning.pytorch.Trainer
                The trainer.
            pl_module : lightning.pytorch.LightningModule
                The module being trained.
            outputs : object
                What ``training_step`` returned; unused.
            batch : object
                The batch; unused.
            batch_idx : int
                Its index; unused.
            """
            self.monitor_.epoch = trainer.current_epoch
            values = self._values(self.monitor_.step(pl_module))
            if values:
                # Straight to the loggers, once at this step: values logged
                # with LightningModule.log from this hook would be logged
                # again at the following steps.
                for logger in trainer.loggers:
                    logger.log_metrics(values, step=trainer.global_step)

        def on_train_epoch_end(self, trainer, pl_module):
            """Count one epoch; with ``unit="epoch"``, measure and log when due.

            Parameters
            ----------
            trainer : lightning.pytorch.Trainer
                The trainer.
            pl_module : lightning.pytorch.LightningModule
                The module being trained.
            """
            self.monitor_.epoch = trainer.current_epoch
            values = self._values(self.monitor_.epoch_end(pl_module))
            if values:
                pl_module.log_dict(values, on_step=False, on_epoch=True)

        @staticmethod
        def _values(record):
            """The record's numbers under their logged names; {} for None."""
            if record is None:
                return {}
            values = {
                f"nap/{key}": float(record[key])
                for key in (
                    "entropy",
                    "normalized_entropy",
                    "train_acc",
                    "test_acc",
                    "n_dead",
                )
                if key in record
            }
            for layer, entropy in record["layer_entropy"].items():
                values[f"nap/layer_entropy/{layer}"] = float(entropy)
            return values
