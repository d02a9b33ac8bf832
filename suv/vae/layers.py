"""WF-VAE building blocks on video tensors (B, C, T, H, W), streaming-capable through an optional ``CausalCache``.

Module and parameter names reproduce the released checkpoint's keys (e.g. ``conv1.conv.weight`` for a causal 3D
conv, ``norm1.norm.weight`` for a LayerNorm). Every ``forward`` takes ``(x, cache=None)`` so that containers can pass
the cache through uniformly; layers without temporal context ignore it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import skiparse

from .causal_cache import CausalCache, cat_frames, causal_context, is_final, memory_format


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)


def _conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int, int],
            padding: tuple[int, int, int], context: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """F.conv3d of ``cat_frames(context, x)`` in x's layout; 3x3 stride-1 convs padded 1 in space only run
    ``skiparse.conv3d_3x3`` (Winograd), which reads the context frames in place."""
    if stride == (1, 1, 1) and weight.shape[3:] == (3, 3) and padding == (0, 1, 1):
        y = skiparse.conv3d_3x3(x, weight, bias, context=context)
    else:
        y = F.conv3d(x if context is None else cat_frames(context, x), weight, bias, stride, padding)
    return y.contiguous(memory_format=memory_format(x))


class CausalConv3d(nn.Module):
    """3D conv that is causal in time: no temporal padding; the first frame is replicated ``k_t - 1`` times in front.

    (B, C_in, T, H, W) -> (B, C_out, (T - 1) // s_t + 1, H', W') for a whole clip; chunks continue the clip.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int], stride: int = 1,
                 padding: int = 0, bias: bool = True) -> None:  # fmt: skip
        super().__init__()
        kernel_size, stride, padding = _triple(kernel_size), _triple(stride), _triple(padding)
        self.time_kernel, self.time_stride = kernel_size[0], stride[0]
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride, (0, padding[1], padding[2]), bias=bias)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        context = causal_context(x, self.time_kernel, self.time_stride, self, cache) if self.time_kernel > 1 else None
        return _conv3d(x, self.conv.weight, self.conv.bias, self.conv.stride, self.conv.padding, context)


class FrameConv2d(nn.Conv2d):
    """2D conv applied to every frame: (B, C_in, T, H, W) -> (B, C_out, T, H', W'). Keys stay 2D (``weight`` 4-D).

    Runs as a conv3d with a 1-frame kernel, which avoids the (B*T, C, H, W) transposes of a reshape; 3x3 stride-1
    convs go through ``skiparse.conv3d_3x3`` (Winograd on the CPU), like those of ``CausalConv3d``.
    """

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        return _conv3d(x, self.weight.unsqueeze(2), self.bias, (1, *self.stride), (0, *self.padding))


class LayerNorm(nn.Module):
    """LayerNorm over channels at every (t, h, w) position; wraps ``nn.LayerNorm`` as ``.norm`` (checkpoint keys)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> normalised (B, T, H, W, C), contiguous."""
        norm = self.norm
        return F.layer_norm(x.movedim(1, -1), norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        # Statistics along dim 1 in place: about 2x faster on CPU than F.layer_norm between two transposing copies.
        var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mean).mul_(var.add_(self.norm.eps).rsqrt_())
        return y.mul_(self.norm.weight.view(shape)).add_(self.norm.bias.view(shape))


class ResnetBlock(nn.Module):
    """norm -> SiLU -> conv -> norm -> SiLU -> conv, plus a (1x1 conv) shortcut; 2D per frame or causal 3D.

    (B, C_in, T, H, W) -> (B, C_out, T, H, W). ``temporal=False`` is the reference's ``ResnetBlock2D`` (keys
    ``conv1.weight``), ``temporal=True`` its ``ResnetBlock3D`` (keys ``conv1.conv.weight``). Dropout is 0 and omitted.
    """

    def __init__(self, in_channels: int, out_channels: int, temporal: bool) -> None:
        super().__init__()
        conv = CausalConv3d if temporal else FrameConv2d
        self.norm1 = LayerNorm(in_channels)
        self.conv1 = conv(in_channels, out_channels, 3, padding=1)
        self.norm2 = LayerNorm(out_channels)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = conv(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True), cache)
        h = F.silu(self.norm2(h), inplace=True)  # rebound before conv2 runs: conv1's output is freed first
        h = self.conv2(h, cache)
        shortcut = self.nin_shortcut(x, cache) if hasattr(self, "nin_shortcut") else x
        return h.add_(shortcut)


class AttnBlock(nn.Module):
    """Single-head spatial self-attention inside each frame (sequence H*W, head dim C), plus residual.

    (B, C, T, H, W) -> same. q/k/v/proj_out are stored as 1x1x1 causal convs (``q.conv.weight``) as released, and
    applied as one matmul on channels-last activations.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = LayerNorm(channels)
        self.q = CausalConv3d(channels, channels, 1)
        self.k = CausalConv3d(channels, channels, 1)
        self.v = CausalConv3d(channels, channels, 1)
        self.proj_out = CausalConv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        qkv_w = torch.cat([m.conv.weight for m in (self.q, self.k, self.v)]).flatten(1)
        qkv_b = torch.cat([m.conv.bias for m in (self.q, self.k, self.v)])
        qkv = F.linear(self.norm.channels_last(x), qkv_w, qkv_b).view(b * t, h * w, 3 * c)
        q, k, v = qkv.chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = F.linear(out, self.proj_out.conv.weight.flatten(1), self.proj_out.conv.bias)
        return (x + out.view(b, t, h, w, c).movedim(-1, 1)).contiguous(memory_format=memory_format(x))


class Downsample(nn.Module):
    """Spatial /2 per frame: zero-pad right/bottom by 1, 3x3 conv stride 2 (v1.3 level 1). T unchanged."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = FrameConv2d(in_channels, out_channels, 3, stride=2)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Spatial2xTime2x3DDownsample(nn.Module):
    """Space and time /2: zero-pad right/bottom by 1, causal 3x3x3 conv stride 2. T -> (T - 1) // 2 + 1."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, 3, stride=2)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)), cache)


def _upsample_space(x: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C, T, 2H, 2W); interpolation runs in fp32 for half-precision inputs."""
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(x.float(), scale_factor=(1, 2, 2), mode=mode, **kwargs).to(x.dtype)


class Upsample(nn.Module):
    """Spatial x2 per frame: nearest, then 3x3 conv (v1.3 level 1). T unchanged."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = FrameConv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        return self.conv(_upsample_space(x, "nearest"))


class Spatial2xTime2x3DUpsample(nn.Module):
    """Space and time x2, then a causal 3x3x3 conv. T -> 2T - 1 (T = 1 -> 1).

    Frame 0 is only upsampled in space. Frames 1.. are interpolated x2 in time like ``F.interpolate`` with
    ``t_interpolation`` (align_corners=False): for trilinear, output pair i mixes inputs i and i + 1 with weights
    (3/4, 1/4) and (1/4, 3/4), the segment's first and last frames are copied. That pair needs the *next* input
    frame, so in a chunked pass the last input frame is held and its pair emitted with the next chunk; the final
    chunk emits the copied last frame.
    """

    def __init__(self, in_channels: int, out_channels: int, t_interpolation: str) -> None:
        super().__init__()
        self.t_interpolation = t_interpolation
        self.conv = CausalConv3d(in_channels, out_channels, 3, padding=1)

    def _upsample_time(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        # State: (frames seen so far, last frame seen, spatially upsampled).
        seen, last = (0, None) if cache is None else cache.pop(self, (0, None))
        trilinear = self.t_interpolation == "trilinear"
        head = []  # frames emitted as they are, before the interpolated pairs
        if seen == 0:  # frame 0: space only
            head.append(x[:, :, :1])
            x, seen = x[:, :, 1:], 1
        if trilinear and seen == 1 and x.shape[2] > 0:  # the segment's first frame is copied (clamped index)
            head.append(x[:, :, :1])
        seq = x if last is None or not trilinear else torch.cat([last, x], dim=2)
        pairs = seq.shape[2] - 1 if trilinear else x.shape[2]
        if x.shape[2] > 0:
            seen, last = seen + x.shape[2], x[:, :, -1:]
        tail = last if trilinear and is_final(cache) and seen > 1 else None  # the segment's last frame, copied
        if tail is None and cache is not None:
            cache.put(self, (seen, None if last is None else last.clone()))
        # Written into one output in x's layout (no stack/cat of the full-resolution frames).
        h = len(head)
        shape = (*x.shape[:2], h + 2 * max(pairs, 0) + (0 if tail is None else 1), *x.shape[3:])
        out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format(x))
        for i, frame in enumerate(head):
            out[:, :, i : i + 1] = frame
        if pairs > 0:
            even, odd = out[:, :, h : h + 2 * pairs : 2], out[:, :, h + 1 : h + 2 * pairs : 2]
            if trilinear:
                a, b = seq[:, :, :-1], seq[:, :, 1:]
                for dst, weight in ((even, 0.25), (odd, 0.75)):
                    if torch.is_grad_enabled() and seq.requires_grad:  # out= has no autograd
                        dst.copy_(torch.lerp(a, b, weight))
                    else:
                        torch.lerp(a, b, weight, out=dst)
            else:
                even.copy_(x)
                odd.copy_(x)
        if tail is not None:
            out[:, :, -1:] = tail
        return out

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        x = _upsample_space(x, "trilinear")
        return self.conv(self._upsample_time(x, cache), cache)
