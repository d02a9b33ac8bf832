"""The benchmark's FLOP model reproduces the spec's numbers for the released config at 121x576x1024."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from suv.models import PRESETS

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "suv_denoiser.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_suv", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_released_flop_model_matches_spec(bench):
    r = bench.flop_model(PRESETS["suv-8.5b"], (16, 36, 64), 512)
    assert r["tokens"] == 36_864
    assert r["per_k_attention_vs_dense"][2] == pytest.approx(0.514, abs=1e-3)
    assert r["per_k_attention_vs_dense"][4] == pytest.approx(0.271, abs=1e-3)
    assert r["per_k_attention_vs_dense"][8] == pytest.approx(0.150, abs=1e-3)
    assert r["attention_ratio"] == pytest.approx(0.393, abs=1e-3)
    assert r["blocks_only_ratio"] == pytest.approx(0.593, abs=1e-3)
    assert r["blocks_only_dense_tflop"] == pytest.approx(820, abs=1)
    assert r["blocks_only_suv_tflop"] == pytest.approx(487, abs=1)
    assert r["attention_share_dense"] == pytest.approx(0.67, abs=0.01)


def test_dense_config_has_ratio_one(bench):
    r = bench.flop_model(dataclasses.replace(PRESETS["suv-tiny"], sparse1d=False), (2, 4, 4), 8)
    assert r["attention_ratio"] == r["total_ratio"] == 1.0
