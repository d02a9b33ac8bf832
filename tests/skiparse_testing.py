"""Helpers of the skiparse op tests: input makers, runs on a backend, the FlashAttention error rule."""
from __future__ import annotations

import pytest
import torch

import skiparse
from skiparse.backends import status

requires_cpu_ext = pytest.mark.skipif(not status("cpu")[0], reason=f"CPU backend off: {status('cpu')[1]}")


def make_inputs(B, L, H, D, T, *, dtype=torch.float32, masks=False, requires_grad=True, seed=0):
    """Random attention inputs (fp32 draws cast to ``dtype``) as keyword arguments of skiparse_attention."""
    g = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return torch.randn(*shape, generator=g).to(dtype).requires_grad_(requires_grad)

    kw = dict(q=draw(B, L, H, D), k=draw(B, L, H, D), v=draw(B, L, H, D))
    if T:
        kw.update(text_q=draw(B, T, H, D), text_k=draw(B, T, H, D), text_v=draw(B, T, H, D))
    if masks:
        kw["video_mask"] = torch.rand(B, L, generator=g) > 0.3
        if T:
            kw["text_mask"] = torch.rand(B, T, generator=g) > 0.3
    return kw


def tensor_inputs(kw):
    names = ["q", "k", "v", "text_q", "text_k", "text_v"]
    return [n for n in names if kw.get(n) is not None]


def cast(kw, dtype):
    """Detached copies of the float inputs in ``dtype`` (masks kept), with grad enabled."""
    out = {}
    for n, t in kw.items():
        out[n] = t.detach().to(dtype).requires_grad_(True) if t.is_floating_point() else t
    return out


def run(backend, kw, sparsity, group, grads=None):
    """Forward (and backward with ``grads``) on ``backend``: returns (out, text_out, {name: grad})."""
    with skiparse.use_backend(backend):
        out, text_out = skiparse.skiparse_attention(sparsity=sparsity, group=group, **kw)
    if grads is None:
        return out, text_out, {}
    outs = [out] + ([text_out] if text_out is not None else [])
    names = tensor_inputs(kw)
    gs = torch.autograd.grad(outs, [kw[n] for n in names], [g.to(o.dtype) for g, o in zip(grads, outs)])
    return out, text_out, dict(zip(names, gs))


def rounding_floor(ref: torch.Tensor, dtype: torch.dtype) -> float:
    """The dtype's rounding error at the reference's magnitude (FlashAttention's floor term)."""
    r = ref.to(dtype)
    return (r + 0.3 - 0.3 - r).abs().max().item()


def assert_fa_rule(name, ours, same_dtype, ref, dtype):
    """FlashAttention rule: |ours - ref| <= 2 |pytorch same dtype - ref| + 2 x rounding floor (+ tiny abs floor)."""
    err = (ours.double() - ref).abs().max().item()
    pt_err = (same_dtype.double() - ref).abs().max().item()
    bound = 2 * pt_err + 2 * rounding_floor(ref, dtype) + 1e-6
    assert err <= bound, f"{name}: max error {err:.3e} > bound {bound:.3e} (same-dtype PyTorch error {pt_err:.3e})"
