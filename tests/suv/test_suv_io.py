"""suv.io and skiparse.host: nested training state in one safetensors file, atomic writes, the RSS meter, and the
console scripts' entry points."""
from __future__ import annotations

import math
import re
from importlib import import_module
from pathlib import Path

import pytest
import torch

from skiparse.host import peak_extra_mib, write_atomic
from suv.io import read_checkpoint, save_state

ROOT = Path(__file__).resolve().parents[2]


def test_save_state_round_trips_a_trainer_like_state(tmp_path):
    """Tensors of several dtypes and shapes, int and str keys, tuples, lists, None, bools and non-finite floats come
    back as they were (optimizer states key parameters by int; betas are tuples; a clip statistic may be NaN)."""
    state = {
        "step": 7,
        "model": {"a.weight": torch.randn(3, 4), "a.bias": torch.zeros(3, dtype=torch.bfloat16)},
        "optimizer": {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.randn(3, 4)}},
                      "param_groups": [{"params": [0], "betas": (0.9, 0.999), "foreach": None, "amsgrad": False}]},
        "clip": {"moving_avg": float("nan"), "moving_var": math.inf, "decay": 0.99},
        "config": {"name": "tiny", "sizes": [1, 2, 3], "scalar": torch.tensor(3, dtype=torch.int64)},
    }  # fmt: skip
    save_state(state, tmp_path / "s.safetensors")
    back = read_checkpoint(tmp_path / "s.safetensors")

    def same(a, b):
        assert type(a) is type(b), (a, b)
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b)
        elif isinstance(a, dict):
            assert list(a) == list(b)
            for k in a:
                same(a[k], b[k])
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                same(x, y)
        elif isinstance(a, float) and math.isnan(a):
            assert math.isnan(b)
        else:
            assert a == b

    same(state, back)


def test_save_state_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="cannot store a set"):
        save_state({"x": {1, 2}}, tmp_path / "s.safetensors")
    with pytest.raises(ValueError, match="must end in .safetensors"):
        save_state({}, tmp_path / "s.pt")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_write_atomic_replaces_whole_files_only(tmp_path):
    path = tmp_path / "sub" / "latest"
    write_atomic(path, "step_1")
    write_atomic(path, b"step_22")
    assert path.read_text() == "step_22" and [p.name for p in path.parent.iterdir()] == ["latest"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS from /proc (Linux)")
def test_peak_extra_mib_sees_a_touched_allocation():
    # 64 MiB, written and still alive when the peak is read: a freed one counts only once the kernel has updated
    # its high-water mark, which one CI machine's kernel had not (extra 0.0)
    result, extra = peak_extra_mib(lambda: torch.ones(64 * 2**20 // 4))
    assert result.sum().item() == 64 * 2**20 // 4 and 56 <= extra < 1024


def test_every_console_script_is_a_main_in_suv_cli():
    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    scripts = dict(re.findall(r'^([\w-]+) = "([\w.:]+)"$', section, re.M))  # (tomllib is Python >= 3.11)
    assert set(scripts) == {"suv-vae", "suv-generate", "suv-convert", "suv-train", "suv-cache"}
    for name, target in scripts.items():
        module, func = target.split(":")
        assert module.startswith("suv.cli.") and callable(getattr(import_module(module), func)), name
