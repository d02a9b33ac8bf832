"""The flow-matching objective: the dynamic shift's published values, x_sigma / target algebra, masked MSE."""
import math

import pytest
import torch

from suv.sampling.schedule import resolution_shift, shifted_sigmas
from suv.train.objective import masked_mse, noisy_latents, sample_sigmas


@pytest.mark.parametrize("hw,shift", [((72, 128), 2.33), ((36, 64), 1.74), ((48, 48), 1.74), ((32, 32), 1.65)])
def test_resolution_shift_matches_the_spec(hw, shift):
    assert resolution_shift(*hw) == pytest.approx(shift, abs=0.006)


def test_static_schedule_unchanged():
    s = shifted_sigmas(4, 7.0)
    assert s[0] == 1 and s[-1] == 0 and s[2] == pytest.approx(7 * 0.5 / (1 + 6 * 0.5))


def test_sigmas_are_shifted_logit_normal():
    g = torch.Generator().manual_seed(0)
    s = sample_sigmas(200_000, (72, 128), g)
    assert s.dtype == torch.float32 and 0 < s.min() and s.max() < 1
    shift = resolution_shift(72, 128)
    unshifted = s / (shift - (shift - 1) * s)  # inverse of the shift
    logits = torch.log(unshifted / (1 - unshifted))
    assert logits.mean().abs() < 0.01 and (logits.std() - 1).abs() < 0.01


def test_noisy_latents_and_target():
    x0, noise = torch.randn(2, 4, 3, 2, 2, dtype=torch.bfloat16), torch.randn(2, 4, 3, 2, 2)
    sigma = torch.tensor([0.0, 1.0])
    x, v = noisy_latents(x0, noise, sigma)
    assert x.dtype == torch.float32
    assert torch.equal(x[0], x0[0].float()) and torch.equal(x[1], noise[1])
    assert torch.equal(v, noise - x0.float())


def test_masked_mse_ignores_padded_positions():
    pred, target = torch.zeros(1, 2, 1, 2, 2), torch.ones(1, 2, 1, 2, 2)
    target[..., 1, 1] = 100.0  # a padded position
    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    mask[..., 1, 1] = False
    assert masked_mse(pred, target, mask).item() == 1.0
    assert masked_mse(pred, target).item() == pytest.approx((3 + 100**2) / 4)
    assert math.isfinite(masked_mse(pred, target, torch.zeros_like(mask)).item())
