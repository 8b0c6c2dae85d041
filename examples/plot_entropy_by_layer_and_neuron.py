"""
Entropy by layer and by neuron
==============================

Where the entropy of a trained network sits: the total of each layer, and
the distribution of the neurons' own entropies, with the largest possible
value, :math:`\\log_2 R` bits for :math:`R` bins, marked.
"""

import warnings

import matplotlib.pyplot as plt

from sknap import ActivationEntropy, ActivationExtractor, DeadNeuronWarning
from sknap.plotting import plot_layer_entropy, plot_neuron_entropy
from sknap.toy import digits_mlp

model, X_train, X_test, y_train, y_test = digits_mlp(epochs=10)

# %%
# The activations of both ReLU layers on the training images, then the
# entropy of every neuron with R = 10 bins. Neurons never active on these
# images are dead: their entropy is 0 and the histogram leaves them out.
extractor = ActivationExtractor(model, device="cpu").fit(X_train)
Z_train = extractor.transform(X_train)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeadNeuronWarning)
    entropy = ActivationEntropy(n_bins=10).fit(Z_train, y_train)
print(
    f"E = {entropy.entropy_:.0f} bits over {entropy.n_neurons_in_} neurons, "
    f"{entropy.n_dead_neurons_} dead"
)

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
plot_layer_entropy(entropy, feature_names=extractor.get_feature_names_out(), ax=left)
plot_neuron_entropy(entropy, ax=right)

# %%
# The first layer holds more entropy because it has more neurons (64 against
# 32); per neuron, most sit between 2 and 3 bits, below the 3.3 bits of a
# neuron spread evenly over the 10 bins.
