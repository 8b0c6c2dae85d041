"""
The activation probabilities P, and the auxiliary model
=======================================================

The paper's second use of activation patterns: the probability
:math:`P_{c,j}` that neuron :math:`j` is active on a training image of class
:math:`c` (its Eq. 14) reweights the network's softmax, and a small auxiliary
network learns from both. :func:`~sknap.make_nap_pipeline` fits the whole
chain as one scikit-learn pipeline; the heat map shows the :math:`P` it
learnt, layer by layer.
"""

import warnings

import torch

from sknap import DeadNeuronWarning, make_nap_pipeline
from sknap.plotting import plot_activation_probabilities
from sknap.toy import digits_mlp

model, X_train, X_test, y_train, y_test = digits_mlp(epochs=10)
pipe = make_nap_pipeline(model, device="cpu", random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeadNeuronWarning)
    pipe.fit(X_train, y_train)

with torch.no_grad():
    predicted = model(torch.from_numpy(X_test)).argmax(1).numpy()
print(f"backbone test accuracy {(predicted == y_test).mean():.3f}")
print(f"pipeline test accuracy {pipe.score(X_test, y_test):.3f}")

# %%
# Rows are the ten digits, columns the 96 hidden neurons, the first layer's
# 64 then the second's 32. A column that is bright for one digit and dark for
# the others is a neuron that votes for that digit.
names = pipe.named_steps["extractor"].get_feature_names_out()
ax = plot_activation_probabilities(
    pipe.named_steps["probabilities"], feature_names=names
)
