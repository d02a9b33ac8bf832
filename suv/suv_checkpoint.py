"""Deprecated: the SUV loader lives in ``suv.models`` (``load_suv``, ``save_suv``, ``read_suv_state_dict``) and
``suv-convert`` in ``suv.cli.convert``. The old names still resolve, with a DeprecationWarning."""
from ._deprecated import moved

__getattr__ = moved(__name__, {"load_suv": "suv.models", "save_suv": "suv.models",
                               "read_suv_state_dict": "suv.models", "main": "suv.cli.convert"})  # fmt: skip
