"""NeuronStatistics.all_reduce over two gloo processes on the CPU.

The recipe of docs/performance.md: every process counts its shard, the first
passes are all-reduced, each process starts its second pass from the merged
maxima, and the second passes are all-reduced. The result equals one fit on
all the data.
"""

import pickle
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from numpy.testing import assert_array_equal

from sknap import ActivationEntropy, ActivationProbabilityFeatures
from sknap.streaming import NeuronStatistics

pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing"),
    pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning"),
]

WORLD_SIZE = 2


def _data():
    rng = np.random.default_rng(0)
    A = np.maximum(rng.normal(size=(600, 30)), 0).astype(np.float32)
    A[:, 0] = 0
    y = rng.integers(0, 4, size=600)
    return A, y


def _shard(rank):
    """Uneven shards: rank 0 holds classes 0, 1, 2 and rank 1 classes 1, 2, 3."""
    A, y = _data()
    to_one = (y == 3) | ((np.arange(len(y)) % 3 == 0) & (y != 0))
    keep = to_one if rank == 1 else ~to_one
    return A[keep], y[keep]


def _worker(rank, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD_SIZE,
    )
    try:
        A, y = _shard(rank)
        batches = [(A[s : s + 50], y[s : s + 50]) for s in range(0, len(A), 50)]
        first = NeuronStatistics().update_from(batches).all_reduce()
        second = first.begin_histograms(8).update_from(batches).all_reduce()
        entropy = ActivationEntropy(n_bins=8, n_outputs=0).fit(second)
        proba = ActivationProbabilityFeatures(n_outputs=0).fit(first)
        with open(f"{out_dir}/rank{rank}.pkl", "wb") as f:
            pickle.dump(
                {
                    "n_samples": first.n_samples_,
                    "neuron_entropy": entropy.neuron_entropy_,
                    "class_neuron_entropy": entropy.class_neuron_entropy_,
                    "P": proba.activation_probability_,
                },
                f,
            )
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_all_reduce_over_two_processes_equals_one_fit(tmp_path):
    # Together the shards hold every sample exactly once.
    parts = [_shard(r) for r in range(WORLD_SIZE)]
    A, y = _data()
    assert sum(len(p[1]) for p in parts) == len(y)
    mp.start_processes(
        _worker,
        args=(_free_port(), str(tmp_path)),
        nprocs=WORLD_SIZE,
        join=True,
        start_method="spawn",
    )
    expected_entropy = ActivationEntropy(n_bins=8, n_outputs=0).fit(A, y)
    expected_P = ActivationProbabilityFeatures(n_outputs=0).fit(A, y)
    for rank in range(WORLD_SIZE):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as f:
            got = pickle.load(f)
        assert got["n_samples"] == len(y)
        assert_array_equal(got["neuron_entropy"], expected_entropy.neuron_entropy_)
        assert_array_equal(
            got["class_neuron_entropy"], expected_entropy.class_neuron_entropy_
        )
        assert_array_equal(got["P"], expected_P.activation_probability_)
