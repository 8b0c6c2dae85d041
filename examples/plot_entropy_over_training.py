"""
Entropy and accuracy while a network trains
===========================================

The paper's Figure 2: the activation-pattern entropy of a network, min-max
normalized over the epochs, next to its accuracy. An
:class:`~sknap.monitor.ActivationMonitor` measures both after every epoch;
three seeds show how much of the curve is the run and how much the method
(the shaded bands are the range over the seeds).
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sknap.monitor import ActivationMonitor
from sknap.plotting import plot_entropy_accuracy
from sknap.toy import make_mlp
from sknap.training import train_classifier

X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.5, stratify=y, random_state=0
)

# %%
# Train the same 64-64-32-10 MLP from three initialisations, measuring
# entropy and accuracy on the training images after each of 12 epochs.
records = []
for seed in range(3):
    model = make_mlp(64, 10, hidden=(64, 32), random_state=seed)
    monitor = ActivationMonitor(X_train, y_train, X_test=X_test, y_test=y_test)
    train_classifier(
        model, X_train, y_train, epochs=12, random_state=seed, callback=monitor
    )
    records += [dict(record, seed=seed) for record in monitor.history]
    pearson, spearman = monitor.correlation("train_acc")
    print(f"seed {seed}: Pearson {pearson:+.2f}, Spearman {spearman:+.2f}")

# %%
# One line per quantity, the mean over seeds; entropy is normalized within
# each seed before the mean is taken.
ax = plot_entropy_accuracy(records, x="epoch")

# %%
# On this small network the entropy *rises* with the accuracy; the paper's
# hypothesis H1 expects it to fall, as it does for the paper's FCNN on MNIST
# (see the results page). Check the sign on your own model before you read
# the entropy as a proxy for accuracy.
