"""WF-VAE: the wavelet-flow video VAE of Open-Sora Plan v1.5 (8x8x8, 32 channels) and v1.3 (4x8x8)."""

from .config import PRESETS, WFVAEConfig
from .distribution import DiagonalGaussian
from .model import WFVAE

__all__ = ["PRESETS", "DiagonalGaussian", "WFVAE", "WFVAEConfig"]
