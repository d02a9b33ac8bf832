"""conv3d_3x3 (Winograd F(4x4, 3x3) on the CPU) against F.conv3d in float64; context frames; gradients, opcheck,
routing, errors."""
import pytest
import torch
import torch.nn.functional as F

import skiparse
import skiparse.api
from skiparse_testing import requires_cpu_ext

pytestmark = requires_cpu_ext


def conv_inputs(B=2, ci=5, co=7, T=4, H=9, W=7, kt=3, bias=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, ci, T, H, W, generator=g, dtype=dtype)
    w = torch.randn(co, ci, kt, 3, 3, generator=g, dtype=dtype) / (ci * kt * 9) ** 0.5
    b = torch.randn(co, generator=g, dtype=dtype) if bias else None
    return x, w, b


def reference64(x, w, b):
    return F.conv3d(x.double(), w.double(), None if b is None else b.double(), padding=(0, 1, 1))


# Tile edges (H, W not multiples of 4, smaller than a tile), channel passes (C > 64, not a multiple of 64),
# several bands (H * W / 16 > 128 tiles), temporal kernels 1..3, and two blocks of output channels (160 + 140:
# the transformed float64 weight, 3 * 36 * 512 * 300 elements, exceeds the kernel's 128 MiB budget).
@pytest.mark.parametrize(
    "B,ci,co,T,H,W,kt",
    [(2, 5, 7, 4, 9, 7, 3), (1, 3, 2, 1, 1, 2, 1), (1, 70, 65, 3, 6, 5, 2), (1, 4, 3, 5, 50, 47, 3),
     (3, 8, 8, 2, 4, 4, 1), (1, 512, 300, 3, 5, 6, 3)],
)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_conv3d_float64(B, ci, co, T, H, W, kt, bias):
    x, w, b = conv_inputs(B, ci, co, T, H, W, kt, bias)
    y = torch.ops.skiparse.conv3d_3x3(x, w, b)
    assert y.shape == (B, co, T - kt + 1, H, W) and y.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(y, reference64(x, w, b), rtol=0, atol=1e-12)


def test_layout_of_input_does_not_matter():
    x, w, b = conv_inputs()
    y = torch.ops.skiparse.conv3d_3x3(x.contiguous(memory_format=torch.channels_last_3d), w, b)
    assert torch.equal(y, torch.ops.skiparse.conv3d_3x3(x, w, b))
    # The weight is read in place: a non-contiguous one must give the same result.
    assert torch.equal(y, torch.ops.skiparse.conv3d_3x3(x, w.transpose(0, 1).contiguous().transpose(0, 1), b))
    torch.testing.assert_close(torch.ops.skiparse.conv3d_3x3(x[:, :, 1:], w, b), reference64(x[:, :, 1:], w, b))


# Context frames: fewer than kt - 1, exactly kt - 1, more than kt; with kt 1 and 3 and x shorter than kt.
@pytest.mark.parametrize("Tc,T,kt", [(1, 4, 3), (2, 4, 3), (5, 2, 3), (2, 1, 3), (3, 2, 1), (0, 3, 3)])
def test_context_frames_come_before_x(Tc, T, kt):
    x, w, b = conv_inputs(2, 70, 9, T, 9, 7, kt)
    context = torch.randn(2, 70, Tc, 9, 7, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    y = torch.ops.skiparse.conv3d_3x3(x, w, b, context)
    assert y.shape == (2, 9, Tc + T - kt + 1, 9, 7)
    torch.testing.assert_close(y, reference64(torch.cat([context, x], dim=2), w, b), rtol=0, atol=1e-12)


def test_context_gradcheck_and_opcheck():
    x, w, b = conv_inputs(1, 2, 3, 1, 5, 6, 3)
    context = torch.randn(1, 2, 2, 5, 6, dtype=x.dtype)
    args = [t.requires_grad_(True) for t in (x, w, b, context)]
    assert torch.autograd.gradcheck(lambda *a: torch.ops.skiparse.conv3d_3x3(*a), args)
    torch.library.opcheck(torch.ops.skiparse.conv3d_3x3.default, (x, w, b, context))
    torch.library.opcheck(torch.ops.skiparse.conv3d_3x3.default, (x.detach(), w, None, context.detach()))


@pytest.mark.parametrize("ci,co,H,W", [(70, 33, 13, 11), (16, 16, 5, 6), (160, 96, 24, 20)])
def test_float32_error_rule(ci, co, H, W):
    """float32 error vs float64 at most 2x that of F.conv3d in float32, plus a floor for Winograd's coefficients."""
    x, w, b = conv_inputs(2, ci, co, 4, H, W, 3, dtype=torch.float32)
    ref = reference64(x, w, b)
    ours = (torch.ops.skiparse.conv3d_3x3(x, w, b).double() - ref).abs().max().item()
    torch_err = (F.conv3d(x, w, b, padding=(0, 1, 1)).double() - ref).abs().max().item()
    assert ours <= 2 * torch_err + 3e-6 * ref.abs().max().item(), (ours, torch_err)


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(bias):
    x, w, b = conv_inputs(1, 2, 3, 3, 5, 6, 2, bias)
    args = [t.requires_grad_(True) for t in (x, w, b) if t is not None]
    assert torch.autograd.gradcheck(lambda x, w, b=None: torch.ops.skiparse.conv3d_3x3(x, w, b), args)


def test_opcheck():
    x, w, b = conv_inputs()
    torch.library.opcheck(torch.ops.skiparse.conv3d_3x3.default, (x, w, b))
    torch.library.opcheck(torch.ops.skiparse.conv3d_3x3.default, (x.requires_grad_(True), w, None))


def test_public_function_routes_small_convs_to_conv3d(monkeypatch):
    """Large convs run the Winograd kernel; below the pixel threshold (or off the CPU backend) F.conv3d."""
    x, w, b = conv_inputs(dtype=torch.float32)
    winograd = torch.ops.skiparse.conv3d_3x3(x, w, b)
    direct = F.conv3d(x, w, b, padding=(0, 1, 1))
    assert not torch.equal(winograd, direct)  # rounding differs, so the two paths are distinguishable
    assert torch.equal(skiparse.conv3d_3x3(x, w, b), direct)
    monkeypatch.setattr(skiparse.api, "_WINOGRAD_MIN_PIXELS", 0)
    assert torch.equal(skiparse.conv3d_3x3(x, w, b), winograd)
    # With context frames the fallback concatenates them: the same conv on either path.
    head, tail = x[:, :, :2], x[:, :, 2:]
    assert torch.equal(skiparse.conv3d_3x3(tail, w, b, context=head), winograd)
    with skiparse.use_backend("reference"):
        assert torch.equal(skiparse.conv3d_3x3(tail, w, b, context=head), direct)
    with skiparse.use_backend("reference"):
        assert torch.equal(skiparse.conv3d_3x3(x, w, b), direct)
    assert torch.equal(skiparse.conv3d_3x3(x.bfloat16(), w.bfloat16(), b.bfloat16()),
                       F.conv3d(x.bfloat16(), w.bfloat16(), b.bfloat16(), padding=(0, 1, 1)))


@pytest.mark.parametrize(
    "change,error,message",
    [
        (dict(x=torch.randn(2, 5, 4, 9)), ValueError, "x must have 5"),
        (dict(w=torch.randn(7, 5, 3, 3, 2, dtype=torch.float64)), ValueError, r"weight must be \(C_out, C_in=5"),
        (dict(w=torch.randn(7, 4, 3, 3, 3, dtype=torch.float64)), ValueError, r"weight must be \(C_out, C_in=5"),
        (dict(w=torch.randn(7, 5, 5, 3, 3, dtype=torch.float64)), ValueError, "kt=5 must be in 1..T=4 "),
        (dict(w=torch.randn(7, 5, 3, 3, 3)), TypeError, "weight has dtype torch.float32"),
        (dict(b=torch.randn(6, dtype=torch.float64)), ValueError, r"bias must be \(C_out=7,\)"),
        (dict(x=torch.zeros(2, 5, 4, 9, 7, dtype=torch.int64)), TypeError, "x must be a floating tensor"),
        (dict(c=torch.randn(2, 5, 2, 9, 6, dtype=torch.float64)), ValueError,
         r"context must be \(B=2, C_in=5, Tc, H=9, W=7\)"),
        (dict(c=torch.randn(2, 5, 2, 9, 7)), TypeError, "context has dtype torch.float32"),
        (dict(w=torch.randn(7, 5, 7, 3, 3, dtype=torch.float64), c=torch.randn(2, 5, 2, 9, 7, dtype=torch.float64)),
         ValueError, r"kt=7 must be in 1..T=6 \(the frames of context and x\)"),
    ],
)
def test_bad_input_is_named(change, error, message):
    x, w, b = conv_inputs()
    args = dict(x=x, w=w, b=b, c=None) | change
    with pytest.raises(error, match=message):
        skiparse.conv3d_3x3(args["x"], args["w"], args["b"], context=args["c"])


def test_torch_compile_fullgraph_forward_and_backward():
    x, w, b = conv_inputs()
    args = [t.requires_grad_(True) for t in (x, w, b)]
    compiled = torch.compile(torch.ops.skiparse.conv3d_3x3, fullgraph=True, backend="aot_eager")
    compiled(*args).square().sum().backward()
    expected = [t.detach().clone().requires_grad_(True) for t in (x, w, b)]
    reference64(*expected).square().sum().backward()
    for got, want in zip(args, expected):
        torch.testing.assert_close(got.grad, want.grad)
