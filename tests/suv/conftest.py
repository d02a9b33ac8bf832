"""Fixtures of the SUV model-layer tests (helpers live in ``suv_testing.py``).

No ``__init__.py`` here on purpose: under pytest's default import mode it would make this directory the
package ``suv`` and shadow the real one.
"""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tiny_models_on_one_thread(one_thread):
    pass
