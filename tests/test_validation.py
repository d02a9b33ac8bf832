"""Bad input: a clear TypeError / ValueError naming the argument, before any kernel runs."""
import pytest
import torch

import skiparse

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
