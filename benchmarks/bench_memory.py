"""Peak memory of a streaming fit does not grow with the number of samples.

    python benchmarks/bench_memory.py [--samples 10000] [--factor 10] [--pipeline]

Each run, in a fresh process, fits ActivationEntropy (two passes) and
ActivationProbabilityFeatures (one pass) on the batches of an
ActivationExtractor over the FCNN (784-512-512-10), with inputs generated
batch by batch (so the data themselves take no memory), and reports the
process's peak resident set size. With ``--pipeline``, each run fits and
predicts ``make_nap_pipeline(model, streaming=True)`` on a Dataset, through a
wide network of 30,000 ReLU units (784-16-30000-10), the issue's "at least
100,000 samples and 30,000 neurons" at the default sizes. Target: the run on
``factor`` times the samples peaks less than 10% higher.

The children run with ``MALLOC_MMAP_THRESHOLD_=1048576``: glibc's malloc
otherwise raises its mmap threshold to 32 MiB after the first large free, so
batch buffers of that size then come from the heap and its fragmentation,
which grows with the number of batches (+13% from 2,000 to 10,000 samples
through the pipeline, measured on 2026-12-06; -0.3% with the fixed
threshold). The labels have a generator of their own, so that the pipeline's
``y`` is made without making any input. ``--default-malloc`` leaves the
environment as it is.
"""

import argparse
import json
import os
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
        return torch.rand(self.rows(b), 784, generator=self.seeded(b)), self.labels(b)
    def rows(self, b):
        return min(batch, n - b * batch)
    def seeded(self, b):
        return torch.Generator().manual_seed(b)
    def labels(self, b):
        # Their own generator: y for the pipeline without making any input.
        g = self.seeded(n + b)
        return torch.randint(0, 10, (self.rows(b),), generator=g)

loader = torch.utils.data.DataLoader(Batches(), batch_size=None)
start = time.perf_counter()
if {pipeline}:
    from sknap import make_nap_pipeline
    torch.manual_seed(0)
    width = 30000
    # A cheap projection first: the cost is the 30,000 neurons, not the inputs.
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 16), torch.nn.Linear(16, width), torch.nn.ReLU(),
        torch.nn.Linear(width, 10),
    ).eval()
    y = np.concatenate([loader.dataset.labels(b).numpy() for b in range(len(loader))])
    pipe = make_nap_pipeline(model, streaming=True, device="cpu", random_state=0)
    pipe.fit(loader, y)
    predicted = pipe.predict(loader)
    extractor = pipe["extractor"]
else:
    extractor = ActivationExtractor(fcnn(), device="cpu").fit(torch.rand(2, 784))
    entropy = ActivationEntropy().fit(extractor.batches(loader))
    proba = ActivationProbabilityFeatures().fit(extractor.batches(loader))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"peak": peak, "seconds": seconds, "n": n,
                   "columns": extractor.n_neurons_ + extractor.n_outputs_}}))
"""


def run(n, bench, pipeline=False, default_malloc=False):
    env = dict(os.environ)
    if not default_malloc:
        env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(n=n, bench=bench, pipeline=pipeline)],
        env=env,
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
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="fit and predict make_nap_pipeline(streaming=True) on 30,000 neurons",
    )
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's dynamic mmap threshold on (see the docstring)",
    )
    args = parser.parse_args()
    print(machine())
    bench = str(Path(__file__).resolve().parent)
    small = run(args.samples, bench, args.pipeline, args.default_malloc)
    large = run(args.samples * args.factor, bench, args.pipeline, args.default_malloc)
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
