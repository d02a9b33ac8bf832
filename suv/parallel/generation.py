"""Parallel generation: the ranks of a ``torchrun`` world split the denoiser's work at every sampling step.

Sequence parallelism (``S`` ranks per group) splits each forward's video tokens over the group through the same
attention as training (``suv.parallel.sequence``). CFG parallelism runs the unconditional branch on one group and the
conditional branch on another; after each forward the two groups exchange their velocities (``exchange_branches``),
so every rank combines the same pair and keeps the same latents. World = ``S`` (x 2 with CFG parallelism); rank
``r`` is in branch ``r // S`` and holds sequence chunk ``r % S``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group (1 without ``torch.distributed``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def check_generation_layout(world: int, sequence_parallel: int, cfg_parallel: bool, guidance_scale: float,
                            num_heads: int, video_tokens: int) -> None:  # fmt: skip
    """ValueError naming the flag unless the layout fits the world, the model and the video.

    world: processes (``torchrun --nproc-per-node``); num_heads: the denoiser's; video_tokens: per forward.
    """
    s = sequence_parallel
    if not isinstance(s, int) or s < 1:
        raise ValueError(f"--sequence-parallel must be a positive integer, got {s!r}")
    if cfg_parallel and not guidance_scale > 1.0:
        raise ValueError(f"--cfg-parallel needs classifier-free guidance (--guidance-scale > 1), got {guidance_scale}")
    if world % s:
        raise ValueError(f"--sequence-parallel {s} must divide the number of processes ({world})"
                         + ("; run under torchrun --nproc-per-node" if world == 1 else ""))  # fmt: skip
    need = s * (2 if cfg_parallel else 1)
    if world != need:
        how = f"--sequence-parallel {s}" + (" x 2 for --cfg-parallel" if cfg_parallel else "")
        raise ValueError(f"{how} needs exactly {need} processes, got {world} (torchrun --nproc-per-node {need})")
    if num_heads % s:
        raise ValueError(f"--sequence-parallel {s} must divide the denoiser's attention heads ({num_heads})")
    if video_tokens % s:
        raise ValueError(f"--sequence-parallel {s} must divide the video tokens per forward ({video_tokens}); "
                         f"change --frames/--height/--width")  # fmt: skip


@dataclass(frozen=True)
class GenerationGroups:
    """This rank's groups: ``sp`` splits the video tokens (None: whole sequence here), ``cfg`` pairs the ranks
    holding the same chunk in the two branches (None: both branches here)."""

    sp: Any = None
    cfg: Any = None

    @property
    def branch(self) -> int | None:
        """0 = unconditional, 1 = conditional, None = both on this rank."""
        return None if self.cfg is None else dist.get_rank(self.cfg)


def generation_groups(sequence_parallel: int, cfg_parallel: bool, device_type: str) -> GenerationGroups:
    """The groups of this rank over a ``("cfg", "sp")`` device mesh of the world (no groups in one process).
    Call ``check_generation_layout`` first."""
    if world_size() == 1:
        return GenerationGroups()
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device_type, (2 if cfg_parallel else 1, sequence_parallel),
                            mesh_dim_names=("cfg", "sp"))  # fmt: skip
    return GenerationGroups(mesh.get_group("sp") if sequence_parallel > 1 else None,
                            mesh.get_group("cfg") if cfg_parallel else None)  # fmt: skip


def exchange_branches(v: torch.Tensor, group) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's branch velocity -> ``(v_uncond, v_cond)`` on both ranks of the CFG ``group``."""
    parts = [torch.empty_like(v) for _ in range(2)]
    dist.all_gather(parts, v.contiguous(), group=group)
    return parts[0], parts[1]
