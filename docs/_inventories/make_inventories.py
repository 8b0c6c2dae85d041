"""Write the intersphinx inventories the docs link through, with no network.

The docs build has no network, so ``intersphinx_mapping`` in ``conf.py``
points at the inventories in this folder instead of fetching each project's
``objects.inv``. They hold only the names sknap's pages link to, with the
address of each on its project's site. After adding a link to a new name,
add it below and run::

    python docs/_inventories/make_inventories.py

The format is Sphinx's inventory version 2: four header lines, then
zlib-compressed lines ``name domain:role priority uri display`` (``$`` in
the uri stands for the name, ``-`` as display for the name itself).
"""

import zlib
from pathlib import Path

HERE = Path(__file__).parent

# project: (version, {name: (role, page)}); page "$" anchors are the name.
INVENTORIES = {
    "sklearn": (
        "stable",
        {
            **{
                name: ("py:class", f"modules/generated/{name}.html#$")
                for name in [
                    "sklearn.base.BaseEstimator",
                    "sklearn.base.ClassifierMixin",
                    "sklearn.base.TransformerMixin",
                    "sklearn.pipeline.Pipeline",
                    "sklearn.model_selection.GridSearchCV",
                    "sklearn.model_selection.StratifiedKFold",
                    "sklearn.ensemble.StackingClassifier",
                    "sklearn.frozen.FrozenEstimator",
                    "sklearn.linear_model.LogisticRegression",
                    "sklearn.naive_bayes.BernoulliNB",
                    "sklearn.neural_network.MLPClassifier",
                    "sklearn.preprocessing.KBinsDiscretizer",
                ]
            },
            **{
                name: ("py:function", f"modules/generated/{name}.html#$")
                for name in [
                    "sklearn.base.clone",
                    "sklearn.pipeline.make_pipeline",
                    "sklearn.model_selection.cross_val_score",
                    "sklearn.model_selection.train_test_split",
                    "sklearn.datasets.load_digits",
                ]
            },
        },
    ),
    "torch": (
        "stable",
        {
            "torch.Tensor": ("py:class", "tensors.html#$"),
            "torch.device": ("py:class", "tensor_attributes.html#$"),
            "torch.dtype": ("py:class", "tensor_attributes.html#$"),
            "torch.autocast": ("py:class", "amp.html#$"),
            "torch.no_grad": ("py:class", "generated/$.html#$"),
            "torch.nn.Module": ("py:class", "generated/$.html#$"),
            "torch.nn.ReLU": ("py:class", "generated/$.html#$"),
            "torch.nn.Linear": ("py:class", "generated/$.html#$"),
            "torch.nn.Conv2d": ("py:class", "generated/$.html#$"),
            "torch.nn.Sequential": ("py:class", "generated/$.html#$"),
            "torch.optim.Adam": ("py:class", "generated/$.html#$"),
            "torch.optim.SGD": ("py:class", "generated/$.html#$"),
            "torch.utils.data.Dataset": ("py:class", "data.html#$"),
            "torch.utils.data.IterableDataset": ("py:class", "data.html#$"),
            "torch.utils.data.TensorDataset": ("py:class", "data.html#$"),
            "torch.utils.data.DataLoader": ("py:class", "data.html#$"),
            "torch.utils.tensorboard.writer.SummaryWriter": (
                "py:class",
                "tensorboard.html#$",
            ),
        },
    ),
    "numpy": (
        "stable",
        {
            "numpy.ndarray": ("py:class", "reference/generated/$.html#$"),
            "numpy.histogram": ("py:function", "reference/generated/$.html#$"),
        },
    ),
    "matplotlib": (
        "stable",
        {
            "matplotlib.axes.Axes": ("py:class", "api/_as_gen/$.html#$"),
            "matplotlib.figure.Figure": ("py:class", "api/_as_gen/$.html#$"),
            "matplotlib.pyplot.subplots": ("py:function", "api/_as_gen/$.html#$"),
            "matplotlib.colors.Colormap": ("py:class", "api/_as_gen/$.html#$"),
        },
    ),
}


def inventory(project, version, entries):
    """The bytes of an objects.inv file for ``entries``."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    lines = "".join(
        f"{name} {role} 1 {page.replace('$', name, page.count('$') - 1)} -\n"
        for name, (role, page) in sorted(entries.items())
    )
    return header + zlib.compress(lines.encode())


def main():
    for project, (version, entries) in INVENTORIES.items():
        path = HERE / f"{project}.inv"
        path.write_bytes(inventory(project, version, entries))
        print(f"{path}: {len(entries)} names")


if __name__ == "__main__":
    main()
