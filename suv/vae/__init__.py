"""WF-VAE: the wavelet-flow video VAE of Open-Sora Plan v1.5 (8x8x8, 32 channels) and v1.3 (4x8x8), and its loader."""

from .config import PRESETS, WFVAEConfig
from .distribution import DiagonalGaussian
from .loader import load_wfvae, save_wfvae
from .model import WFVAE

__all__ = ["PRESETS", "DiagonalGaussian", "WFVAE", "WFVAEConfig", "load_wfvae", "save_wfvae"]
