"""Shared helpers of the benchmark scripts: machine report, timing, data.

Timings on a shared machine are noisy, so every script measures the things it
compares side by side, in rounds (one run of each per round), and reports the
fastest run of each: the run least disturbed by other work. Ratios of those
minima are what the scripts print and what docs/performance.md records.
"""

import gzip
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

FASHION_MNIST = Path(
    os.environ.get("SKNAP_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
)


def machine():
    """Lines that say where the numbers come from."""
    import scipy
    import sklearn

    import sknap
    from sknap import _kernels

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import numba

        numba_version = numba.__version__
    except ImportError:
        numba_version = "not installed"
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    lines = [
        f"machine: {platform.platform()}, {cpu}, {os.cpu_count()} logical cores",
        f"load average (1/5/15 min) at start: {load}",
        f"python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numba {numba_version}, sknap {sknap.__version__}",
        f"sknap CPU kernels: {_kernels.backend('cpu')}",
    ]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}")
    return "\n".join(lines)


def side_by_side(functions, rounds=5, repeat=None):
    """Fastest time of each function, run in interleaved rounds.

    ``repeat`` maps a name to how many rounds it joins (slow baselines run
    fewer times); every function runs once before timing starts.
    """
    repeat = repeat or {}
    for fn in functions.values():
        fn()
    best = {name: float("inf") for name in functions}
    for r in range(rounds):
        for name, fn in functions.items():
            if r >= repeat.get(name, rounds):
                continue
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def read_idx(path):
    """An IDX array from a .gz file (the MNIST format)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(n=None):
    """(X float32 (n, 784) in [0, 1], y int64), or None when the files are absent.

    ``apt-get install dataset-fashion-mnist`` installs them, or set
    ``SKNAP_FASHION_MNIST`` to a folder with the four ``*-ubyte.gz`` files.
    """
    images = FASHION_MNIST / "train-images-idx3-ubyte.gz"
    if not images.exists():
        return None
    X = read_idx(images).reshape(-1, 784).astype(np.float32) / 255.0
    y = read_idx(FASHION_MNIST / "train-labels-idx1-ubyte.gz").astype(np.int64)
    return (X, y) if n is None else (X[:n], y[:n])


def fcnn(random_state=0):
    """The paper's FCNN, 784-512-512-10, with seeded random weights."""
    from sknap.toy import make_mlp

    return make_mlp(784, 10, hidden=(512, 512), random_state=random_state).eval()
