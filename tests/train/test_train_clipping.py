"""Adaptive gradient clipping (v1.5 rule, spec 4.4) on scripted gradient-norm sequences, worked out by hand."""
import math

import pytest
import torch

from suv.train.clipping import AdaptiveGradClip, FixedGradClip, global_grad_norm


def test_scripted_sequence_decay_one_half():
    clip = AdaptiveGradClip(decay=0.5)
    s = clip.update(0.2)  # first step: mu = min(3 g, 1), var = 0, never clipped
    assert (s.clipped, s.extreme, clip.moving_avg, clip.moving_var) == (False, False, pytest.approx(0.6), 0.0)

    s = clip.update(0.4)  # 0.4 <= 0.6: mu = 0.5*0.6 + 0.5*0.4, var = 0.5*0 + 0.5*(0.5 - 0.4)^2
    assert not s.clipped and s.threshold == pytest.approx(0.6)
    assert clip.moving_avg == pytest.approx(0.5) and clip.moving_var == pytest.approx(0.005)

    s = clip.update(0.9)  # threshold 0.5 + 3 sqrt(0.005) = 0.71213: clipped, statistics unchanged
    assert s.clipped and not s.extreme
    assert s.threshold == pytest.approx(0.5 + 3 * math.sqrt(0.005))
    assert s.clip_coef == pytest.approx(0.9 / s.threshold)
    assert (clip.moving_avg, clip.moving_var) == (pytest.approx(0.5), pytest.approx(0.005))

    assert clip.update(6.0).extreme  # above max(mu + 5 sqrt(var), 5)
    assert clip.update(float("nan")).extreme and clip.update(float("inf")).extreme
    assert (clip.moving_avg, clip.moving_var) == (pytest.approx(0.5), pytest.approx(0.005))  # extremes change nothing


def test_extreme_bound_follows_the_statistics_above_five():
    clip = AdaptiveGradClip(decay=0.5)
    clip.load_state_dict({"decay": 0.5, "moving_avg": 4.0, "moving_var": 1.0})  # extreme = max(4 + 5, 5) = 9
    assert clip.update(8.0).clipped and not clip.update(8.0).extreme
    assert clip.update(9.5).extreme


def test_first_step_is_never_clipped_even_when_large():
    clip = AdaptiveGradClip()
    s = clip.update(50.0)
    assert not s.clipped and not s.extreme and clip.moving_avg == 1.0


def test_clipping_scales_real_gradients_to_the_threshold():
    p = torch.nn.Parameter(torch.zeros(4))
    clip = AdaptiveGradClip(decay=0.5)
    clip.load_state_dict({"decay": 0.5, "moving_avg": 0.5, "moving_var": 0.0})
    p.grad = torch.tensor([0.6, 0.8, 0.0, 0.0]) * 2.0  # norm 2.0 > threshold 0.5 (extreme bound 5)
    s = clip([p])
    assert s.clipped and s.grad_norm == pytest.approx(2.0)
    assert global_grad_norm([p]) == pytest.approx(0.5, rel=1e-5) == s.grad_norm_after_clip
    assert torch.allclose(p.grad / p.grad.norm(), torch.tensor([0.6, 0.8, 0.0, 0.0]))


def test_state_round_trip_continues_identically():
    a, b = AdaptiveGradClip(0.9), AdaptiveGradClip(0.9)
    norms = [0.3, 0.25, 0.4, 0.2, 1.5, 0.35, 0.31]
    for g in norms[:4]:
        a.update(g)
    b.load_state_dict(a.state_dict())
    assert [a.update(g) for g in norms[4:]] == [b.update(g) for g in norms[4:]]


def test_fixed_clip_for_comparison():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    s = FixedGradClip(1.0)([p])
    assert s.clipped and s.grad_norm == 5.0 and global_grad_norm([p]) == pytest.approx(1.0, rel=1e-5)
    assert FixedGradClip(1.0).update(float("nan")).extreme


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5])
def test_bad_decay_is_refused(bad):
    with pytest.raises(ValueError, match="AdaptiveGradClip\\(decay\\): expected 0 < decay < 1"):
        AdaptiveGradClip(bad)
