"""The SUV denoiser (``SparseUMMDiT``), its layers, RoPE and embeddings, the named ``PRESETS`` and its loader."""
from .config import PRESETS, SUVConfig, resolve_config
from .loader import load_suv, read_suv_state_dict, save_suv
from .sparse_ummdit import SparseUMMDiT

__all__ = ["PRESETS", "SUVConfig", "SparseUMMDiT", "load_suv", "read_suv_state_dict", "resolve_config", "save_suv"]
