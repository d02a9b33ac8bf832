"""Gradient clipping as Open-Sora Plan v1.5 trains (spec: wfvae-and-training-reference.md, section 4.4).

Adaptive clipping keeps an EMA ``mu`` of the global gradient norm and an EMA ``var`` of its squared deviation:

- first step: ``mu = min(3 g, 1)``, ``var = 0``, no clipping;
- later: ``threshold = mu + 3 sqrt(var)``, ``extreme = max(mu + 5 sqrt(var), 5)``;
  ``g <= threshold``: update ``mu`` then ``var`` with decay ``d``, no clipping;
  ``threshold < g <= extreme``: scale the gradients by ``1 / (g / threshold + 1e-6)``, statistics unchanged;
  ``g`` NaN/Inf or ``> extreme``: an extreme step, which stops training (the trainer records where to resume).

:class:`FixedGradClip` is plain ``clip_grad_norm_`` at a fixed norm (1.0), for comparison.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor


def global_grad_norm(parameters: Iterable[torch.nn.Parameter], group=None) -> float:
    """L2 norm of all gradients in fp32; with ``torch.distributed`` up, of the shards of every rank (SUM of
    squares over ``group``), so that every rank takes the same decision."""
    # A DTensor gradient (FSDP) contributes its local shard; the all-reduce adds the other shards.
    squares = [_local(p.grad).detach().float().pow(2).sum() for p in parameters if p.grad is not None]
    total = torch.stack(squares).sum() if squares else torch.zeros(())
    if dist.is_available() and dist.is_initialized() and group is not False:
        dist.all_reduce(total, group=group)
    return math.sqrt(total.item())


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _scale_grads(parameters, factor: float) -> None:
    for p in parameters:
        if p.grad is not None:
            p.grad.mul_(factor)


@dataclass
class ClipStats:
    """What one step decided; logged every step."""

    grad_norm: float
    grad_norm_after_clip: float
    threshold: float
    clip_coef: float  # g / threshold when clipped, else 1
    moving_avg: float
    moving_var: float
    clipped: bool
    extreme: bool  # NaN/Inf or above the extreme bound: the step must not be applied

    def as_dict(self) -> dict:
        return asdict(self)


class AdaptiveGradClip:
    """v1.5 adaptive clipping; call it between ``backward()`` and ``optimizer.step()``.

    Args:
        decay: EMA decay ``d`` of the norm statistics (``--clip_grad_ema_decay``, 0.99 in v1.5).
    """

    NOT_STARTED = -1e6  # the reference's sentinel for "no statistics yet"

    def __init__(self, decay: float = 0.99):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"AdaptiveGradClip(decay): expected 0 < decay < 1, got {decay}")
        self.decay = decay
        self.moving_avg = self.NOT_STARTED
        self.moving_var = 0.0

    def __call__(self, parameters: Iterable[torch.nn.Parameter], group=None) -> ClipStats:
        params = list(parameters)
        return self.update(global_grad_norm(params, group), params, group)

    def update(self, g: float, params=(), group=None) -> ClipStats:
        """Decide on a step whose global gradient norm is ``g`` and scale ``params``' gradients if clipped."""
        mu, var, d = self.moving_avg, self.moving_var, self.decay
        if not math.isfinite(g):
            threshold = mu + 3 * math.sqrt(var) if mu != self.NOT_STARTED else float("nan")
            return ClipStats(g, g, threshold, 1.0, mu, var, clipped=False, extreme=True)
        if mu == self.NOT_STARTED:
            self.moving_avg, self.moving_var = min(3.0 * g, 1.0), 0.0
            return ClipStats(g, g, self.moving_avg, 1.0, self.moving_avg, 0.0, clipped=False, extreme=False)
        threshold = mu + 3.0 * math.sqrt(var)
        if g > max(mu + 5.0 * math.sqrt(var), 5.0):
            return ClipStats(g, g, threshold, 1.0, mu, var, clipped=False, extreme=True)
        if g <= threshold:
            self.moving_avg = d * mu + (1 - d) * g
            self.moving_var = d * var + (1 - d) * (self.moving_avg - g) ** 2  # deviation from the updated mean
            return ClipStats(g, g, threshold, 1.0, self.moving_avg, self.moving_var, clipped=False, extreme=False)
        clip_coef = g / threshold
        _scale_grads(params, 1.0 / (clip_coef + 1e-6))
        after = global_grad_norm(params, group) if params else g / (clip_coef + 1e-6)
        return ClipStats(g, after, threshold, clip_coef, mu, var, clipped=True, extreme=False)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "moving_avg": self.moving_avg, "moving_var": self.moving_var}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.moving_avg, self.moving_var = state["decay"], state["moving_avg"], state["moving_var"]


class FixedGradClip:
    """``clip_grad_norm_`` at ``max_norm``; NaN/Inf norms are extreme steps, as in the adaptive rule."""

    def __init__(self, max_norm: float = 1.0):
        if not max_norm > 0:
            raise ValueError(f"FixedGradClip(max_norm): expected a positive norm, got {max_norm}")
        self.max_norm = max_norm

    def __call__(self, parameters: Iterable[torch.nn.Parameter], group=None) -> ClipStats:
        params = list(parameters)
        return self.update(global_grad_norm(params, group), params, group)

    def update(self, g: float, params=(), group=None) -> ClipStats:
        if not math.isfinite(g):
            return ClipStats(g, g, self.max_norm, 1.0, 0.0, 0.0, clipped=False, extreme=True)
        clipped = g > self.max_norm
        coef = g / self.max_norm if clipped else 1.0
        if clipped:
            _scale_grads(params, 1.0 / (coef + 1e-6))
        after = global_grad_norm(params, group) if clipped and params else g / coef
        return ClipStats(g, after, self.max_norm, coef, 0.0, 0.0, clipped=clipped, extreme=False)

    def state_dict(self) -> dict:
        return {"max_norm": self.max_norm}

    def load_state_dict(self, state: dict) -> None:
        self.max_norm = state["max_norm"]
