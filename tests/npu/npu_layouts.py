"""Input layouts of the NPU tests: the masks and q/k/v as a model hands them over, not only contiguous tensors."""
from __future__ import annotations

import torch

MASK_LAYOUTS = ("contiguous", "sliced", "expanded", "transposed")


def make_mask(layout: str, B: int, N: int, g: torch.Generator, device=None) -> torch.Tensor:
    """A (B, N) bool mask, about 70% True, as: a contiguous tensor, every other column of a wider one
    (``wide[:, ::2]``), one row expanded over the batch (stride 0) or the transpose of an (N, B) tensor. The view is
    taken on ``device`` (moving a view to another device would make it contiguous)."""
    draw = lambda *shape: (torch.rand(*shape, generator=g) > 0.3).to(device)  # noqa: E731
    if layout == "contiguous":
        return draw(B, N)
    if layout == "sliced":
        return draw(B, 2 * N)[:, ::2]
    if layout == "expanded":
        return draw(1, N).expand(B, N)
    if layout == "transposed":
        return draw(N, B).t()
    raise ValueError(f"unknown mask layout {layout!r}; expected one of {MASK_LAYOUTS}")


def strided_qkv(B: int, N: int, H: int, D: int, g: torch.Generator, *, heads_major: bool = False, device=None,
                dtype=torch.float32):  # fmt: skip
    """q, k, v (B, N, H, D) as views on ``device``: chunks of one fused projection (B, N, 3, H, D), or with
    ``heads_major`` the transposes of (B, H, N, D) tensors."""
    draw = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)  # noqa: E731
    if heads_major:
        return [draw(B, H, N, D).transpose(1, 2) for _ in range(3)]
    return list(draw(B, N, 3, H, D).unbind(2))
