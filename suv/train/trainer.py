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
rank's gradient is a partial sum over its SP group (the contract in ``suv.parallel.sequence``), so the loss is
multiplied by ``N`` for that average to be the data-parallel average over distinct samples.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..io import CheckpointError, read_checkpoint, save_state, write_atomic
from ..models import SparseUMMDiT
from ..parallel import sequence_parallel_group
from .buckets import BucketSampler
from .cache import CachedClips
from .clipping import AdaptiveGradClip, ClipStats, FixedGradClip
from .config import TrainConfig
from .ema import EMA
from .metrics import memory_row
from .objective import masked_mse, noisy_latents, sample_sigmas
from .sources import OnlineClips, load_encoders


class ExtremeGradNorm(RuntimeError):
    """A step's gradient norm was NaN/Inf or above the adaptive bound: training stopped, resumable past it."""


def _row_step(line: str) -> float:
    """The step of a ``metrics.jsonl`` line; a torn line (a crash mid-write) counts as past every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _step_generator(seed: int, step: int, micro: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 97 + micro)


class Trainer:
    """One training run of ``cfg`` writing to ``output`` (``metrics.jsonl``, ``checkpoints/``)."""

    def __init__(self, cfg: TrainConfig, output: str | Path):
        self.cfg, self.output = cfg, Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self._join_processes()
        self.model = SparseUMMDiT.from_config(cfg.model).to(self.device).train()
        if cfg.checkpoint_ff:
            self.model.checkpoint_feedforwards()
        self.sp = cfg.sequence_parallel
        self.sp_group = sequence_parallel_group(self.sp, self.model.config.num_heads, self.device.type)
        # The data-parallel rank (which slice of the global batch) and the number of distinct slices.
        self.dp_rank, self.dp_world = self.rank // self.sp, self.world // self.sp
        self.module = self._data_parallel()
        self._optimization()
        self._data()

    def _join_processes(self) -> None:
        """This process's place: rank and world size under torchrun (else 0 of 1), and its device."""
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if self.distributed else (0, 1)
        self.device = torch.device(self.cfg.device)
        if self.distributed and self.device.type == "cuda":  # one GPU per rank, as torchrun numbers them
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)

    def _data_parallel(self) -> torch.nn.Module:
        """The module a step runs: the model under DDP (replicated, gradients averaged), or sharded in place by
        FSDP2 (every block's parameters over the ranks, gradients reduce-scattered), or the model itself."""
        self.fsdp = self.distributed and self.cfg.parallel == "fsdp"
        if self.fsdp:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            mesh = init_device_mesh(self.device.type, (self.world,))
            for stage in self.model.transformer_blocks:
                for block in stage:
                    fully_shard(block, mesh=mesh)
            fully_shard(self.model, mesh=mesh)
            return self.model
        return torch.nn.parallel.DistributedDataParallel(self.model) if self.distributed else self.model

    def _optimization(self) -> None:
        """EMA of the weights, AdamW and the gradient clipper, at step 0."""
        cfg = self.cfg
        self.ema = EMA(self.model, cfg.ema_decay)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                     weight_decay=cfg.weight_decay)  # fmt: skip
        self.clipper = (AdaptiveGradClip(cfg.clip_decay) if cfg.clip_mode == "adaptive"
                        else FixedGradClip(cfg.clip_max_norm))  # fmt: skip
        self.step = 0

    def _data(self) -> None:
        """The clip source and the bucket sampler. With a latent cache no encoder is loaded at all: that is where
        its memory saving comes from."""
        cfg = self.cfg
        if cfg.cache:
            self.data = CachedClips(cfg)
        else:
            vae, text = load_encoders(cfg, self.output)
            self.data = OnlineClips(cfg, vae, text)
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
        """``checkpoints/step_<n>.safetensors`` written atomically (by rank 0), then ``latest`` naming it."""
        folder = self.output / "checkpoints"
        path = folder / f"step_{self.step:07d}.safetensors"
        state = self.state_dict()  # a collective under FSDP: every rank takes part, rank 0 writes
        if self.rank == 0:
            save_state(state, path)
            write_atomic(folder / "latest", path.name)
        if self.distributed:
            dist.barrier()
        return path

    def _checkpoint_to_resume(self) -> tuple[dict, Path] | None:
        """The state ``checkpoints/latest`` names; if ``latest`` is empty, truncated or names a missing or corrupt
        file, the newest intact ``step_*.safetensors``, with a warning. None if there is no checkpoint at all."""
        folder = self.output / "checkpoints"
        latest = folder / "latest"
        named = latest.read_text().strip() if latest.is_file() else ""
        candidates = sorted(folder.glob("step_*.safetensors"), reverse=True)
        if named:
            candidates = [folder / named] + [c for c in candidates if c.name != named]
        problems = []
        for path in candidates:
            try:
                state = read_checkpoint(path)
            except (FileNotFoundError, CheckpointError) as e:
                problems.append(str(e))
                continue
            if path.name != named:
                why = f"{latest} names {named!r}" if named else f"{latest} is missing or empty"
                warnings.warn(f"resume: {why}; {'; '.join(problems) or 'no usable file there'}; resuming from the "
                              f"newest intact checkpoint {path}", stacklevel=3)  # fmt: skip
            return state, path
        if problems:
            raise CheckpointError(f"resume: no intact checkpoint in {folder}: {'; '.join(problems)}")
        return None

    def resume(self) -> bool:
        """Load ``checkpoints/latest`` (or the newest intact checkpoint if it is unusable, with a warning) and
        drop the ``metrics.jsonl`` rows past its step; returns whether there was a checkpoint."""
        found = self._checkpoint_to_resume()
        if found is None:
            return False
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        state, _ = found
        set_state_dict(self.model, self.opt, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                       options=StateDictOptions(full_state_dict=True))
        self.ema.load_state_dict(state["ema"])
        self.clipper.load_state_dict(state["clip"])
        self.step = state["step"]
        if self.rank == 0:
            self._truncate_metrics()
        return True

    def _truncate_metrics(self) -> None:
        """Keep the ``metrics.jsonl`` rows up to the resumed step: the steps after it are trained again."""
        log = self.output / "metrics.jsonl"
        if not log.is_file():
            return
        lines = log.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and _row_step(line) <= self.step]
        if len(kept) != len(lines):
            write_atomic(log, "".join(kept))

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
                       **memory_row(self.device), **stats.as_dict()}
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
