"""Diagonal Gaussian posterior returned by ``WFVAE.encode``."""

from __future__ import annotations

import torch


class DiagonalGaussian:
    """N(mean, exp(logvar)) per latent element, from the encoder's (B, 2L, T, H, W) output split along channels.

    ``mean`` and ``logvar`` are (B, L, T, H, W); logvar is clamped to [-30, 20] as in the reference.
    """

    def __init__(self, parameters: torch.Tensor) -> None:
        self.mean, logvar = parameters.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * eps with eps ~ N(0, 1) drawn from ``generator`` (reproducible when given)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, 1)) summed over all non-batch dims: (B,)."""
        kl = 0.5 * (self.mean.square() + self.logvar.exp() - 1.0 - self.logvar)
        return kl.flatten(1).sum(1)
