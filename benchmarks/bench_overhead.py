"""Cost of the statistics on top of the forward pass that cannot be avoided.

    python benchmarks/bench_overhead.py [--device auto] [--models fcnn resnet18]

For each backbone, over the same batches, side by side (fastest of several
rounds):

* bare: ``backbone(batch)`` under ``no_grad`` in eval mode, nothing else;
* extraction: iterating ``extractor.batches(X, y)``, the rows of
  ``transform`` (activations and probabilities) on the device;
* P fit, one pass: ``ActivationProbabilityFeatures().fit(batches)``, the
  per-class maxima and active counts, against one bare pass;
* entropy fit, two passes: ``ActivationEntropy(per_class=False).fit(batches)``,
  maxima then histograms (what ``make_nap_pipeline`` fits), against two bare
  passes;
* the same with per-class histograms (``ActivationEntropy``'s default with
  labels: bins from each class's own maxima, for the per-class entropies);
* ``NeuronStatistics``, two passes over all columns, the backbone's
  probabilities included (the public statistics; the estimators above skip
  the probability columns, which they do not read);
* transform: ``extractor.transform(X)``, what a ``Pipeline`` runs, against
  one bare pass;
* fused: :func:`sknap.fused.fused_transform`, ``[Y_proposed, Y_predicted]`` of
  a fitted pipeline, computed on the device, against one bare pass;
* ``make_nap_pipeline(...).fit(X, y)`` end to end, against one bare pass plus
  the auxiliary model's own training on the same features.

Backbones: the paper's FCNN (784-512-512-10) on Fashion-MNIST (random
inputs if the data set is absent), and torchvision's ResNet-18 on 32x32
inputs. Weights are seeded random: the cost does not depend on training.
Target: the fits at most 1.15x the bare forward passes they make.

By default torch runs on one thread (``--threads 1``): the statistics of a
batch run on one thread, so this compares the work they add with the work of
the forward pass. With more threads (``--threads N``; 0 for torch's own
choice) the forward pass gets faster and the statistics do not, so the
ratios grow (docs/performance.md gives both on a 2-core machine); on a busy
machine, small torch operations with several OpenMP threads can also wait
long for a core.
"""

import argparse
import warnings

import numpy as np
import torch
from _common import fashion_mnist, fcnn, machine, side_by_side, sync

from sknap import (
    ActivationEntropy,
    ActivationExtractor,
    ActivationProbabilityFeatures,
    AuxiliaryClassifier,
    make_nap_pipeline,
)
from sknap._device import resolve_device
from sknap.fused import fused_transform
from sknap.streaming import compute_statistics


def resnet18():
    from torchvision.models import resnet18 as build

    torch.manual_seed(0)
    return build(num_classes=10).eval()


def workloads(names, device, fcnn_batches):
    rng = np.random.default_rng(0)
    for name in names:
        if name == "fcnn":
            data = fashion_mnist(None if device.type == "cuda" else 20000)
            if data is None:
                X = rng.random((20000, 784), dtype=np.float32)
                y = rng.integers(0, 10, size=len(X))
                what = "FCNN 784-512-512-10, 20,000 random inputs"
            else:
                X, y = data
                what = f"FCNN 784-512-512-10, {len(X):,} Fashion-MNIST images"
            for batch_size in fcnn_batches:
                yield what, fcnn(), X, y, batch_size
        elif name == "resnet18":
            n = 10000 if device.type == "cuda" else 1024
            X = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
            y = rng.integers(0, 10, size=n)
            yield f"ResNet-18, {n:,} inputs of 3x32x32", resnet18(), X, y, 128


def run(what, model, X, y, batch_size, device, rounds):
    model = model.to(device)
    extractor = ActivationExtractor(model, batch_size=batch_size, device=device)
    extractor.fit(X)
    n = X.shape[0]
    starts = range(0, n, batch_size)

    def bare():
        with torch.no_grad():
            for s in starts:
                model(torch.as_tensor(X[s : s + batch_size]).to(device))
        sync(device)

    def extraction():
        for _ in extractor.batches(X, y):
            pass
        sync(device)

    def transform():
        extractor.transform(X)

    def p_fit():
        ActivationProbabilityFeatures().fit(extractor.batches(X, y))
        sync(device)

    def entropy_fit():
        ActivationEntropy(per_class=False).fit(extractor.batches(X, y))
        sync(device)

    def entropy_fit_per_class():
        ActivationEntropy().fit(extractor.batches(X, y))
        sync(device)

    def statistics():
        compute_statistics(extractor.batches(X, y), per_class=False)
        sync(device)

    entropy = ActivationEntropy(n_neurons=0.5).fit(extractor.batches(X, y))
    probabilities = ActivationProbabilityFeatures().fit(
        entropy.transform(extractor.transform(X[:2000])), y[:2000]
    )
    pipeline = [extractor, entropy, probabilities]

    def fused():
        fused_transform(pipeline, X)
        sync(device)

    params = dict(batch_size=batch_size, device=device, random_state=0)
    features = make_nap_pipeline(model, **params)[:-1].fit_transform(X, y)

    def auxiliary():
        AuxiliaryClassifier(device=device, random_state=0).fit(features, y)

    def pipeline_fit():
        make_nap_pipeline(model, **params).fit(X, y)

    passes = {
        "bare": 1,
        "extraction": 1,
        "transform": 1,
        "P fit (1 pass)": 1,
        "entropy fit (2 passes)": 2,
        "  with per-class": 2,
        "NeuronStatistics (2)": 2,
        "fused features": 1,
    }
    times = side_by_side(
        {
            "bare": bare,
            "extraction": extraction,
            "transform": transform,
            "P fit (1 pass)": p_fit,
            "entropy fit (2 passes)": entropy_fit,
            "  with per-class": entropy_fit_per_class,
            "NeuronStatistics (2)": statistics,
            "fused features": fused,
            "auxiliary alone": auxiliary,
            "make_nap_pipeline fit": pipeline_fit,
        },
        rounds=rounds,
    )
    print(f"\n{what}; {extractor.n_neurons_:,} neurons, batches of {batch_size}")
    for name, t in times.items():
        if name not in passes:
            continue
        ratio = t / (passes[name] * times["bare"])
        print(
            f"  {name:<24} {t:8.3f} s  {ratio:5.3f}x bare"
            f"  ({passes[name] * n / t:9.0f} samples/s per pass)"
        )
    alone = times["bare"] + times["auxiliary alone"]
    print(
        f"  {'make_nap_pipeline fit':<24} {times['make_nap_pipeline fit']:8.3f} s  "
        f"{times['make_nap_pipeline fit'] / alone:5.3f}x one bare pass plus the "
        f"auxiliary model alone ({times['auxiliary alone']:.3f} s)"
    )
    fits = ["P fit (1 pass)", "entropy fit (2 passes)"]
    worst = max(times[k] / (passes[k] * times["bare"]) for k in fits)
    print(f"  the fits of make_nap_pipeline, worst: {worst:.3f}x  (target <= 1.15)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", default=["fcnn", "resnet18"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--fcnn-batches",
        type=int,
        nargs="+",
        default=[256, 512],
        help="batch sizes of the FCNN runs (its forward pass is so cheap that "
        "the fixed cost per batch shows)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1; 0 for torch's own choice)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(machine())
    print(f"device: {device}")
    warnings.simplefilter("ignore")  # dead neurons of random weights
    for what, model, X, y, batch_size in workloads(
        args.models, device, args.fcnn_batches
    ):
        run(what, model, X, y, batch_size, device, args.rounds)


if __name__ == "__main__":
    main()
