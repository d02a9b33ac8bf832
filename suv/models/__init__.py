"""The SUV denoiser (``SparseUMMDiT``), its layers, RoPE and embeddings, and the named ``PRESETS``."""
from .config import PRESETS, resolve_config
from .sparse_ummdit import SparseUMMDiT

__all__ = ["PRESETS", "SparseUMMDiT", "resolve_config"]
