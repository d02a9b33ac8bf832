"""Multi-resolution training: the Min-Max token target size and a sampler with one shape per batch (spec 4.5).

Min-Max tokens with five ratios: a clip's aspect is snapped to the nearest of 9:16, 3:4, 1:1, 4:3, 16:9 and scaled to
``(r_h k s, r_w k s)`` with ``s`` the stride (16 in v1.5) and the largest ``k`` whose area stays within ``max_hxw``;
clips smaller than ``min_hxw`` are dropped. Clips are bucketed by ``"TxHxW"``; buckets with fewer than
``4 x global batch`` clips are dropped. The sampler shuffles within buckets, cuts them into global batches of one
shape and shuffles the batches, once per epoch from ``(seed, epoch)``, so the batch of any step is found without
replaying the ones before it (resume).
"""
from __future__ import annotations

import math
from collections import Counter

import torch

RATIOS = ((9, 16), (3, 4), (1, 1), (4, 3), (16, 9))


def min_max_target(height: int, width: int, max_hxw: int, min_hxw: int, stride: int = 16) -> tuple[int, int] | None:
    """Training ``(height, width)`` of a ``height x width`` clip, or None if its area is below ``min_hxw``."""
    if height * width < min_hxw:
        return None
    rh, rw = min(RATIOS, key=lambda r: abs(math.log((height / width) / (r[0] / r[1]))))
    k = math.isqrt(max_hxw // (rh * rw * stride * stride))
    if k < 1:
        return None
    return rh * k * stride, rw * k * stride


class BucketSampler:
    """Global batches of ``batch_size x world`` clip indices, one shape per batch; rank ``r`` takes its slice."""

    def __init__(self, shapes: list[str], batch_size: int, world: int = 1, seed: int = 0, min_bucket_factor: int = 4):
        self.global_batch = batch_size * world
        counts = Counter(s for s in shapes if s is not None)  # None: a dropped clip
        keep = {s for s, n in counts.items() if n >= min_bucket_factor * self.global_batch}
        if not keep:
            raise ValueError(f"no bucket holds {min_bucket_factor} x {self.global_batch} clips (shapes: "
                             f"{dict(counts)}); add data or lower the batch size")
        # Most frequent first, as upstream orders them; ties by name for determinism.
        self.buckets = [[i for i, s in enumerate(shapes) if s == shape]
                        for shape in sorted(keep, key=lambda s: (-counts[s], s))]
        self.dropped = sorted(set(counts) - keep)
        self.seed = seed
        self.steps_per_epoch = sum(len(b) // self.global_batch for b in self.buckets)
        self._last: tuple[int, list[list[int]]] | None = None

    def _epoch(self, epoch: int) -> list[list[int]]:
        if self._last is not None and self._last[0] == epoch:
            return self._last[1]
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        batches = []
        for bucket in self.buckets:
            order = [bucket[i] for i in torch.randperm(len(bucket), generator=g).tolist()]
            batches += [order[j:j + self.global_batch] for j in range(0, len(order) - self.global_batch + 1,
                                                                       self.global_batch)]
        self._last = (epoch, [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()])
        return self._last[1]

    def batch(self, step: int) -> list[int]:
        """The global batch of ``step`` (0-based): every rank computes the same one."""
        epoch, i = divmod(step, self.steps_per_epoch)
        return self._epoch(epoch)[i]


def clip_sizes(records, cfg) -> list[tuple[int, int] | None]:
    """Training ``(height, width)`` of every record: Min-Max tokens when ``cfg.max_hxw`` is set, else the fixed
    ``(cfg.height, cfg.width)``; None for a clip that is dropped."""
    if cfg.max_hxw is None:
        return [(cfg.height, cfg.width)] * len(records)
    return [min_max_target(r.height, r.width, cfg.max_hxw, cfg.min_hxw, cfg.hw_stride) for r in records]
