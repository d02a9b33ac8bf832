"""conv3d_3x3 (Winograd F(4x4, 3x3) on the CPU) against F.conv3d in float64; context frames; gradients, opcheck,
routing, errors."""
import math

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


# Winograd F(4x4, 3x3) in float64 with given transform matrices, written independently of the kernel: it defines
# the error bound below and lets the test check that a wrong coefficient would break that bound.
BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                   [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                  dtype=torch.float64)


def winograd64(x, w, b=None, bt=BT, g=G, at=AT):
    """(B, C_in, T, H, W) conv (C_out, C_in, kt, 3, 3), padding (0, 1, 1), as A^T [sum (G g G^T) * (B^T d B)] A over
    the 6x6 input tile d of every 4x4 output tile."""
    batch, _, frames, height, width = x.shape
    kt = w.shape[2]
    th, tw = -(-height // 4), -(-width // 4)
    d = F.pad(x, (1, 4 * tw + 1 - width, 1, 4 * th + 1 - height)).unfold(3, 6, 4).unfold(4, 6, 4)
    v = torch.einsum("ai,...ij,bj->...ab", bt, d, bt).permute(5, 6, 0, 2, 3, 4, 1)  # (6, 6, B, T, th, tw, C_in)
    u = torch.einsum("ai,...ij,bj->...ab", g, w, g).permute(3, 4, 2, 1, 0)  # (6, 6, kt, C_in, C_out)
    to, c_in, c_out = frames - kt + 1, w.shape[1], w.shape[0]
    # One batched GEMM per temporal tap over the 36 transform positions: (36, tiles, C_in) @ (36, C_in, C_out).
    m = sum(v[:, :, :, s:s + to].reshape(36, -1, c_in) @ u[:, :, s].reshape(36, c_in, c_out) for s in range(kt))
    m = m.reshape(6, 6, batch, to, th, tw, c_out).permute(2, 6, 3, 4, 5, 0, 1)  # (B, C_out, T', th, tw, 6, 6)
    y = torch.einsum("ai,...ij,bj->...ab", at, m, at).permute(0, 1, 2, 3, 5, 4, 6)
    y = y.reshape(batch, c_out, to, 4 * th, 4 * tw)[..., :height, :width]
    return y if b is None else y + b[:, None, None, None]


def float32_error_bound(x, w, b, lam=8.0):
    """Bound on |conv3d_3x3 - exact| for float32 x, w, b, per output element, from the arithmetic alone.

    Deterministic analysis (Higham, Accuracy and Stability, ch. 3; u = 2^-24, gamma_n = n u / (1 - n u)): with
    Ut = |G| |g| |G^T| and Vt = |B^T| |d| |B| the transforms taken in absolute value,
    - V = B^T d B: two passes of at most 4 terms with exact coefficients, |dV| <= gamma_8 Vt;
    - U = G g G^T: two passes of at most 3 terms whose coefficients (1/6, 1/24, ...) are themselves rounded,
      |dU| <= gamma_8 Ut;
    - M = sum over N = C_in * kt terms of U V (the GEMMs, accumulated over the kt taps): in any summation order,
      with or without FMA, |dM| <= gamma_(N+16) Mt, Mt = sum Ut Vt;
    - y = A^T M A + bias: two passes of at most 5 terms with exact coefficients, then one addition.
    So |y_computed - y| <= gamma_(N+27) (|A^T| Mt |A| + |bias|) = gamma_n Yt, where Yt is this very Winograd conv
    of |x| and |w| with every matrix in absolute value: the magnitudes summed, transform growth included.
    The bound holds for every ISA, BLAS and blocking, but is 10^3-10^4 times the errors seen, since rounding errors
    do not all align. Higham & Mary (SIAM J. Sci. Comput. 41(5), 2019, Thm 3.1) show that, for independent
    mean-zero rounding errors, gamma_n may be replaced by gamma~_n(lam) = exp(lam sqrt(n) u + n u^2 / (1 - u)) - 1
    ~ lam sqrt(n) u, in any order, except with probability 2 n exp(-lam^2 (1 - u)^2 / 2) per output: with lam = 8
    and n <= 2000, below 3e-11 per output. That is the bound returned (float64, the shape of the output).
    """
    u = 2.0 ** -24
    n = x.shape[1] * w.shape[2] + 27
    gamma = math.exp(lam * math.sqrt(n) * u + n * u * u / (1 - u)) - 1
    magnitude = winograd64(x.double().abs(), w.double().abs(), None if b is None else b.double().abs(),
                           BT.abs(), G.abs(), AT.abs())  # fmt: skip
    return gamma * magnitude


ERROR_SHAPES = [(70, 33, 13, 11), (16, 16, 5, 6), (160, 96, 24, 20), (640, 24, 8, 8)]


def test_float64_winograd_of_the_test_is_exact():
    """The test's own Winograd (which defines the bound) equals F.conv3d: its matrices are right."""
    for ci, co, H, W in ERROR_SHAPES[:3]:
        x, w, b = conv_inputs(2, ci, co, 4, H, W, 3)
        torch.testing.assert_close(winograd64(x, w, b), reference64(x, w, b), rtol=0, atol=1e-12)


@pytest.mark.numerics
@pytest.mark.parametrize("ci,co,H,W", ERROR_SHAPES)
def test_float32_error_is_within_the_arithmetic_bound(ci, co, H, W):
    """float32 error vs float64, element by element, within float32_error_bound (no other library's error involved:
    the same bound holds whatever ISA, BLAS or oneDNN the machine has)."""
    x, w, b = conv_inputs(2, ci, co, 4, H, W, 3, dtype=torch.float32)
    err = (torch.ops.skiparse.conv3d_3x3(x, w, b).double() - reference64(x, w, b)).abs()
    ratio = (err / float32_error_bound(x, w, b)).max().item()
    assert ratio <= 1, f"error reaches {ratio:.3g}x the bound"


def test_the_bound_catches_a_wrong_transform_coefficient(one_thread):
    """Every coefficient of B^T, G and A^T negated, dropped, or 10% off: a kernel with that bug (emulated exactly in
    float64) would break the bound somewhere, so the bound is tight enough to catch it."""
    x, w, b = conv_inputs(2, 160, 96, 4, 24, 20, 3, dtype=torch.float32)
    bound, exact = float32_error_bound(x, w, b), reference64(x, w, b)
    x, w, b = x.double(), w.double(), b.double()
    for name, matrix in (("bt", BT), ("g", G), ("at", AT)):
        for i, j in matrix.nonzero().tolist():
            for factor in (-1.0, 0.0, 1.1):
                wrong = matrix.clone()
                wrong[i, j] *= factor
                ratio = ((winograd64(x, w, b, **{name: wrong}) - exact).abs() / bound).max().item()
                assert ratio > 1, f"{name.upper()}[{i}][{j}] x {factor} stays within the bound ({ratio:.3g}x)"


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
    # bf16: oneDNN's conv where the CPU has native bf16, else Winograd on float32 copies, whatever this CPU is.
    low = [t.bfloat16() for t in (x, w, b)]
    calls = []
    direct_conv = skiparse.api.reference.conv3d_3x3
    monkeypatch.setattr(skiparse.api.reference, "conv3d_3x3", lambda *a: calls.append(a) or direct_conv(*a))
    for has_units in (True, False):
        monkeypatch.setattr(skiparse.api, "native_low_precision", lambda dtype, n=has_units: n)
        calls.clear()
        assert skiparse.conv3d_3x3(*low).dtype == torch.bfloat16
        assert len(calls) == has_units


def test_bf16_without_native_units_is_winograd_in_float32_with_gradients(monkeypatch):
    """On a CPU without native bf16 (oneDNN would emulate its conv 270-700x slower), the conv and its gradients
    come from the float32 kernel: within bf16 rounding of the float64 conv."""
    monkeypatch.setattr(skiparse.api, "native_low_precision", lambda dtype: False)
    monkeypatch.setattr(skiparse.api, "_WINOGRAD_MIN_PIXELS", 0)
    x, w, b = (t.bfloat16().requires_grad_() for t in conv_inputs(dtype=torch.float32))
    y = skiparse.conv3d_3x3(x, w, b)
    assert y.dtype == torch.bfloat16
    exact = F.conv3d(*(t.detach().double().requires_grad_() for t in (x, w, b)), padding=(0, 1, 1))
    torch.testing.assert_close(y.double(), exact, atol=0.02 * exact.abs().max().item(), rtol=0)
    y.float().square().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 and t.grad.isfinite().all() for t in (x, w, b))


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
