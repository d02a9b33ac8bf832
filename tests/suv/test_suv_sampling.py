"""Sampler on analytic cases: exact velocity fields, CFG combination and batch order, rescale, prompts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from suv.sampling import (NEGATIVE_TEMPLATE, TextConditioning, clean_caption, guided_velocity, initial_noise,
                          negative_prompt, positive_prompt, sample, shifted_sigmas)  # fmt: skip


def text(batch: int, value: float) -> TextConditioning:
    return TextConditioning(torch.full((batch, 1, 3, 4), value), torch.ones(batch, 1, 3), torch.zeros(batch, 1, 2))


def test_shifted_sigmas():
    s = shifted_sigmas(50, 7.0)
    assert s.shape == (51,) and s[0] == 1.0 and s[-1] == 0.0
    assert bool((s[1:] < s[:-1]).all())
    torch.testing.assert_close(s[25], torch.tensor(0.875, dtype=torch.float64))  # 7*0.5 / (1 + 6*0.5)
    torch.testing.assert_close(shifted_sigmas(4, 1.0), torch.linspace(1, 0, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="steps"):
        shifted_sigmas(0)
    with pytest.raises(ValueError, match="shift"):
        shifted_sigmas(10, 0.0)


def test_exact_velocity_of_a_point_mass_lands_on_it():
    """For data = x0 the flow velocity is (x - x0) / sigma; Euler on it is exact at every step."""
    x0 = torch.randn(1, 2, 1, 2, 2)
    seen = []

    def model(x, t, hidden, mask, pooled):
        seen.append(t.clone())
        return (x - x0) / (t[:, None, None, None, None] / 1000.0)

    noise = initial_noise(x0.shape, seed=3)
    out = sample(model, noise, text(1, 1.0), steps=7, guidance_scale=1.0, progress=False)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(seen)[:, 0], (shifted_sigmas(7, 7.0)[:-1] * 1000).float())


def test_cfg_batch_order_negative_first_and_constant_field():
    """Model velocity = the text value of each batch row: uncond rows get -1, cond rows +2."""
    batches = []

    def model(x, t, hidden, mask, pooled):
        batches.append(hidden[:, 0, 0, 0].tolist())
        return hidden[:, 0, 0, 0].view(-1, 1, 1, 1, 1).expand_as(x)

    noise = torch.zeros(1, 1, 1, 2, 2)
    out = sample(model, noise, text(1, 2.0), text(1, -1.0), steps=3, guidance_scale=8.0, guidance_rescale=0.0,
                 progress=False)  # fmt: skip
    assert batches == [[-1.0, 2.0]] * 3
    # v = -1 + 8 * (2 - (-1)) = 23 everywhere; integrating from sigma 1 to 0 subtracts it once.
    torch.testing.assert_close(out, torch.full_like(noise, -23.0))


def test_guidance_rescale_matches_formula():
    g = torch.Generator().manual_seed(0)
    vu, vc = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    got = guided_velocity(vu, vc, 8.0, 0.7)
    a, b = vu.numpy().astype(np.float64), vc.numpy().astype(np.float64)
    cfg = a + 8.0 * (b - a)
    std = lambda z: z.reshape(2, -1).std(axis=1, ddof=1)[:, None, None]  # noqa: E731
    want = 0.7 * cfg * std(b) / std(cfg) + 0.3 * cfg
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(guided_velocity(vu, vc, 8.0, 0.0), vu + 8.0 * (vc - vu))
    with pytest.raises(ValueError, match="rescale"):
        guided_velocity(vu, vc, 8.0, 1.5)


def test_sampler_input_errors():
    m = lambda x, *a: x  # noqa: E731
    with pytest.raises(ValueError, match="needs uncond"):
        sample(m, torch.zeros(1, 1, 1, 2, 2), text(1, 0.0), None, steps=2, progress=False)
    with pytest.raises(ValueError, match="batch"):
        sample(m, torch.zeros(2, 1, 1, 2, 2), text(1, 0.0), text(1, 0.0), steps=2, progress=False)
    with pytest.raises(ValueError, match="noise"):
        sample(m, torch.zeros(2, 2), text(1, 0.0), steps=2, progress=False)
    with pytest.raises(ValueError, match="guidance_scale must be a finite"):  # NaN > 1 is False: CFG would be skipped
        sample(m, torch.zeros(1, 1, 1, 2, 2), text(1, 0.0), text(1, 0.0), guidance_scale=float("nan"), progress=False)


def test_progress_bar_and_seed(capsys):
    sample(lambda x, *a: torch.zeros_like(x), torch.zeros(1, 1, 1, 2, 2), text(1, 0.0), steps=2, guidance_scale=1.0)
    assert "sampling" in capsys.readouterr().err
    assert torch.equal(initial_noise((2, 3), 5), initial_noise((2, 3), 5))
    assert not torch.equal(initial_noise((2, 3), 5), initial_noise((2, 3), 6))


def test_prompt_templates_and_cleaning():
    assert positive_prompt("A  Cat <b>on</b> a mat") == "high quality, a cat on a mat"
    neg = negative_prompt()
    assert neg == NEGATIVE_TEMPLATE.lower() and neg.startswith("worst quality, normal quality, low quality")
    assert negative_prompt("Blue Sky").endswith("underexposed. blue sky")
    assert clean_caption("see https://x.org/a?b=1 @bob “nice” — ok%21") == 'see "nice" - ok!'
    assert clean_caption(clean_caption(" Mixed   CASE ")) == clean_caption(" Mixed   CASE ") == "mixed case"
    with pytest.raises(TypeError):
        clean_caption(None)
