"""Where a training batch comes from: clips encoded on the fly (``OnlineClips``, the reference's online path, with
the encoders of ``load_encoders``) or the latent cache (``suv.train.cache.CachedClips``).

Both give ``batch(indices, drop, g, keep) -> (x0 (B, C, T, H, W), t5 hidden (B, 1, L, D), t5 mask (B, 1, L),
clip pooled (B, 1, P))`` for the clips the sampler chose (one shape), every random choice drawn from ``g`` for the
whole global batch while only the rows ``keep`` (this rank's slice) are produced; a
caption is replaced by ``""`` with probability ``drop`` (classifier-free guidance training). ``shapes`` gives each
clip's ``"TxHxW"`` (None if dropped) for the bucket sampler.

Online, a clip that cannot be used (missing, undecodable, too short) is logged once, remembered, and its row is
replaced by the first usable clip of the same shape in an order drawn from the step's seed and the row: the result
does not depend on which clips were already found bad, so ranks agree and a resumed run repeats the batch.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

import torch.distributed as dist

from ..models import resolve_config
from ..text import TextEncoders, make_tiny_encoders
from ..vae import WFVAE, load_wfvae
from .buckets import clip_sizes
from .data import load_clip, read_index, valid_frame_count

log = logging.getLogger(__name__)


def pick_captions(indices: list[int], caption_counts, drop: float, g: torch.Generator):
    """(clip index, caption index or None for the dropped caption) for each clip."""
    picks = []
    for i in indices:
        c = int(torch.randint(caption_counts(i), (1,), generator=g))
        picks.append((i, None if float(torch.rand((), generator=g)) < drop else c))
    return picks


def load_encoders(cfg, workdir: Path) -> tuple[WFVAE, TextEncoders]:
    """The WF-VAE and the text encoders of a config; without T5/CLIP directories, tiny random encoders of the
    model's widths are written to ``workdir`` (once, by rank 0)."""
    if Path(cfg.vae).is_file():
        vae = load_wfvae(cfg.vae)
    else:  # random weights (a preset name): seeded, so that two builds of one config encode alike
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            vae = WFVAE.from_config(cfg.vae)
    t5, clip = cfg.t5, cfg.clip
    if t5 is None or clip is None:
        model = resolve_config(cfg.model)
        rank0 = not dist.is_initialized() or dist.get_rank() == 0
        tiny = make_tiny_encoders(workdir, model.caption_channels, model.pooled_projection_dim, write=rank0)
        if dist.is_initialized():
            dist.barrier()
        t5, clip = t5 or tiny[0], clip or tiny[1]
    return vae.eval(), TextEncoders.load(t5, clip, max_length=cfg.t5_max_length)


class OnlineClips:
    """Decode, resample and VAE-encode the batch's clips and run both text encoders at every step."""

    def __init__(self, cfg, vae, text: TextEncoders):
        self.cfg, self.vae, self.text = cfg, vae, text
        self.records = read_index(cfg.data)
        self.sizes = clip_sizes(self.records, cfg)
        frames = valid_frame_count(cfg.num_frames)
        self.shapes = [None if hw is None else f"{frames}x{hw[0]}x{hw[1]}" for hw in self.sizes]
        self.bad: dict[int, str] = {}  # clip index -> why it cannot be used

    def caption(self, text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(T5 hidden (1, L, D), T5 mask (1, L), CLIP pooled (1, P))`` of one caption."""
        hidden, mask, pooled = self.text.encode([text])
        return hidden[0], mask[0], pooled[0]

    def _mark_bad(self, i: int, reason: str) -> None:
        self.bad[i] = reason
        log.warning("skipping clip %s: %s", self.records[i].path, reason)

    @torch.no_grad()
    def encode_clip(self, i: int, rng: random.Random) -> torch.Tensor | None:
        """Normalised latent mean ``(C, T', H', W')`` of a random window of clip ``i``, or None if unusable (the
        reason is logged once and kept in ``self.bad``)."""
        cfg = self.cfg
        if i in self.bad:
            return None
        if self.sizes[i] is None:
            self._mark_bad(i, "no training size (below min_hxw)")
            return None
        try:
            video = load_clip(self.records[i], cfg.num_frames, *self.sizes[i], cfg.train_fps, rng)
        except ImportError:  # PyAV itself is missing: not the clip's fault
            raise
        except Exception as e:  # missing file, PyAV or decode error of any kind
            self._mark_bad(i, f"{type(e).__name__}: {e}")
            return None
        if video is None:
            self._mark_bad(i, f"too short for {cfg.num_frames} frames at {cfg.train_fps} fps")
            return None
        return self.vae.normalize_latents(self.vae.encode(video.unsqueeze(0)).mean)[0]

    def _replacement(self, i: int, drop: float, seed: int, pos: int):
        """``(clip, caption, latent)`` standing in for the unusable clip ``i`` at row ``pos``: the first usable clip
        of the same shape in an order drawn from ``(seed, pos)``, with a fresh caption pick."""
        shape = self.shapes[i]
        same = [j for j, s in enumerate(self.shapes) if s == shape]
        g = torch.Generator().manual_seed(seed + pos)  # local: the step's generator must not depend on failures
        for k in torch.randperm(len(same), generator=g).tolist():
            x0 = self.encode_clip(same[k], random.Random(f"{seed}/{pos}/{same[k]}"))
            if x0 is not None:
                return *pick_captions([same[k]], lambda j: len(self.records[j].captions), drop, g)[0], x0
        failed = sum(j in self.bad for j in same)
        raise RuntimeError(f"every clip of shape {shape} is unusable ({failed} of {len(same)} failed to load; "
                           "see the warnings above)")

    def batch(self, indices: list[int], drop: float, g: torch.Generator, keep: slice = slice(None)):
        seed = int(torch.randint(2**62, (1,), generator=g))
        picks = pick_captions(indices, lambda i: len(self.records[i].captions), drop, g)
        rows = []
        for pos in range(len(picks))[keep]:  # only this rank's clips are decoded and encoded
            i, c = picks[pos]
            x0 = self.encode_clip(i, random.Random(seed + pos))
            if x0 is None:
                i, c, x0 = self._replacement(i, drop, seed, pos)
            rows.append((x0, *self.caption("" if c is None else self.records[i].captions[c])))
        return tuple(torch.stack(t) for t in zip(*rows))
