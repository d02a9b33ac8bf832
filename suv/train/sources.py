"""Where a training batch comes from: clips encoded on the fly (the reference's online path) or the latent cache.

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

import torch

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
        self.bad: dict[int, str] = {}  # clip index -> why it cannot be used

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
