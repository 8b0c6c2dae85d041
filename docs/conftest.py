"""Pytest runs the ``>>>`` examples of the docs' markdown pages, not conf.py."""

import pytest
import torch

collect_ignore = ["conf.py", "conftest.py"]
collect_ignore_glob = ["_build/*", "generated/*", "runs/*"]


@pytest.fixture(autouse=True)
def _one_thread():
    # The guide's networks are tiny: on a busy machine torch's intra-op
    # threads cost far more than they save (seconds instead of milliseconds).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)
