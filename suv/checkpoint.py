"""Deprecated: the checkpoint helpers live in ``suv.io``, the loaders beside their models (``suv.models.load_suv``,
``suv.vae.load_wfvae``). The old names still resolve, with a DeprecationWarning."""
from ._deprecated import moved

_IO = ("DEFAULT_CONTAINER_KEYS", "CheckpointError", "atomic_path", "load_state_dict_strict", "read_checkpoint",
       "save_checkpoint", "unwrap_state_dict")  # fmt: skip
__getattr__ = moved(__name__, {**{name: "suv.io" for name in _IO}, "load_suv": "suv.models", "save_suv": "suv.models",
                               "load_wfvae": "suv.vae", "save_wfvae": "suv.vae"})  # fmt: skip
