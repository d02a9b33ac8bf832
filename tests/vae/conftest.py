"""Fixtures and helpers of the WF-VAE tests: small random-weight models, inputs, a tensor-memory meter."""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from suv.vae import WFVAE, WFVAEConfig, PRESETS


def random_model(config: str | WFVAEConfig = "tiny", seed: int = 0, **overrides) -> WFVAE:
    """Eval-mode WF-VAE with random weights; LayerNorm affine parameters are randomised too so they matter."""
    cfg = PRESETS[config] if isinstance(config, str) else config
    torch.manual_seed(seed)
    model = WFVAE.from_config({**cfg.to_dict(), **overrides}).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm." in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def tiny_v13_config() -> WFVAEConfig:
    """The v1.3 (4x8x8) layout at demo widths."""
    return WFVAEConfig(**{**PRESETS["v1.3"].to_dict(), "base_channels": 16, "encoder_energy_flow_hidden_size": 8,
                          "decoder_energy_flow_hidden_size": 16})  # fmt: skip


def random_video(t: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """(1, 3, T, H, W) uniform in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, h, w, generator=g) * 2 - 1


@pytest.fixture(autouse=True)
def _tiny_models_on_one_thread(one_thread):
    pass


@pytest.fixture(scope="module")
def tiny() -> WFVAE:
    return random_model("tiny")


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of tensor storages allocated by ops run inside the context (inputs and weights excluded).

    Storage Python objects are preserved by torch, so a finalizer on each new storage tracks when it is freed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._tracked: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in inputs or key in self._tracked or storage.nbytes() == 0:
                continue  # a view or in-place result, or already counted
            self._tracked.add(key)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, storage.nbytes())
        return out
