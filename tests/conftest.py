"""Fixtures shared by every test (helpers of the op tests live in ``skiparse_testing.py``)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
