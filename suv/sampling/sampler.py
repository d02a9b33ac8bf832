"""Flow-matching Euler sampling with classifier-free guidance (Open-Sora Plan v1.5 inference)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..parallel import GenerationGroups, exchange_branches
from .guidance import guided_velocity
from .schedule import shifted_sigmas


@dataclass
class TextConditioning:
    """Encoded prompts: ``hidden (B, 1, L, C)`` T5 states, ``mask (B, 1, L)`` 1 = real token, ``pooled (B, 1, P)``."""

    hidden: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __post_init__(self) -> None:
        if not (self.hidden.shape[0] == self.mask.shape[0] == self.pooled.shape[0]):
            raise ValueError(f"TextConditioning batch sizes differ: hidden {tuple(self.hidden.shape)}, mask "
                             f"{tuple(self.mask.shape)}, pooled {tuple(self.pooled.shape)}")  # fmt: skip

    def cat(self, other: TextConditioning) -> TextConditioning:
        """[self; other] along the batch; text lengths must match (both padded to the tokenizer max length)."""
        if self.hidden.shape[1:] != other.hidden.shape[1:]:
            raise ValueError(f"cannot batch text of shapes {tuple(self.hidden.shape)} and {tuple(other.hidden.shape)}")
        return TextConditioning(*(torch.cat([a, b]) for a, b in
                                  ((self.hidden, other.hidden), (self.mask, other.mask), (self.pooled, other.pooled))))


Denoiser = Callable[..., torch.Tensor]  # (x, timestep, hidden, mask, pooled) -> velocity, e.g. SparseUMMDiT


@torch.no_grad()
def sample(model: Denoiser, noise: torch.Tensor, cond: TextConditioning, uncond: TextConditioning | None = None,
           steps: int = 50, shift: float = 7.0, guidance_scale: float = 8.0, guidance_rescale: float = 0.7,
           progress: bool = True, groups: GenerationGroups | None = None) -> torch.Tensor:  # fmt: skip
    """Integrate ``dx/dsigma = v`` from sigma = 1 (noise) to 0 with Euler steps on the shifted grid.

    noise: ``(B, C, T, H, W)`` initial latent in the model's dtype. cond/uncond: the prompt and negative-prompt
    encodings (batch B each). With ``guidance_scale > 1`` every step runs one model call on the batch
    ``[negative; positive]`` and combines the halves with ``guided_velocity``. The update
    ``x += (sigma_{i+1} - sigma_i) * v`` runs in fp32 and is cast back. Returns the clean latent ``(B, C, T, H, W)``.

    groups (``suv.parallel.generation``, under torchrun): every rank passes the same noise and text. With a ``cfg``
    group this rank runs only its branch on batch B and the branches swap velocities; with an ``sp`` group the model
    splits the video tokens over it. Every rank returns the same latent.
    """
    if not isinstance(noise, torch.Tensor) or noise.dim() != 5:
        raise ValueError(f"noise must be a (B, C, T, H, W) tensor, got {getattr(noise, 'shape', type(noise).__name__)}")
    b = noise.shape[0]
    if cond.hidden.shape[0] != b:
        raise ValueError(f"cond has batch {cond.hidden.shape[0]} but noise has batch {b}")
    if not math.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")  # NaN would skip CFG silently
    use_cfg = guidance_scale > 1.0
    if use_cfg:
        if uncond is None:
            raise ValueError(f"guidance_scale={guidance_scale} > 1 needs uncond (the negative prompt encoding)")
        if uncond.hidden.shape[0] != b:
            raise ValueError(f"uncond has batch {uncond.hidden.shape[0]} but noise has batch {b}")
    split = use_cfg and groups is not None and groups.cfg is not None  # one branch per rank
    text = ((uncond, cond)[groups.branch] if split else uncond.cat(cond)) if use_cfg else cond
    sp = {} if groups is None or groups.sp is None else {"sp_group": groups.sp}
    sigmas = shifted_sigmas(steps, shift)
    x = noise.float()
    for i in tqdm(range(steps), desc="sampling", disable=not progress):
        x_in = x.to(noise.dtype)
        if use_cfg and not split:
            x_in = torch.cat([x_in, x_in])
        t = torch.full((x_in.shape[0],), float(sigmas[i]) * 1000.0, device=noise.device)
        v = model(x_in, t, text.hidden, text.mask, text.pooled, **sp)
        if use_cfg:
            v_uncond, v_cond = exchange_branches(v, groups.cfg) if split else v.chunk(2)
            v = guided_velocity(v_uncond, v_cond, guidance_scale, guidance_rescale)
        x = x + float(sigmas[i + 1] - sigmas[i]) * v.float()
    return x.to(noise.dtype)


def initial_noise(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> torch.Tensor:  # fmt: skip
    """Standard normal latent from a CPU generator seeded with ``seed`` (same values on every device)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
