"""Entropy of a 60,000 x 1,024 activation matrix, against loops over neurons.

    python benchmarks/bench_entropy.py [--rows 60000] [--bins 10] [--random]

The matrix is the paper's MNIST FCNN size: the two 512-unit ReLU layers of a
784-512-512-10 network (seeded random weights) over the 60,000 Fashion-MNIST
training images, or, with --random or without the data set, max(N(0, 1), 0).
Timed side by side, fastest of several rounds:

* sknap: ``activation_entropy(A, per_neuron=True)``, input validation
  included;
* numpy: a loop over neurons, ``np.histogram`` of each column's positive
  values over ``(0, max]``;
* authors: a loop over neurons in the style of the authors' code: each
  column divided by its sum, then one count of ``(k w, (k + 1) w)`` per bin;
* floor: one pass that only reads the matrix, its column maxima (the faster
  of numpy's ``A.max(axis=0)`` and sknap's kernel).

Targets: numpy / sknap >= 20, sknap / floor <= 5; the default estimator fit
and ``activation_entropy`` <= 3x one read of the matrix, the torch path <= 15x.
"""

import argparse
import os

import numba
import numpy as np
import torch
from _common import fashion_mnist, fcnn, machine, side_by_side

from sknap import ActivationEntropy, ActivationExtractor, activation_entropy
from sknap._histogram import as_tensor, column_max


def numpy_loop(A, n_bins):
    out = np.zeros(A.shape[1])
    for j in range(A.shape[1]):
        v = A[:, j]
        v = v[v > 0]
        if v.size == 0:
            continue
        counts = np.histogram(v, bins=n_bins, range=(0.0, float(v.max())))[0]
        h = counts[counts > 0] / counts.sum()
        out[j] = -(h * np.log2(h)).sum()
    return out


def authors_loop(A, n_bins):
    sums = A.sum(axis=0)
    out = np.zeros(A.shape[1])
    for j in range(A.shape[1]):
        if sums[j] <= 0:
            continue
        column = A[:, j] / sums[j]
        v = column[column != 0]
        w = v.max() / n_bins
        counts = np.array(
            [np.sum((v > k * w) & (v < (k + 1) * w)) for k in range(n_bins)]
        )
        if counts.sum() == 0:
            continue
        h = counts[counts > 0] / counts.sum()
        out[j] = -(h * np.log2(h)).sum()
    return out


def matrix(rows, random):
    data = None if random else fashion_mnist(rows)
    if data is None:
        rng = np.random.default_rng(0)
        return (
            np.maximum(rng.normal(size=(rows, 1024)), 0).astype(np.float32),
            "max(N(0, 1), 0), float32",
        )
    X, _ = data
    extractor = ActivationExtractor(fcnn(), device="cpu", batch_size=1000).fit(X)
    A = np.ascontiguousarray(extractor.transform(X)[:, :1024])
    return A, "FCNN 784-512-512-10 ReLU outputs on Fashion-MNIST, float32"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--random", action="store_true")
    args = parser.parse_args()
    # One thread for everything, set before any work: the ratios compare
    # single-threaded code.
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    print(machine())
    A, what = matrix(args.rows, args.random)
    print(f"matrix: {A.shape[0]} x {A.shape[1]}, {what}, {(A > 0).mean():.1%} > 0")
    R = args.bins
    tensor = as_tensor(A)
    times = side_by_side(
        {
            "sknap": lambda: activation_entropy(A, R, per_neuron=True),
            "floor (numpy max)": lambda: A.max(axis=0),
            "floor (sknap max)": lambda: column_max(tensor),
            "numpy": lambda: numpy_loop(A, R),
            "authors": lambda: authors_loop(A, R),
        },
        rounds=args.rounds,
        repeat={"numpy": 3, "authors": 1},
    )
    floor = min(times["floor (numpy max)"], times["floor (sknap max)"])
    default_fits(A, R, args.rounds)
    for name, t in times.items():
        print(f"  {name:<20} {t * 1e3:10.1f} ms")
    sknap = times["sknap"]
    print(f"numpy loop / sknap:   {times['numpy'] / sknap:6.1f}x  (target >= 20)")
    print(f"authors loop / sknap: {times['authors'] / sknap:6.1f}x")
    print(f"sknap / floor:        {sknap / floor:6.2f}x  (target <= 5)")
    ours = activation_entropy(A, R, per_neuron=True)
    theirs = numpy_loop(A, R)
    print(
        "agreement with the numpy loop (whose bins are left-closed): max |dE_j| "
        f"= {np.abs(ours - theirs).max():.3g} bits"
    )


def default_fits(A, n_bins, rounds):
    """The default fit, ActivationEntropy(n_bins).fit(Z, y) with per-class
    entropy, on Z = [A, 10 softmax columns], numba and torch paths, one
    thread, against one read of Z."""
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(10), size=A.shape[0]).astype(np.float32)
    Z = np.hstack([A, proba])
    y = rng.integers(0, 10, size=A.shape[0])

    def torch_fit():
        os.environ["SKNAP_DISABLE_NUMBA"] = "1"
        try:
            ActivationEntropy(n_bins=n_bins).fit(Z, y)
        finally:
            os.environ.pop("SKNAP_DISABLE_NUMBA")

    times = side_by_side(
        {
            "one read of Z": lambda: Z.max(axis=0),
            "activation_entropy(A)": lambda: activation_entropy(A, n_bins),
            "default fit (numba)": lambda: ActivationEntropy(n_bins=n_bins).fit(Z, y),
            "default fit (torch)": torch_fit,
        },
        rounds=rounds,
    )
    read = times["one read of Z"]
    print(f"Z: {Z.shape[0]} x {Z.shape[1]} float32, one thread")
    for name, t in times.items():
        print(f"  {name:<24} {t * 1e3:9.1f} ms  {t / read:6.2f}x one read")


if __name__ == "__main__":
    main()
