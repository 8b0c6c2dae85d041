"""Cloning a pipeline that holds a ResNet-50 against one deepcopy of the network.

    python benchmarks/bench_clone.py

``sklearn.base.clone`` runs for every fold and grid candidate. The extractor
shares its backbone with its clones (``__sklearn_clone__``), so cloning the
whole pipeline costs microseconds, while a deepcopy copies the ~100 MB of
weights. Both are timed side by side, fastest of several rounds. Target: the
clone far cheaper than one deepcopy.
"""

import copy

import torch
from _common import machine, side_by_side
from sklearn.base import clone
from torchvision.models import resnet50

from sknap import make_nap_pipeline


def main():
    print(machine())
    torch.manual_seed(0)
    model = resnet50().eval()
    n_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    pipe = make_nap_pipeline(model)
    times = side_by_side(
        {
            "clone(pipeline)": lambda: clone(pipe),
            "deepcopy(resnet50)": lambda: copy.deepcopy(model),
        },
        rounds=5,
    )
    cloned = clone(pipe)
    assert cloned[0].backbone is model
    print(f"ResNet-50: {n_bytes / 2**20:.0f} MiB of parameters and buffers")
    for name, t in times.items():
        print(f"  {name:<20} {t * 1e3:10.3f} ms")
    ratio = times["deepcopy(resnet50)"] / times["clone(pipeline)"]
    print(f"deepcopy / clone: {ratio:,.0f}x (the clone shares the backbone)")


if __name__ == "__main__":
    main()
