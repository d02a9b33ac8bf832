"""The SUV training loop: flow matching, adaptive gradient clipping, AdamW, EMA, atomic checkpoints, exact resume.

Every random draw of step ``s`` (which clips, which caption, the caption drop, sigma, noise) comes from a generator
seeded with ``(seed, s)``, so the data order and the noise are a function of the step alone: resuming from a
checkpoint of step ``s`` continues bit-identically, and skipping a bad batch is resuming at ``s + 1``.
"""
from __future__ import annotations

import json
import os
import random
import resource
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from .clipping import AdaptiveGradClip, ClipStats, FixedGradClip
from .data import load_clip, read_index, valid_frame_count
from .ema import EMA
from .objective import masked_mse, noisy_latents, sample_sigmas


@dataclass
class TrainConfig:
    """What ``configs/<name>.yaml`` holds. Paths are relative to the config file's folder."""

    data: str  # annotation JSON
    model: str = "suv-tiny"  # SUV preset or reference config JSON
    vae: str = "tiny"  # WF-VAE preset, or a checkpoint path
    t5: str | None = None  # local T5 directory; None = tiny random encoders (tests, demos)
    clip: str | None = None
    t5_max_length: int = 512
    num_frames: int = 9
    height: int = 64
    width: int = 64
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

    @classmethod
    def from_dict(cls, raw: dict, base: Path | None = None) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        cfg = cls(**raw)
        if base is not None:
            for name in ("data", "t5", "clip"):
                value = getattr(cfg, name)
                if value is not None and not Path(value).is_absolute():
                    setattr(cfg, name, str(base / value))
        cfg.betas = tuple(cfg.betas)
        if cfg.clip_mode not in ("adaptive", "fixed"):
            raise ValueError(f"clip_mode: expected 'adaptive' or 'fixed', got {cfg.clip_mode!r}")
        if valid_frame_count(cfg.num_frames) != cfg.num_frames:
            raise ValueError(f"num_frames: expected (T - 1) % 8 == 0, got {cfg.num_frames}")
        return cfg


class ExtremeGradNorm(RuntimeError):
    """A step's gradient norm was NaN/Inf or above the adaptive bound: training stopped, resumable past it."""


def _step_generator(seed: int, step: int, micro: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 97 + micro)


class EncodedClips:
    """Every clip of the index encoded once (WF-VAE latent, normalised; T5 and CLIP embeddings of each caption
    and of the empty caption): training then runs no encoder, as with the report's latent cache."""

    @torch.no_grad()
    def __init__(self, cfg: TrainConfig, vae, t5, clip):
        rng = random.Random(cfg.seed)
        self.latents, self.captions = [], []
        for record in read_index(cfg.data):
            video = load_clip(record, cfg.num_frames, cfg.height, cfg.width, cfg.train_fps, rng)
            if video is None:
                continue
            z = vae.encode(video.unsqueeze(0)).mean  # the mean: a fixed target per clip for the toy data
            self.latents.append(vae.normalize_latents(z)[0])
            self.captions.append([self._embed(t5, clip, c) for c in record.captions])
        if not self.latents:
            raise ValueError(f"{cfg.data}: no clip gives {cfg.num_frames} frames at {cfg.train_fps} fps")
        self.empty = self._embed(t5, clip, "")

    @staticmethod
    def _embed(t5, clip, caption: str):
        hidden, mask = t5.encode([caption])
        return hidden[0], mask[0], clip.encode([caption])[0]

    def batch(self, size: int, drop: float, g: torch.Generator):
        """``size`` random clips with a random caption each (``""`` with probability ``drop``)."""
        idx = torch.randint(len(self.latents), (size,), generator=g).tolist()
        texts = []
        for i in idx:
            caps = self.captions[i]
            pick = caps[int(torch.randint(len(caps), (1,), generator=g))]
            texts.append(self.empty if float(torch.rand((), generator=g)) < drop else pick)
        x0 = torch.stack([self.latents[i] for i in idx])
        hidden, mask, pooled = (torch.stack(t) for t in zip(*texts))
        return x0, hidden, mask, pooled


class Trainer:
    def __init__(self, cfg: TrainConfig, output: str | Path):
        from ..models import SparseUMMDiT

        self.cfg, self.output = cfg, Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.device = torch.device(cfg.device)
        self.model = SparseUMMDiT.from_config(cfg.model).to(self.device).train()
        self.ema = EMA(self.model, cfg.ema_decay)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                     weight_decay=cfg.weight_decay)
        self.clipper = (AdaptiveGradClip(cfg.clip_decay) if cfg.clip_mode == "adaptive"
                        else FixedGradClip(cfg.clip_max_norm))
        self.step = 0
        self.data = EncodedClips(cfg, *self._encoders())

    def _encoders(self):
        from ..checkpoint import load_wfvae
        from ..text import CLIPTextEncoder, T5TextEncoder, make_tiny_clip, make_tiny_t5
        from ..vae import WFVAE

        cfg = self.cfg
        vae = load_wfvae(cfg.vae) if Path(cfg.vae).is_file() else WFVAE.from_config(cfg.vae)
        t5_dir, clip_dir = cfg.t5, cfg.clip
        if t5_dir is None or clip_dir is None:  # tiny random encoders matching the model's widths
            t5_dir = t5_dir or make_tiny_t5(self.output / "tiny_t5", d_model=self.model.config["caption_channels"])
            clip_dir = clip_dir or make_tiny_clip(self.output / "tiny_clip",
                                                  projection_dim=self.model.config["pooled_projection_dim"])
        return vae.eval(), T5TextEncoder(t5_dir, max_length=cfg.t5_max_length), CLIPTextEncoder(clip_dir)

    # ------------------------------------------------------------------------------------------ one step
    def train_step(self) -> tuple[float, ClipStats]:
        cfg, loss_sum = self.cfg, 0.0
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        for micro in range(cfg.grad_accum):
            g = _step_generator(cfg.seed, self.step, micro)
            x0, hidden, mask, pooled = (t.to(self.device) for t in self.data.batch(cfg.batch_size, cfg.cfg_drop, g))
            sigma = sample_sigmas(x0.shape[0], tuple(x0.shape[-2:]), g, device=self.device)
            noise = torch.randn(x0.shape, generator=g).to(self.device)
            x, target = noisy_latents(x0, noise, sigma)
            with autocast:
                pred = self.model(x, 1000.0 * sigma, hidden, mask, pooled)
            loss = masked_mse(pred, target) / cfg.grad_accum
            loss.backward()
            loss_sum += loss.item()
        stats = self.clipper(self.model.parameters())
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
        (self.output / "global_step_for_sampler.txt").write_text(f"{self.step}\n")
        raise ExtremeGradNorm(f"step {bad}: gradient norm {stats.grad_norm:.4g} is NaN/Inf or above the bound "
                              f"(threshold {stats.threshold:.4g}); saved {path}, `--resume` continues at step "
                              f"{self.step}, skipping that batch")

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.opt.state_dict(), "clip": self.clipper.state_dict(), "config": asdict(self.cfg)}

    def save(self) -> Path:
        """``checkpoints/step_<n>.pt`` written to a temporary file and renamed; ``latest`` names it."""
        folder = self.output / "checkpoints"
        folder.mkdir(exist_ok=True)
        path = folder / f"step_{self.step:07d}.pt"
        tmp = path.with_suffix(".pt.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        latest_tmp = folder / "latest.tmp"
        latest_tmp.write_text(path.name)
        os.replace(latest_tmp, folder / "latest")
        return path

    def resume(self) -> bool:
        """Load ``checkpoints/latest`` if there is one; returns whether it did."""
        latest = self.output / "checkpoints" / "latest"
        if not latest.is_file():
            return False
        state = torch.load(latest.parent / latest.read_text().strip(), map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.clipper.load_state_dict(state["clip"])
        self.step = state["step"]
        return True

    # ------------------------------------------------------------------------------------------ the loop
    def fit(self, max_steps: int | None = None, progress: bool = True) -> list[dict]:
        """Train to ``max_steps`` (absolute); metrics go to ``metrics.jsonl``, checkpoints every ``save_every``."""
        cfg, end = self.cfg, max_steps if max_steps is not None else self.cfg.max_steps
        log, rows = self.output / "metrics.jsonl", []
        bar = tqdm(total=end, initial=self.step, desc="train", disable=not progress)
        with log.open("a") as f:
            while self.step < end:
                start = time.perf_counter()
                loss, stats = self.train_step()
                seconds = time.perf_counter() - start
                row = {"step": self.step, "loss": loss, "step_seconds": seconds,
                       "samples_per_second": cfg.batch_size * cfg.grad_accum / seconds,
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
