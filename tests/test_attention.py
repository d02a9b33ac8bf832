"""Skiparse attention: the fused CPU kernels against the fp64 reference, forward and every gradient."""
import itertools

import pytest
import torch

import skiparse
from skiparse_testing import assert_fa_rule, cast, make_inputs, requires_cpu_ext, run, tensor_inputs

pytestmark = requires_cpu_ext

PATTERNS = [(k, g) for k in (1, 2, 3, 4, 8) for g in (False, True) if not (k == 1 and g)]


def grads_for(out, text_out, seed=1):
    g = torch.Generator().manual_seed(seed)
    outs = [out] + ([text_out] if text_out is not None else [])
    return [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outs]


def compare_fp64(kw, k, group):
    """The CPU kernels in fp64 equal the fp64 reference to rounding, forward and backward."""
    ref_out, ref_text, _ = run("reference", kw, k, group)
    grads = grads_for(ref_out, ref_text)
    out, text_out, g = run("cpu", kw, k, group, grads)
    _, _, rg = run("reference", kw, k, group, grads)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=1e-10)
    if ref_text is not None:
        torch.testing.assert_close(text_out, ref_text, atol=1e-12, rtol=1e-10)
    for name in tensor_inputs(kw):
        torch.testing.assert_close(g[name], rg[name], atol=1e-11, rtol=1e-9, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("k,group", PATTERNS)
@pytest.mark.parametrize("L", [70, 97, 192])
@pytest.mark.parametrize("masks", [False, True])
def test_matches_reference_fp64(k, group, L, masks):
    compare_fp64(make_inputs(2, L, 2, 16, 5, dtype=torch.float64, masks=masks), k, group)


@pytest.mark.parametrize("k,group", [(1, False), (4, False), (4, True), (3, True)])
def test_without_text(k, group):
    compare_fp64(make_inputs(2, 97, 3, 32, 0, dtype=torch.float64), k, group)


@pytest.mark.parametrize("k,group", [(2, False), (4, True), (8, True)])
def test_tiles_span_several_blocks(k, group):
    """Several query and key tiles per lane (tiles of 256 x 512 rows), and short lanes packed into shared tiles."""
    compare_fp64(make_inputs(1, 2600, 2, 16, 37, dtype=torch.float64, masks=True), k, group)


@pytest.mark.parametrize("H,k,group", [(1, 1, False), (2, 1, False), (1, 2, True)])
def test_backward_key_groups(H, k, group):
    """Sub-sequences of more keys than one key group of the backward (4096 rows): dK, dV accumulated per group,
    dQ across groups; with H = 1 the query tiles are also split over tasks."""
    compare_fp64(make_inputs(1, 8300 if k > 1 else 4700, H, 8, 40, dtype=torch.float64, masks=True), k, group)


@pytest.mark.numerics
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("k,group", [(1, False), (2, True), (3, False), (4, True), (8, False)])
def test_flash_attention_error_rule(dtype, k, group):
    """Error vs fp64 at most 2x that of PyTorch in the same dtype (plus the rounding floor), for out and grads."""
    base = make_inputs(2, 97, 2, 32, 9, masks=True)
    ref_kw, pt_kw, our_kw = cast(base, torch.float64), cast(base, dtype), cast(base, dtype)
    ref_out, ref_text, _ = run("reference", ref_kw, k, group)
    grads = grads_for(ref_out, ref_text)
    _, _, ref_g = run("reference", ref_kw, k, group, grads)
    pt_out, pt_text, pt_g = run("reference", pt_kw, k, group, grads)
    out, text_out, g = run("cpu", our_kw, k, group, grads)
    assert out.dtype == dtype and text_out.dtype == dtype
    assert_fa_rule("out", out, pt_out, ref_out, dtype)
    assert_fa_rule("text_out", text_out, pt_text, ref_text, dtype)
    for name in tensor_inputs(base):
        assert g[name].dtype == dtype
        assert_fa_rule(f"d{name}", g[name], pt_g[name], ref_g[name], dtype)


@pytest.mark.parametrize("k,group", [(1, False), (2, False), (3, True), (4, True)])
def test_gradcheck_fp64(k, group):
    kw = make_inputs(1, 11, 2, 4, 3, dtype=torch.float64, masks=True)
    names = tensor_inputs(kw)
    masks = {n: kw[n] for n in ("text_mask", "video_mask")}

    def f(*ts):
        with skiparse.use_backend("cpu"):
            out, text_out = skiparse.skiparse_attention(**dict(zip(names, ts)), **masks, sparsity=k, group=group)
        return out, text_out

    assert torch.autograd.gradcheck(f, tuple(kw[n] for n in names))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("k,group", [(1, False), (2, True), (4, False)])
def test_fully_masked_rows_are_zero_not_nan(backend, k, group):
    kw = make_inputs(2, 37, 2, 8, 4, dtype=torch.float32)
    kw["video_mask"] = torch.zeros(2, 37, dtype=torch.bool)
    kw["text_mask"] = torch.zeros(2, 4, dtype=torch.bool)
    kw["text_mask"][1, 0] = True  # batch item 1 still has one real key: its rows are normal
    out, text_out, g = run(backend, kw, k, group, grads_for(torch.empty(2, 37, 2, 8), torch.empty(2, 4, 2, 8)))
    assert torch.all(out[0] == 0) and torch.all(text_out[0] == 0)
    assert torch.isfinite(out).all() and torch.isfinite(text_out).all()
    for name, grad in g.items():
        assert torch.isfinite(grad).all(), name
        assert torch.all(grad[0] == 0), name
    # batch item 1 attends only to its one real text key: every output row equals that key's value
    torch.testing.assert_close(out[1], kw["text_v"][1, 0].detach().expand(37, 2, 8))


def test_padded_keys_are_masked():
    """With L not divisible by k^2 the zero padding rows must not act as keys (softmax mass would move to them)."""
    kw = make_inputs(1, 70, 1, 16, 0, dtype=torch.float64)
    out, _, _ = run("cpu", kw, 4, True)
    ref, _, _ = run("reference", kw, 4, True)
    torch.testing.assert_close(out, ref)
    # Independent check of one query: single-skip k=4 sub-sequence 1 holds natural rows 1, 5, 9, ...
    out1, _, _ = run("cpu", kw, 4, False)
    q, kk, v = (kw[n].detach()[0, :, 0] for n in ("q", "k", "v"))
    rows = torch.arange(1, 70, 4)
    p = torch.softmax(q[5] @ kk[rows].T / 4.0, dim=0)
    torch.testing.assert_close(out1[0, 5, 0], p @ v[rows])


def test_strided_layouts_need_no_copy_semantics():
    """(B, H, L, D)-major storage viewed as (B, L, H, D) gives the same result as contiguous input."""
    base = make_inputs(2, 97, 3, 16, 6, dtype=torch.float64, requires_grad=False)
    strided = {n: (t.transpose(1, 2).contiguous().transpose(1, 2) if t.is_floating_point() else t) for n, t in base.items()}
    assert not strided["q"].is_contiguous()
    a, ta, _ = run("cpu", base, 3, True)
    b, tb, _ = run("cpu", strided, 3, True)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(ta, tb, atol=0, rtol=0)


def test_scale_argument():
    kw = make_inputs(1, 40, 2, 8, 3, dtype=torch.float64, requires_grad=False)
    for backend, k in itertools.product(["reference", "cpu"], [1, 2]):
        with skiparse.use_backend(backend):
            a, ta = skiparse.skiparse_attention(**kw, sparsity=k, scale=0.3)
        with skiparse.use_backend("reference"):
            b, tb = skiparse.skiparse_attention(**{n: (t * 0.3 / 8 ** -0.5 if n in ("q", "text_q") else t) for n, t in kw.items()}, sparsity=k)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ta, tb)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["q", "k", "v", "text_q", "text_k", "text_v"])
@pytest.mark.parametrize("k,group", [(1, False), (2, True), (4, False)])
def test_nan_reaches_outputs_as_in_reference(dtype, name, k, group):
    """A NaN in any input gives NaN exactly where the fp64 reference has NaN, forward and every gradient (a
    diverged run must not look finite); masked keys and fully masked rows keep their usual zeros."""
    base = make_inputs(2, 67, 2, 16, 5, masks=True, dtype=dtype)
    with torch.no_grad():
        base[name][1, 2 if name.startswith("text") else 7, 1, 3] = float("nan")
    grads = grads_for(torch.empty(2, 67, 2, 16), torch.empty(2, 5, 2, 16))
    ref_out, ref_text, ref_g = run("reference", cast(base, torch.float64), k, group, grads)
    out, text_out, g = run("cpu", cast(base, dtype), k, group, grads)
    assert ref_out.isnan().any() or ref_text.isnan().any()
    assert torch.equal(out.isnan(), ref_out.isnan()) and torch.equal(text_out.isnan(), ref_text.isnan())
    for n in tensor_inputs(base):
        assert torch.equal(g[n].isnan(), ref_g[n].isnan()), f"d{n}"
