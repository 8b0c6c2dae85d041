"""Peak memory of a streaming fit does not grow with the number of samples.

    python benchmarks/bench_memory.py [--samples 10000] [--factor 10]

Each run, in a fresh process, fits ActivationEntropy (two passes) and
ActivationProbabilityFeatures (one pass) on the batches of an
ActivationExtractor over the FCNN (784-512-512-10), with inputs generated
batch by batch (so the data themselves take no memory), and reports the
process's peak resident set size. Target: the run on ``factor`` times the
samples peaks less than 10% higher.
"""

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time, warnings
sys.path.insert(0, {bench!r})
import numpy as np, torch
from _common import fcnn
from sknap import ActivationEntropy, ActivationExtractor, ActivationProbabilityFeatures

warnings.simplefilter("ignore")
n, batch = {n}, 256

class Batches(torch.utils.data.Dataset):
    # Batch b of random inputs and labels, made when asked for.
    def __len__(self):
        return (n + batch - 1) // batch
    def __getitem__(self, b):
        g = torch.Generator().manual_seed(b)
        rows = min(batch, n - b * batch)
        x = torch.rand(rows, 784, generator=g)
        return x, torch.randint(0, 10, (rows,), generator=g)

loader = torch.utils.data.DataLoader(Batches(), batch_size=None)
extractor = ActivationExtractor(fcnn(), device="cpu").fit(torch.rand(2, 784))
start = time.perf_counter()
entropy = ActivationEntropy().fit(extractor.batches(loader))
proba = ActivationProbabilityFeatures().fit(extractor.batches(loader))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"peak": peak, "seconds": seconds, "n": n,
                   "columns": extractor.n_neurons_ + extractor.n_outputs_}}))
"""


def run(n, bench):
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(n=n, bench=bench)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    from pathlib import Path

    from _common import machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--factor", type=int, default=10)
    args = parser.parse_args()
    print(machine())
    bench = str(Path(__file__).resolve().parent)
    small = run(args.samples, bench)
    large = run(args.samples * args.factor, bench)
    mib = 1 << 20
    for r in (small, large):
        matrix = r["n"] * r["columns"] * 4 / mib
        print(
            f"  {r['n']:>9,} samples: peak RSS {r['peak'] / mib:8.1f} MiB, "
            f"{r['seconds']:6.1f} s (the float32 activation matrix alone would "
            f"be {matrix:8.1f} MiB)"
        )
    growth = large["peak"] / small["peak"] - 1
    print(
        f"peak RSS growth for {args.factor}x the samples: {growth:+.1%}  (target < 10%)"
    )


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t:.0f} s)")
