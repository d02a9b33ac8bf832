"""Fixtures of the SUV model-layer tests (helpers live in ``suv_testing.py``).

No ``__init__.py`` here on purpose: under pytest's default import mode it would make this directory the
package ``suv`` and shadow the real one.
"""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny matmuls on a shared 2-core box are dominated by thread hand-off; one thread is ~50x faster here.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
