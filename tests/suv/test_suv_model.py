"""SparseUMMDiT behaviour on tiny presets against independent references."""
from __future__ import annotations

import types
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import skiparse
import suv.models.attention as attention_module
from suv.models import SparseUMMDiT
from suv_testing import random_suv, suv_inputs


def index_math_attention(q, k, v, sparsity, group, text_q, text_k, text_v, text_mask, video_mask, scale=None):
    """Skiparse defined by its index math, on the natural order: video token i sees video token j iff they are in
    the same sub-sequence (``i % k`` single-skip, ``(i // k) % k`` group-skip), plus all real text; each text token's
    output is the mean over the k sub-sequences of attending to that sub-sequence plus all text. fp64, dense masks."""
    B, L, H, D = q.shape
    idx = torch.arange(L)
    sub = idx % sparsity if not group else (idx // sparsity) % sparsity
    vm = torch.ones(B, L, dtype=torch.bool) if video_mask is None else video_mask
    tm = torch.ones(B, text_q.shape[1], dtype=torch.bool) if text_mask is None else text_mask
    kk = torch.cat([k, text_k], 1).double().transpose(1, 2)
    vv = torch.cat([v, text_v], 1).double().transpose(1, 2)
    qq = torch.cat([q, text_q], 1).double().transpose(1, 2)
    out_v = torch.zeros(B, H, L, D, dtype=torch.float64)
    out_t = torch.zeros(B, H, text_q.shape[1], D, dtype=torch.float64)
    for s in range(sparsity):
        keys = torch.cat([(sub == s)[None].expand(B, L) & vm, tm], 1)  # (B, L + T)
        o = F.scaled_dot_product_attention(qq, kk, vv, attn_mask=keys[:, None, None, :], scale=scale)
        rows = sub == s
        out_v[:, :, rows] = o[:, :, :L][:, :, rows]
        out_t += o[:, :, L:] / sparsity
    return out_v.transpose(1, 2).to(q.dtype), out_t.transpose(1, 2).to(q.dtype)


@pytest.fixture
def index_math(monkeypatch):
    calls = []

    def fake(*args, **kw):
        calls.append(args[3:5])
        return index_math_attention(*args, **kw)

    monkeypatch.setattr(attention_module, "skiparse", types.SimpleNamespace(skiparse_attention=fake))
    return calls


def test_each_block_calls_skiparse_once_with_its_sparsity_and_mode(index_math):
    model = random_suv()
    model(**suv_inputs(model))
    assert index_math == [(b.sparsity, b.group) for stage in model.transformer_blocks for b in stage]
    assert index_math[:6] == [(1, False), (1, False), (2, False), (2, True), (4, False), (4, True)]


@pytest.mark.parametrize("grid", [(2, 8, 12), (1, 6, 10)], ids=["24-tokens", "15-tokens-padded"])
def test_model_equals_index_math_reference(grid, monkeypatch):
    model = random_suv()
    inp = suv_inputs(model, frames=grid[0], height=grid[1], width=grid[2])
    with torch.no_grad():
        got = model(**inp)
        monkeypatch.setattr(attention_module, "skiparse",
                            types.SimpleNamespace(skiparse_attention=index_math_attention))  # fmt: skip
        want = model(**inp)
    assert got.shape == (2, 32, *grid)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-4)


def test_backend_choice_does_not_change_the_output():
    model = random_suv()
    inp = suv_inputs(model, frames=1, height=6, width=10)  # 15 tokens: padding for every k > 1
    with torch.no_grad():
        with skiparse.use_backend("reference"):
            ref = model(**inp)
        with skiparse.use_backend("cpu"):
            cpu = model(**inp)
    torch.testing.assert_close(cpu, ref, atol=2e-5, rtol=2e-4)


def test_dense_switch_same_weights_and_k1_stages_unchanged():
    sparse = random_suv()
    dense = SparseUMMDiT.from_config(replace(sparse.config, sparse1d=False)).eval()
    dense.load_state_dict(sparse.state_dict(), strict=True)
    inp = suv_inputs(sparse)
    with torch.no_grad():
        assert not torch.allclose(sparse(**inp), dense(**inp), atol=1e-4)  # k > 1 stages really are sparse
        # A model whose sparse stages all have k = 1 is the dense model, bit for bit in structure and value.
        all_k1 = SparseUMMDiT.from_config(replace(sparse.config, sparse_n=[1] * 7)).eval()
        all_k1.load_state_dict(sparse.state_dict(), strict=True)
        torch.testing.assert_close(all_k1(**inp), dense(**inp), atol=0, rtol=0)


def test_zero_init_skip_passes_the_current_stream_through():
    with_skip = random_suv(skip_connection_zero_init=True)
    no_skip = SparseUMMDiT.from_config(replace(with_skip.config, skip_connection=False)).eval()
    state = {k: v for k, v in with_skip.state_dict().items() if not k.startswith("skip_norm_linear")}
    no_skip.load_state_dict(state, strict=True)
    inp = suv_inputs(with_skip)
    with torch.no_grad():
        torch.testing.assert_close(with_skip(**inp), no_skip(**inp), atol=1e-6, rtol=1e-5)
        # Non-zero skip weights change the result, so the fusion is live.
        with_skip.skip_norm_linear[0][1].weight[:, with_skip.dim :].normal_()
        assert not torch.allclose(with_skip(**inp), no_skip(**inp), atol=1e-4)


def test_non_zero_init_skip_has_a_layernorm_on_the_concatenation():
    model = random_suv(skip_connection_zero_init=False)
    assert isinstance(model.skip_norm_linear[0][0], torch.nn.LayerNorm)
    assert model.skip_norm_linear[0][0].normalized_shape == (2 * model.dim,)


def _naive_head(model, tokens, c, grid):
    """norm_final -> norm_out -> proj_out -> unpatchify written with explicit loops (C fastest in each patch)."""
    h = F.layer_norm(tokens, (model.dim,), model.norm_final.weight, model.norm_final.bias, 1e-6)
    shift, scale = model.norm_out.linear(F.silu(c)).chunk(2, -1)
    h = F.layer_norm(h, (model.dim,), model.norm_out.norm.weight, model.norm_out.norm.bias, 1e-6)
    y = model.proj_out(h * (1 + scale[:, None]) + shift[:, None])  # (B, L, p*p*C)
    t, hh, ww = grid
    p, C = model.patch_size, model.out_channels
    out = torch.zeros(y.shape[0], C, t, hh * p, ww * p)
    for n in range(t * hh * ww):
        ti, hi, wi = n // (hh * ww), (n // ww) % hh, n % ww
        for a in range(p):
            for b in range(p):
                for ch in range(C):
                    out[:, ch, ti, hi * p + a, wi * p + b] = y[:, n, (a * p + b) * C + ch]
    return out


def test_identity_blocks_reduce_to_patch_embed_and_head():
    """With every adaLN gate at zero the blocks are identities; what remains is checked with naive loops,
    which pins the patch order (t h w), the two final LayerNorms and the unpatchify order."""
    model = random_suv(skip_connection=False)
    with torch.no_grad():
        for stage in model.transformer_blocks:
            for block in stage:
                for norm in (block.norm1, block.norm2):
                    norm.linear.weight.zero_()
                    norm.linear.bias.zero_()
    inp = suv_inputs(model, batch=1, frames=2, height=4, width=6)
    x = inp["hidden_states"]
    with torch.no_grad():
        got = model(**inp)
        p = model.patch_size
        tokens = torch.stack([
            torch.einsum("dcij,bcij->bd", model.patch_embed.proj.weight, x[:, :, t, h * p:(h + 1) * p, w * p:(w + 1) * p])
            + model.patch_embed.proj.bias
            for t in range(2) for h in range(2) for w in range(3)
        ], 1)  # fmt: skip
        c = model.time_text_embed(inp["timestep"], inp["pooled_projections"][:, 0])
        want = _naive_head(model, tokens, c, (2, 2, 3))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_timestep_embedding_is_cos_then_sin_and_conditioning_is_fp32():
    from suv.models.embeddings import timestep_features

    t = torch.tensor([0.0, 250.0])
    f = timestep_features(t, 8)
    freqs = torch.tensor([10000 ** (-i / 4) for i in range(4)])
    torch.testing.assert_close(f, torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], -1))
    model = random_suv().to(torch.bfloat16)
    c = model.time_text_embed(t, torch.randn(2, 16, dtype=torch.bfloat16))
    assert c.dtype == torch.float32


def test_bf16_forward_runs_and_tracks_fp32():
    model = random_suv()
    inp = suv_inputs(model)
    with torch.no_grad():
        ref = model(**inp)
        low = model.to(torch.bfloat16)(**{k: (v.to(torch.bfloat16) if v.is_floating_point() and k != "timestep" else v)
                                           for k, v in inp.items()})  # fmt: skip
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_text_padding_is_masked():
    """Changing the features of padded text tokens must not change the output."""
    model = random_suv()
    inp = suv_inputs(model)
    with torch.no_grad():
        a = model(**inp)
        inp["encoder_hidden_states"][0, 0, -2:] += 5.0
        b = model(**inp)
        inp["encoder_hidden_states"][0, 0, 0] += 5.0
        c = model(**inp)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a, c, atol=1e-4)


def test_video_mask_all_ones_equals_no_mask():
    model = random_suv()
    inp = suv_inputs(model)
    with torch.no_grad():
        a = model(**inp)
        b = model(**inp, attention_mask=torch.ones(2, 2, 8, 12))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_fp16_streams_are_sanitised_like_the_reference():
    from suv.models.block import clamp_fp16

    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.5], dtype=torch.float16)
    assert clamp_fp16(x).tolist() == [0.0, 65504.0, -65504.0, 1.5]
    y = torch.tensor([float("inf")])
    assert clamp_fp16(y) is y  # other dtypes untouched
