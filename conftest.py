"""Settings shared by the tests, the package doctests and the docs' examples."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The networks under test are tiny: torch's intra-op threads cost more in
    # synchronisation than they save, by orders of magnitude on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
