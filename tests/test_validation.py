"""Bad input: a clear TypeError / ValueError naming the argument, before any kernel runs."""
import pytest
import torch

import skiparse
from skiparse_testing import requires_cpu_ext

B, L, H, D, T = 2, 20, 2, 8, 5


def ok(**over):
    kw = dict(q=torch.randn(B, L, H, D), k=torch.randn(B, L, H, D), v=torch.randn(B, L, H, D), sparsity=2)
    kw.update(over)
    return kw


def text(**over):
    kw = dict(text_q=torch.randn(B, T, H, D), text_k=torch.randn(B, T, H, D), text_v=torch.randn(B, T, H, D))
    kw.update(over)
    return kw


BAD_ATTENTION = [
    (TypeError, "q must be a torch.Tensor", ok(q=[1.0])),
    (ValueError, "q must have 4 dims", ok(q=torch.randn(B, L, H * D))),
    (ValueError, "k must have the shape of q", ok(k=torch.randn(B, L + 1, H, D))),
    (ValueError, "v must have the shape of q", ok(v=torch.randn(B, L, H, D + 1))),
    (TypeError, "k has dtype torch.float16", ok(k=torch.randn(B, L, H, D).half())),
    (TypeError, "q must be a floating tensor", ok(q=torch.ones(B, L, H, D, dtype=torch.int32), k=torch.ones(B, L, H, D, dtype=torch.int32), v=torch.ones(B, L, H, D, dtype=torch.int32))),
    (TypeError, "sparsity must be an int >= 1", ok(sparsity=2.0)),
    (TypeError, "sparsity must be an int >= 1", ok(sparsity=True)),
    (ValueError, "sparsity must be an int >= 1", ok(sparsity=0)),
    (TypeError, "group must be a bool", ok(group=1)),
    (ValueError, "text_q, text_k and text_v go together", ok(text_q=torch.randn(B, T, H, D))),
    (ValueError, "text_k must have shape (B, T, H, D)", ok(**text(text_k=torch.randn(B + 1, T, H, D)))),
    (ValueError, "text_v must have the shape of text_q", ok(**text(text_v=torch.randn(B, T + 1, H, D)))),
    (ValueError, "text_q must have shape (B, T, H, D)", ok(**text(text_q=torch.randn(B, T, H + 1, D)))),
    (TypeError, "text_q has dtype", ok(**text(text_q=torch.randn(B, T, H, D).double()))),
    (TypeError, "text_mask must be a bool tensor", ok(**text(), text_mask=torch.ones(B, T))),
    (ValueError, "text_mask must have shape (2, 5)", ok(**text(), text_mask=torch.ones(B, T + 1, dtype=torch.bool))),
    (ValueError, "text_mask was given without text_q", ok(text_mask=torch.ones(B, T, dtype=torch.bool))),
    (TypeError, "video_mask must be a bool tensor", ok(video_mask=torch.ones(B, L, dtype=torch.int64))),
    (ValueError, "video_mask must have shape (2, 20)", ok(video_mask=torch.ones(B, L - 1, dtype=torch.bool))),
    (TypeError, "scale must be a finite float", ok(scale="0.1")),
    (TypeError, "scale must be a finite float", ok(scale=float("nan"))),
    (ValueError, "q must be a non-empty", ok(q=torch.randn(B, 0, H, D), k=torch.randn(B, 0, H, D), v=torch.randn(B, 0, H, D))),
]


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("exc,msg,kw", BAD_ATTENTION, ids=[m for _, m, _ in BAD_ATTENTION])
def test_attention_rejects(backend, exc, msg, kw):
    with skiparse.use_backend(backend), pytest.raises(exc) as info:
        skiparse.skiparse_attention(**kw)
    assert msg in str(info.value)


def test_device_mismatch_is_named():
    kw = ok(k=torch.randn(B, L, H, D, device="meta"))
    with pytest.raises(ValueError, match="k is on meta but q is on cpu"):
        skiparse.skiparse_attention(**kw)


@pytest.mark.parametrize(
    "exc,msg,call",
    [
        (TypeError, "x must be a torch.Tensor", lambda: skiparse.reorder([1, 2], 2)),
        (ValueError, "x must have at least 2 dims", lambda: skiparse.reorder(torch.randn(5), 2)),
        (ValueError, "non-empty sequence dim", lambda: skiparse.reorder(torch.randn(2, 0, 3), 2)),
        (ValueError, "sparsity must be an int >= 1", lambda: skiparse.reorder(torch.randn(2, 8), -1)),
        (TypeError, "group must be a bool", lambda: skiparse.reorder(torch.randn(2, 8), 2, group="yes")),
        (TypeError, "length must be an int >= 1", lambda: skiparse.restore(torch.randn(4, 4), 2, length=None)),
        (ValueError, "x dim 0 must be k*B", lambda: skiparse.restore(torch.randn(3, 4), 2, length=8)),
        (ValueError, "length=9 does not match x", lambda: skiparse.restore(torch.randn(4, 4), 2, length=9)),
    ],
)
def test_reorder_restore_reject(exc, msg, call):
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value)


def test_restore_length_is_keyword_and_checked_against_padding():
    y = skiparse.reorder(torch.randn(2, 10, 3), 2)  # L=10 pads to 12: 6 rows per sub-sequence
    assert skiparse.restore(y, 2, length=10).shape == (2, 10, 3)
    assert skiparse.restore(y, 2, length=12).shape == (2, 12, 3)  # also consistent: 12 rows, no padding
    with pytest.raises(ValueError, match="length=13"):
        skiparse.restore(y, 2, length=13)


def test_sparsity_whose_padding_is_not_representable_is_named():
    x = torch.randn(2, 10, 3)
    # 2 * 2^62 * 3 elements once padded (larger ones crashed: test_faults.py)
    with pytest.raises(ValueError, match=r"sparsity=2147483648 is too large for x of shape \(2, 10, 3\)"):
        skiparse.reorder(x, 2**31)
    with pytest.raises(ValueError, match="length=10 does not match x"):
        skiparse.restore(torch.zeros(1, 6, 3).expand(2**32, 6, 3), 2**32, length=10)


# ------------------------------------------------------------------------------------- direct torch.ops calls
# The ops are public API: the CPU kernels check what they read and name the argument, as the functions above do.
# (Calls that crashed the process before these checks are in test_faults.py, each in a subprocess.)
def op_args(text=True, **over):
    g = torch.Generator().manual_seed(0)
    a = dict(q=torch.randn(B, L, H, D, generator=g), k=torch.randn(B, L, H, D, generator=g),
             v=torch.randn(B, L, H, D, generator=g), text_q=None, text_k=None, text_v=None, text_mask=None,
             video_mask=None, sparsity=2, group=True, scale=0.35)  # fmt: skip
    if text:
        a.update(text_q=torch.randn(B, T, H, D, generator=g), text_k=torch.randn(B, T, H, D, generator=g),
                 text_v=torch.randn(B, T, H, D, generator=g), text_mask=torch.rand(B, T, generator=g) > 0.3,
                 video_mask=torch.rand(B, L, generator=g) > 0.3)  # fmt: skip
    a.update(over)
    return a


def attention_op(**over):
    return torch.ops.skiparse.attention(*op_args(**over).values())


BAD_ATTENTION_OP = [
    ("q must have 4 dims, got shape (2, 20, 16)", dict(q=torch.randn(B, L, H * D))),
    ("q must be a floating tensor (torch.float16, torch.bfloat16, torch.float32, torch.float64), got torch.int32",
     dict(q=torch.ones(B, L, H, D, dtype=torch.int32))),
    ("k has dtype torch.float64 but q has torch.float32; all inputs must share one dtype",
     dict(k=torch.randn(B, L, H, D, dtype=torch.float64))),
    ("v must have the shape of q (B, L, H, D) = (2, 20, 2, 8), got (2, 21, 2, 8)", dict(v=torch.randn(B, L + 1, H, D))),
    ("text_k must have the shape of text_q (B, T, H, D) = (2, 5, 2, 8), got (2, 1, 2, 8)",
     dict(text_k=torch.randn(B, 1, H, D))),
    ("text_q must have shape (B, T, H, D) = (2, T>=1, 2, 8) to match q, got (1, 5, 2, 8)",
     dict(text_q=torch.randn(1, T, H, D), text_k=torch.randn(1, T, H, D), text_v=torch.randn(1, T, H, D))),
    ("text_q must have shape (B, T, H, D) = (2, T>=1, 2, 8) to match q, got (2, 5, 3, 8)",
     dict(text_q=torch.randn(B, T, H + 1, D), text_k=torch.randn(B, T, H + 1, D), text_v=torch.randn(B, T, H + 1, D))),
    ("text_q must have shape (B, T, H, D) = (2, T>=1, 2, 8) to match q, got (2, 0, 2, 8)",
     dict(text_q=torch.randn(B, 0, H, D), text_k=torch.randn(B, 0, H, D), text_v=torch.randn(B, 0, H, D),
          text_mask=None)),
    ("text_v has dtype torch.float64 but q has torch.float32", dict(text_v=torch.randn(B, T, H, D).double())),
    ("text_mask was given without text_q, text_k, text_v", dict(text=False, text_mask=torch.ones(B, T).bool())),
    ("text_mask must have shape (2, 5), got (2, 6)", dict(text_mask=torch.ones(B, T + 1, dtype=torch.bool))),
    ("text_mask must be a bool tensor (True = real token), got torch.float32", dict(text_mask=torch.ones(B, T))),
    ("video_mask must have shape (2, 20), got (2, 19)", dict(video_mask=torch.ones(B, L - 1, dtype=torch.bool))),
    ("video_mask must be a bool tensor (True = keep), got torch.int64", dict(video_mask=torch.ones(B, L).long())),
    ("scale must be a finite float, got nan", dict(scale=float("nan"))),
    ("scale must be a finite float, got inf", dict(scale=float("inf"))),
    ("sparsity must be an int >= 1, got 0", dict(sparsity=0)),
]


@requires_cpu_ext
@pytest.mark.parametrize("msg,over", BAD_ATTENTION_OP, ids=[m[:40] for m, _ in BAD_ATTENTION_OP])
def test_attention_op_rejects(msg, over):
    with pytest.raises(RuntimeError) as info:
        attention_op(**over)
    assert f"skiparse.attention: {msg}" in str(info.value)


def backward_args(**over):
    """attention_backward's arguments from a real forward, with ``over`` replacing some."""
    a = op_args()
    out, text_out, lse, parts, text_lse = torch.ops.skiparse.attention(*a.values())
    args = dict(dout=torch.randn_like(out), dtext_out=torch.randn_like(text_out), **a, out=out, lse=lse,
                text_parts=parts, text_lse=text_lse)  # fmt: skip
    args.update(over)
    return args


BAD_BACKWARD_OP = [
    ("dout must have the shape of q (B, L, H, D) = (2, 20, 2, 8), got (2, 20, 2, 4)",
     dict(dout=torch.randn(B, L, H, 4))),
    ("dout must have dtype torch.float32, got torch.float64", dict(dout=torch.randn(B, L, H, D).double())),
    ("dtext_out must have shape (B, T, H, D) = (2, 5, 2, 8), got (2, 4, 2, 8)",
     dict(dtext_out=torch.randn(B, 4, H, D))),
    ("out must have the shape of q (B, L, H, D) = (2, 20, 2, 8), got (2, 20, 2)", dict(out=torch.randn(B, L, H))),
    ("lse must have shape (B, H, L) = (2, 2, 20), got (2, 20, 2)", dict(lse=torch.randn(B, L, H))),
    ("lse must have dtype torch.float32, got torch.float16", dict(lse=torch.randn(B, H, L).half())),
    ("text_parts must have shape (B, sparsity, T, H, D) = (2, 2, 5, 2, 8), got (2, 1, 5, 2, 8)",
     dict(text_parts=torch.randn(B, 1, T, H, D))),
    ("text_lse must have shape (B, H, sparsity, T) = (2, 2, 2, 5), got (2, 2, 5)",
     dict(text_lse=torch.randn(B, H, T))),
    ("k has dtype torch.float64 but q has torch.float32", dict(k=torch.randn(B, L, H, D).double())),
]


@requires_cpu_ext
@pytest.mark.parametrize("msg,over", BAD_BACKWARD_OP, ids=[m[:40] for m, _ in BAD_BACKWARD_OP])
def test_attention_backward_op_rejects(msg, over):
    args = backward_args(**over)
    with pytest.raises(RuntimeError) as info:
        torch.ops.skiparse.attention_backward(*args.values())
    assert f"skiparse.attention_backward: {msg}" in str(info.value)


x5, w5 = torch.randn(2, 5, 4, 9, 7), torch.randn(7, 5, 3, 3, 3)
BAD_OPS = [
    ("skiparse.reorder: x must have at least 2 dims (B, L, ...), got shape (5,)",
     lambda: torch.ops.skiparse.reorder(torch.randn(5), 2, False)),
    ("skiparse.reorder: sparsity must be an int >= 1, got -1",
     lambda: torch.ops.skiparse.reorder(torch.randn(2, 8), -1, False)),
    ("skiparse.restore: x dim 0 must be k*B with k = sparsity = 2, got 3",
     lambda: torch.ops.skiparse.restore(torch.randn(3, 4), 2, False, 8)),
    ("skiparse.restore: length must be an int >= 0 (the original sequence length), got -1",
     lambda: torch.ops.skiparse.restore(torch.randn(4, 4), 2, False, -1)),
    ("skiparse.restore: length=9 does not match x: a sequence of length 9 padded to a multiple of k^2 = 4 has 6 rows",
     lambda: torch.ops.skiparse.restore(torch.randn(4, 4), 2, False, 9)),
    ("skiparse.conv3d_3x3: input must have 5 dims, got shape (5, 4, 9, 7)",
     lambda: torch.ops.skiparse.conv3d_3x3(x5[0], w5, None)),
    ("skiparse.conv3d_3x3: the CPU kernel takes a float32 or float64 input, got torch.float16",
     lambda: torch.ops.skiparse.conv3d_3x3(x5.half(), w5.half(), None)),
    ("skiparse.conv3d_3x3: weight has dtype torch.float64 but input has torch.float32",
     lambda: torch.ops.skiparse.conv3d_3x3(x5, w5.double(), None)),
    ("skiparse.conv3d_3x3: weight must be (C_out, C_in=5, kt, 3, 3), got shape (7, 5, 3, 3, 2)",
     lambda: torch.ops.skiparse.conv3d_3x3(x5, w5[..., :2], None)),
    ("skiparse.conv3d_3x3: context must be (B=2, C_in=5, Tc, H=9, W=7), the frames before input; got shape "
     "(2, 5, 2, 9, 6)",
     lambda: torch.ops.skiparse.conv3d_3x3(x5, w5, None, torch.randn(2, 5, 2, 9, 6))),
    ("skiparse.conv3d_3x3: context has dtype torch.float64 but input has torch.float32",
     lambda: torch.ops.skiparse.conv3d_3x3(x5, w5, None, torch.randn(2, 5, 2, 9, 7).double())),
    ("skiparse.conv3d_3x3: bias must be (C_out=7,), got shape (6,)",
     lambda: torch.ops.skiparse.conv3d_3x3(x5, w5, torch.randn(6))),
    ("skiparse.conv3d_3x3: bias has dtype torch.float64 but input has torch.float32",
     lambda: torch.ops.skiparse.conv3d_3x3(x5, w5, torch.randn(7).double())),
]


@requires_cpu_ext
@pytest.mark.parametrize("msg,call", BAD_OPS, ids=[m[:50] for m, _ in BAD_OPS])
def test_reorder_restore_conv_ops_reject(msg, call):
    with pytest.raises(RuntimeError) as info:
        call()
    assert msg in str(info.value)
