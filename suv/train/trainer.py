"""The SUV training loop: flow matching, adaptive gradient clipping, AdamW, EMA, atomic checkpoints, exact resume.

Every random draw of step ``s`` (which clips, which caption, the caption drop, sigma, noise) comes from a generator
seeded with ``(seed, s)``, so the data order and the noise are a function of the step alone: resuming from a
checkpoint of step ``s`` continues bit-identically, and skipping a bad batch is resuming at ``s + 1``.

Under ``torchrun`` (a process group is initialised) every rank draws the same global batch of
``batch_size x world_size`` and takes its own slice, and the model runs under DDP, so the update equals one process
training on the global batch.

``sequence_parallel: N`` splits each clip's video tokens over ``N`` ranks: ranks ``r N .. r N + N - 1`` form one SP
group (the ``"sp"`` dimension of a ``("dp", "sp")`` device mesh), the global batch is ``batch_size x world / N``,
and every rank of an SP group takes the same slice. DDP/FSDP still average the gradients over the whole world; each
rank's gradient is a partial sum over its SP group (the contract in ``suv.models.sparse_ummdit``), so the loss is
multiplied by ``N`` for that average to be the data-parallel average over distinct samples.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..checkpoint import atomic_path
from .buckets import BucketSampler
from .clipping import AdaptiveGradClip, ClipStats, FixedGradClip
from .data import valid_frame_count
from .ema import EMA
from .objective import masked_mse, noisy_latents, sample_sigmas
from .sources import CachedClips, OnlineClips, TextEncoders


@dataclass
class TrainConfig:
    """What ``configs/<name>.yaml`` holds. Paths are relative to the config file's folder."""

    data: str  # annotation JSON
    cache: str | None = None  # latent cache folder (suv-cache); None encodes the clips at every step
    model: str = "suv-tiny"  # SUV preset or reference config JSON
    vae: str = "tiny"  # WF-VAE preset, or a checkpoint path
    t5: str | None = None  # local T5 directory; None = tiny random encoders (tests, demos)
    clip: str | None = None
    t5_max_length: int = 512
    num_frames: int = 9
    height: int = 64  # fixed training size, unless max_hxw selects Min-Max tokens buckets
    width: int = 64
    max_hxw: int | None = None  # Min-Max tokens: largest pixel area (v1.5 images: 65,536 at 256x256)
    min_hxw: int = 0  # clips with a smaller area are dropped
    hw_stride: int = 16
    bucket_min_factor: int = 4  # buckets with fewer than factor x global batch clips are dropped
    train_fps: float = 24.0
    batch_size: int = 2
    grad_accum: int = 1
    max_steps: int = 100
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-15
    weight_decay: float = 1e-4
    ema_decay: float = 0.9999
    clip_mode: str = "adaptive"  # or "fixed"
    clip_decay: float = 0.99  # adaptive: EMA decay of the norm statistics
    clip_max_norm: float = 1.0  # fixed
    cfg_drop: float = 0.1  # probability that a caption becomes ""
    seed: int = 1024
    log_every: int = 1
    save_every: int = 50
    device: str = "cpu"
    checkpoint_ff: bool = False  # selective activation checkpointing: recompute every FFN in the backward
    parallel: str = "ddp"  # under torchrun: "ddp" (replicated weights) or "fsdp" (FSDP2 fully_shard per block)
    sequence_parallel: int = 1  # ranks that split one clip's video tokens (Ulysses); world % N == 0

    @classmethod
    def from_dict(cls, raw: dict, base: Path | None = None) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        cfg = cls(**raw)
        if base is not None:
            for name in ("data", "cache", "t5", "clip"):
                value = getattr(cfg, name)
                if value is not None and not Path(value).is_absolute():
                    setattr(cfg, name, str(base / value))
        cfg.betas = tuple(cfg.betas)
        if not isinstance(cfg.sequence_parallel, int) or cfg.sequence_parallel < 1:
            raise ValueError(f"sequence_parallel: expected an integer >= 1, got {cfg.sequence_parallel!r}")
        if cfg.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel: expected 'ddp' or 'fsdp', got {cfg.parallel!r}")
        if cfg.clip_mode not in ("adaptive", "fixed"):
            raise ValueError(f"clip_mode: expected 'adaptive' or 'fixed', got {cfg.clip_mode!r}")
        if cfg.hw_stride % 16:
            raise ValueError(f"hw_stride: expected a multiple of 16 (WF-VAE 8x times patch 2), got {cfg.hw_stride}")
        if valid_frame_count(cfg.num_frames) != cfg.num_frames:
            raise ValueError(f"num_frames: expected (T - 1) % 8 == 0, got {cfg.num_frames}")
        return cfg


class ExtremeGradNorm(RuntimeError):
    """A step's gradient norm was NaN/Inf or above the adaptive bound: training stopped, resumable past it."""


def _step_generator(seed: int, step: int, micro: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 97 + micro)


def load_encoders(cfg: TrainConfig, workdir: Path):
    """``(WF-VAE, T5, CLIP)`` of a config; without T5/CLIP directories, tiny random encoders of the model's widths
    are written to ``workdir`` (once, by rank 0)."""
    from ..checkpoint import load_wfvae
    from ..models.config import resolve_config
    from ..text import CLIPTextEncoder, T5TextEncoder, make_tiny_clip, make_tiny_t5
    from ..vae import WFVAE

    vae = load_wfvae(cfg.vae) if Path(cfg.vae).is_file() else WFVAE.from_config(cfg.vae)
    t5_dir, clip_dir = cfg.t5 or Path(workdir) / "tiny_t5", cfg.clip or Path(workdir) / "tiny_clip"
    if cfg.t5 is None or cfg.clip is None:
        model = resolve_config(cfg.model)
        if not dist.is_initialized() or dist.get_rank() == 0:
            if cfg.t5 is None:
                make_tiny_t5(t5_dir, d_model=model["caption_channels"])
            if cfg.clip is None:
                make_tiny_clip(clip_dir, projection_dim=model["pooled_projection_dim"])
        if dist.is_initialized():
            dist.barrier()
    return vae.eval(), T5TextEncoder(t5_dir, max_length=cfg.t5_max_length), CLIPTextEncoder(clip_dir)


def checkpoint_feedforwards(model: torch.nn.Module) -> int:
    """Recompute the FFNs in the backward instead of keeping their activations (v1.5's ``--recom_ffn_layers``);
    returns how many were wrapped."""
    from torch.utils.checkpoint import checkpoint

    from ..models.layers import FeedForward

    wrapped = 0
    for module in model.modules():
        if isinstance(module, FeedForward):
            module.forward = functools.partial(checkpoint, module.forward, use_reentrant=False)
            wrapped += 1
    return wrapped


class Trainer:
    def __init__(self, cfg: TrainConfig, output: str | Path):
        from ..models import SparseUMMDiT

        self.cfg, self.output = cfg, Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.distributed = dist.is_available() and dist.is_initialized()
        self.device = torch.device(cfg.device)
        if self.distributed and self.device.type == "cuda":  # one GPU per rank, as torchrun numbers them
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if self.distributed else (0, 1)
        self.sp_group, self.sp = None, cfg.sequence_parallel
        if self.world % self.sp:
            raise ValueError(f"sequence_parallel: {self.sp} must divide the number of processes ({self.world})"
                             + ("" if self.distributed else "; run under torchrun"))
        self.model = SparseUMMDiT.from_config(cfg.model).to(self.device).train()
        if self.model.config["num_heads"] % self.sp:
            raise ValueError(f"sequence_parallel: {self.sp} must divide the model's num_heads "
                             f"({self.model.config['num_heads']})")
        if cfg.checkpoint_ff:
            checkpoint_feedforwards(self.model)
        if self.sp > 1:  # each row of the (dp, sp) mesh, consecutive ranks, is one SP group; each column a DP group
            from torch.distributed.device_mesh import init_device_mesh

            self.sp_group = init_device_mesh(self.device.type, (self.world // self.sp, self.sp),
                                             mesh_dim_names=("dp", "sp")).get_group("sp")
        # The data-parallel rank (which slice of the global batch) and the number of distinct slices.
        self.dp_rank, self.dp_world = self.rank // self.sp, self.world // self.sp
        self.fsdp = self.distributed and cfg.parallel == "fsdp"
        if self.fsdp:  # every block's parameters sharded over the ranks; grads arrive reduce-scattered (averaged)
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            mesh = init_device_mesh(self.device.type, (self.world,))
            for stage in self.model.transformer_blocks:
                for block in stage:
                    fully_shard(block, mesh=mesh)
            fully_shard(self.model, mesh=mesh)
        # DDP averages the gradients of the ranks' slices: the model the step sees (``self.module``) is wrapped.
        ddp = self.distributed and not self.fsdp
        self.module = torch.nn.parallel.DistributedDataParallel(self.model) if ddp else self.model
        self.ema = EMA(self.model, cfg.ema_decay)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                     weight_decay=cfg.weight_decay)
        self.clipper = (AdaptiveGradClip(cfg.clip_decay) if cfg.clip_mode == "adaptive"
                        else FixedGradClip(cfg.clip_max_norm))
        self.step = 0
        # With a latent cache no encoder is loaded at all: that is where its memory saving comes from.
        if cfg.cache:
            self.data = CachedClips(cfg)
        else:
            vae, t5, clip = load_encoders(cfg, self.output)
            self.data = OnlineClips(cfg, vae, TextEncoders(t5, clip))
        self.sampler = BucketSampler(self.data.shapes, cfg.batch_size, self.dp_world, cfg.seed, cfg.bucket_min_factor)

    # ------------------------------------------------------------------------------------------ one step
    def train_step(self) -> tuple[float, ClipStats]:
        cfg, loss_sum = self.cfg, 0.0
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        mine = slice(self.dp_rank * cfg.batch_size, (self.dp_rank + 1) * cfg.batch_size)  # the same in an SP group
        for micro in range(cfg.grad_accum):
            g = _step_generator(cfg.seed, self.step, micro)
            indices = self.sampler.batch(self.step * cfg.grad_accum + micro)
            batch = self.data.batch(indices, cfg.cfg_drop, g, mine)
            shape = (len(indices), *batch[0].shape[1:])  # draws for the global batch, so every rank's agree
            sigma = sample_sigmas(shape[0], shape[-2:], g)[mine]
            noise = torch.randn(shape, generator=g)[mine]
            x0, hidden, mask, pooled, sigma, noise = (t.to(self.device) for t in (*batch, sigma, noise))
            x, target = noisy_latents(x0, noise, sigma)
            # DDP all-reduces once, after the last micro-batch (FSDP reduce-scatters every micro-batch).
            sync = self.distributed and not self.fsdp and micro < cfg.grad_accum - 1
            with autocast, (self.module.no_sync() if sync else contextlib.nullcontext()):
                pred = self.module(x, 1000.0 * sigma, hidden, mask, pooled, sp_group=self.sp_group)
                loss = masked_mse(pred, target) / cfg.grad_accum
                # x sp: the world average of SP-partial gradients is then the average over distinct samples.
                (loss * self.sp).backward()
            loss_sum += loss.item()
        if self.distributed:  # the logged loss is the global batch's (an SP group's ranks hold the same one)
            total = torch.tensor(loss_sum, device=self.device)
            dist.all_reduce(total)
            loss_sum = total.item() / self.world
        # After DDP every rank holds the same full gradients; under FSDP each holds a shard, whose squares are summed.
        stats = self.clipper(self.model.parameters(), group=None if self.fsdp else False)
        if stats.extreme:
            self.opt.zero_grad(set_to_none=True)
            self._stop_on_extreme(stats)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        self.step += 1
        return loss_sum, stats

    def _stop_on_extreme(self, stats: ClipStats):
        bad = self.step
        self.step += 1  # the checkpoint resumes past the bad batch, with the weights from before it
        path = self.save()
        if self.rank == 0:
            (self.output / "global_step_for_sampler.txt").write_text(f"{self.step}\n")
        raise ExtremeGradNorm(f"step {bad}: gradient norm {stats.grad_norm:.4g} is NaN/Inf or above the bound "
                              f"(threshold {stats.threshold:.4g}); saved {path}, `--resume` continues at step "
                              f"{self.step}, skipping that batch")

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Full (unsharded) tensors on the CPU, whatever the parallelism: a checkpoint loads on any world size."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        model, optim = get_state_dict(self.model, self.opt, options=StateDictOptions(full_state_dict=True,
                                                                                     cpu_offload=self.fsdp))
        return {"step": self.step, "model": model, "ema": self.ema.state_dict(), "optimizer": optim,
                "clip": self.clipper.state_dict(), "config": asdict(self.cfg)}

    def save(self) -> Path:
        """``checkpoints/step_<n>.pt`` written atomically (by rank 0), then ``latest`` naming it."""
        folder = self.output / "checkpoints"
        path = folder / f"step_{self.step:07d}.pt"
        state = self.state_dict()  # a collective under FSDP: every rank takes part, rank 0 writes
        if self.rank == 0:
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
            with atomic_path(folder / "latest") as tmp:
                tmp.write_text(path.name)
        if self.distributed:
            dist.barrier()
        return path

    def resume(self) -> bool:
        """Load ``checkpoints/latest`` if there is one; returns whether it did."""
        latest = self.output / "checkpoints" / "latest"
        if not latest.is_file():
            return False
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        state = torch.load(latest.parent / latest.read_text().strip(), map_location="cpu", weights_only=True)
        set_state_dict(self.model, self.opt, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                       options=StateDictOptions(full_state_dict=True))
        self.ema.load_state_dict(state["ema"])
        self.clipper.load_state_dict(state["clip"])
        self.step = state["step"]
        return True

    # ------------------------------------------------------------------------------------------ the loop
    def fit(self, max_steps: int | None = None, progress: bool = True) -> list[dict]:
        """Train to ``max_steps`` (absolute); metrics go to ``metrics.jsonl``, checkpoints every ``save_every``."""
        cfg, end = self.cfg, max_steps if max_steps is not None else self.cfg.max_steps
        log, rows = self.output / "metrics.jsonl", []
        bar = tqdm(total=end, initial=self.step, desc="train", disable=not progress or self.rank != 0)
        with (log.open("a") if self.rank == 0 else open(os.devnull, "w")) as f:
            while self.step < end:
                start = time.perf_counter()
                loss, stats = self.train_step()
                seconds = time.perf_counter() - start
                row = {"step": self.step, "loss": loss, "step_seconds": seconds,
                       "samples_per_second": cfg.batch_size * cfg.grad_accum * self.dp_world / seconds,
                       "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **stats.as_dict()}
                rows.append(row)
                if self.step % cfg.log_every == 0:
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", gnorm=f"{stats.grad_norm:.3f}")
                if self.step % cfg.save_every == 0 or self.step == end:
                    self.save()
        bar.close()
        return rows
