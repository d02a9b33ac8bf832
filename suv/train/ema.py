"""EMA of the model weights, ``ema = d * ema + (1 - d) * param`` after every optimizer step (v1.5: d = 0.9999)."""
from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor, distribute_tensor


class EMA:
    """fp32 shadow copies of the trainable parameters of ``model``."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.9999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA(decay): expected 0 <= decay < 1, got {decay}")
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into ``model`` (e.g. a copy used for sampling or export)."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name].to(p.dtype))

    def state_dict(self) -> dict:
        """Full tensors on the CPU (a sharded shadow, under FSDP, is gathered)."""
        return {"decay": self.decay, "shadow": {n: _full(t) for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model: differing parameters {sorted(missing)[:5]}")
        self.decay = state["decay"]
        self.shadow = {n: _like(self.shadow[n], t.float()) for n, t in state["shadow"].items()}


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu().clone()


def _like(current: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """``full`` laid out as ``current``: sharded the same way under FSDP, on the same device otherwise."""
    if isinstance(current, DTensor):
        return distribute_tensor(full.to(current.device), current.device_mesh, current.placements)
    return full.to(current.device).clone()
