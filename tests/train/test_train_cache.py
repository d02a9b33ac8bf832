"""The latent cache: built once, read by training without any encoder, refused when stale or corrupt."""
import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("transformers")

from suv.train import cache, trainer as trainer_module  # noqa: E402
from suv.train.data import make_toy_dataset  # noqa: E402
from suv.train.trainer import TrainConfig, Trainer  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    index = make_toy_dataset(root / "data", count=5, frames=11, size=32)
    cfg = TrainConfig.from_dict(dict(data=str(index), t5_max_length=8, num_frames=9, height=32, width=32,
                                     bucket_min_factor=1))
    cache.build_cache(cfg, root / "cache", shard_clips=2)
    return cfg, root


def test_cache_layout_and_training_without_encoders(built, tmp_path, monkeypatch, one_thread):
    cfg, root = built
    assert sorted(p.name for p in (root / "cache").glob("*.safetensors")) == [
        "empty.safetensors", "shard_00000.safetensors", "shard_00001.safetensors", "shard_00002.safetensors"]
    latents, captions, empty, shapes = cache.read_cache(root / "cache", cfg)
    assert shapes == ["9x32x32"] * 5
    assert len(latents) == 5 and latents[0].shape == (32, 2, 4, 4) and all(len(c) == 2 for c in captions)

    def no_encoders(*a, **k):
        raise AssertionError("a cached run must not load the encoders")

    monkeypatch.setattr(trainer_module, "load_encoders", no_encoders)
    cached = TrainConfig.from_dict({**vars(cfg), "cache": str(root / "cache"), "batch_size": 2})
    rows = Trainer(cached, tmp_path / "run").fit(3, progress=False)
    assert len(rows) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)


def test_stale_cache_is_refused_naming_the_difference(built):
    cfg, root = built
    other = TrainConfig.from_dict({**vars(cfg), "height": 64, "width": 64})
    with pytest.raises(ValueError, match="stale latent cache .* different height, width"):
        cache.read_cache(root / "cache", other)


def test_corrupt_shard_is_refused(built, tmp_path):
    cfg, root = built
    import shutil

    copy = tmp_path / "cache"
    shutil.copytree(root / "cache", copy)
    shard = copy / "shard_00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt latent cache .* shard_00001.safetensors .* checksum"):
        cache.read_cache(copy, cfg)
    (copy / "index.json").unlink()  # an interrupted build leaves no index
    with pytest.raises(ValueError, match="no usable latent cache .* build it with `suv-cache`"):
        cache.read_cache(copy, cfg)


def test_cache_benchmark_runs_and_reports_ratios():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "benchmarks/train_cache.py", "--steps", "2", "--frames", "9", "--size", "32",
                          "--batch", "2"], cwd=root, check=True, capture_output=True, text=True, timeout=600).stdout
    assert "cached vs online: step time" in out and "peak memory" in out
