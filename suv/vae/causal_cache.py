"""State carried between temporal chunks of one chunked encode or decode ("Causal Cache", spec 1.8).

Every temporal layer of the WF-VAE is causal, except that the decoder's trilinear upsampling looks one frame
ahead. A chunked pass therefore feeds frames through the network in consecutive pieces, and each layer keeps under
its own key exactly what the next piece needs:

- a causal convolution keeps the input frames its next output window still reads (``causal_context``), which
  come before the chunk's own frames;
- a temporal upsampler keeps its last input frame and emits the frames that depend on the next one a chunk later;
- the decoder keeps skip-connection frames that are ahead of its main path (``aligned_frames``).

The first chunk pads by replicating its first frame, as the direct pass does, so a chunked pass computes the same
function as a direct one on any split of the frames. ``cache=None`` everywhere means a direct (single-chunk) pass.
"""

from __future__ import annotations

from typing import Any, Hashable

import torch


class CausalCache:
    """Per-call chunk state; create a fresh one for every encode or decode (so every call may use a new T)."""

    def __init__(self) -> None:
        self._state: dict[Hashable, Any] = {}
        # True while the last chunk of the clip runs: look-ahead layers then emit what they held back.
        self.final = False

    def pop(self, key: Hashable, default: Any = None) -> Any:
        return self._state.pop(key, default)

    def put(self, key: Hashable, value: Any) -> None:
        self._state[key] = value


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d if ``x`` (B, C, T, H, W) has its channels innermost (also a channel slice of such a
    tensor), else contiguous_format: the layout that a layer's output should keep."""
    return torch.channels_last_3d if x.shape[1] > 1 and x.stride(1) == 1 else torch.contiguous_format


def is_final(cache: CausalCache | None) -> bool:
    """A direct pass (no cache) is its own final chunk."""
    return cache is None or cache.final


def cat_frames(held: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """torch.cat along time, in x's layout. torch.cat falls back to the standard layout when a part's layout is
    ambiguous (a single frame), and every later layer of the chunk would then convert its input."""
    return torch.cat([held, x], dim=2).contiguous(memory_format=memory_format(x))


def causal_context(x: torch.Tensor, kernel: int, stride: int, key: Hashable, cache: CausalCache | None) -> torch.Tensor:
    """The temporal context of a causal conv with temporal ``kernel``/``stride`` (no temporal padding): the frames
    that its input ``cat_frames(context, x)`` has before x.

    x: (B, C, T, H, W) -> context (B, C, K, H, W). At the start of a clip it is the first frame repeated
    ``kernel - 1`` times; later chunks get the frames the previous chunk left unconsumed, which keeps strided
    output windows aligned with the direct pass for any chunk length. Returned apart from x so that a conv can
    read both in place (``skiparse.conv3d_3x3``'s ``context``) instead of from a full-size copy.
    """
    held = None if cache is None else cache.pop(key)
    if held is None:
        # Materialised in x's layout: concatenating a stride-0 view would drop a channels-last layout.
        held = x[:, :, :1].expand(-1, -1, kernel - 1, -1, -1).contiguous(memory_format=memory_format(x))
    if cache is not None:
        consumed = max((held.shape[2] + x.shape[2] - kernel) // stride + 1, 0) * stride
        # The unconsumed frames of [held, x], as a new tensor: a view would keep the whole chunk alive until the next.
        t = held.shape[2]
        if consumed >= t:
            rest = x[:, :, consumed - t :].clone(memory_format=memory_format(x))
        else:
            rest = cat_frames(held[:, :, consumed:], x)  # already a new tensor
        cache.put(key, rest)
    return held


def aligned_frames(frames: torch.Tensor, count: int, key: Hashable, cache: CausalCache | None) -> torch.Tensor:
    """The next ``count`` frames of a stream that runs ahead of the path it is added to; the rest are held.

    frames: (B, C, T, H, W), the stream's newly produced frames -> (B, C, count, H, W).
    """
    if cache is None:
        return frames
    held = cache.pop(key)
    if held is not None:
        frames = cat_frames(held, frames)
    if frames.shape[2] < count:
        raise RuntimeError(f"causal cache underflow at {key!r}: need {count} frames, have {frames.shape[2]}")
    cache.put(key, frames[:, :, count:].clone(memory_format=memory_format(frames)))
    return frames[:, :, :count]
