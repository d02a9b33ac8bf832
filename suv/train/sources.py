"""Where a training batch comes from: clips encoded on the fly (the reference's online path) or the latent cache.

Both give ``batch(indices, drop, g, keep) -> (x0 (B, C, T, H, W), t5 hidden (B, 1, L, D), t5 mask (B, 1, L),
clip pooled (B, 1, P))`` for the clips the sampler chose (one shape), every random choice drawn from ``g`` for the
whole global batch while only the rows ``keep`` (this rank's slice) are produced; a
caption is replaced by ``""`` with probability ``drop`` (classifier-free guidance training). ``shapes`` gives each
clip's ``"TxHxW"`` (None if dropped) for the bucket sampler.
"""
from __future__ import annotations

import random

import torch

from .buckets import clip_sizes
from .data import load_clip, read_index, valid_frame_count


def pick_captions(indices: list[int], caption_counts, drop: float, g: torch.Generator):
    """(clip index, caption index or None for the dropped caption) for each clip."""
    picks = []
    for i in indices:
        c = int(torch.randint(caption_counts(i), (1,), generator=g))
        picks.append((i, None if float(torch.rand((), generator=g)) < drop else c))
    return picks


class TextEncoders:
    """T5 (hidden states and mask) and CLIP (pooled) embeddings of one caption, as training conditions on them."""

    def __init__(self, t5, clip):
        self.t5, self.clip = t5, clip

    @torch.no_grad()
    def __call__(self, caption: str):
        hidden, mask = self.t5.encode([caption])
        return hidden[0], mask[0], self.clip.encode([caption])[0]


class OnlineClips:
    """Decode, resample and VAE-encode the batch's clips and run both text encoders at every step."""

    def __init__(self, cfg, vae, text: TextEncoders):
        self.cfg, self.vae, self.text = cfg, vae, text
        self.records = read_index(cfg.data)
        self.sizes = clip_sizes(self.records, cfg)
        frames = valid_frame_count(cfg.num_frames)
        self.shapes = [None if hw is None else f"{frames}x{hw[0]}x{hw[1]}" for hw in self.sizes]

    @torch.no_grad()
    def encode_clip(self, i: int, rng: random.Random) -> torch.Tensor | None:
        """Normalised latent mean ``(C, T', H', W')`` of a random window of clip ``i``, or None if unusable."""
        cfg = self.cfg
        if self.sizes[i] is None:
            return None
        video = load_clip(self.records[i], cfg.num_frames, *self.sizes[i], cfg.train_fps, rng)
        if video is None:
            return None
        return self.vae.normalize_latents(self.vae.encode(video.unsqueeze(0)).mean)[0]

    def batch(self, indices: list[int], drop: float, g: torch.Generator, keep: slice = slice(None)):
        seed = int(torch.randint(2**62, (1,), generator=g))
        picks = pick_captions(indices, lambda i: len(self.records[i].captions), drop, g)
        rows = []
        for pos in range(len(picks))[keep]:  # only this rank's clips are decoded and encoded
            i, c = picks[pos]
            x0 = self.encode_clip(i, random.Random(seed + pos))
            if x0 is None:
                raise ValueError(f"{self.records[i].path}: too short for {self.cfg.num_frames} frames at "
                                 f"{self.cfg.train_fps} fps")
            rows.append((x0, *self.text("" if c is None else self.records[i].captions[c])))
        return tuple(torch.stack(t) for t in zip(*rows))


class CachedClips:
    """The latent cache (``suv-cache``), checked against the config and its checksums, held in memory."""

    def __init__(self, cfg):
        from .cache import read_cache

        self.latents, self.captions, self.empty, self.shapes = read_cache(cfg.cache, cfg)

    def batch(self, indices: list[int], drop: float, g: torch.Generator, keep: slice = slice(None)):
        picks = pick_captions(indices, lambda i: len(self.captions[i]), drop, g)[keep]
        rows = [(self.latents[i], *(self.empty if c is None else self.captions[i][c])) for i, c in picks]
        return tuple(torch.stack(t) for t in zip(*rows))
