"""Fixtures shared by every test (helpers of the op tests live in ``skiparse_testing.py``)."""
import os

import pytest
import torch

# Without a GPU the Triton kernels are tested under the interpreter, on CPU tensors. Triton reads this when a
# kernel is decorated, so it must be set before any ``skiparse.triton`` module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread: for tiny models, thread hand-off dominates the run time on a shared 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
