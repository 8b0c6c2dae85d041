"""Pytest runs the ``>>>`` examples of the docs' markdown pages, not conf.py."""

import pytest
import torch

collect_ignore = ["conf.py", "conftest.py"]
collect_ignore_glob = ["_build/*", "generated/*", "runs/*"]


@pytest.fixture(autouse=True)
def _seed():
    # One torch thread comes from the repository's conftest.py.
    torch.manual_seed(0)
