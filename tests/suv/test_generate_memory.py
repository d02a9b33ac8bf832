"""suv-generate's memory on the CPU (host RSS, Linux): --offload keeps one model resident at a time, sequence
parallelism splits the activations, and the --dry-run plan matches the measured peak.

Peaks are RSS growth above the process's RSS before the measured call (``skiparse.host.peak_extra_mib``), in fresh
spawned processes where a test needs an unpolluted heap.
"""
from __future__ import annotations

import json
import re

import pytest
import torch
import torch.distributed as dist

from skiparse.host import fixed_mmap_threshold, peak_extra_mib, rss_mib
from suv.cli.generate import main

pytestmark = pytest.mark.skipif(rss_mib() is None, reason="host RSS is read from /proc (Linux)")

# Weights of comparable size (the released WF-VAE config, ~866 MiB fp32, and a wide denoiser) on a 4-token video:
# resident together they cost their sum, one at a time their maximum.
WIDE = dict(num_layers=[2, 2, 2], sparse_n=[1, 1, 1], num_heads=16, head_dim=64, timestep_embed_dim=32,
            caption_channels=24, pooled_projection_dim=16)
# A narrow denoiser on 8192 video tokens: its activations, not its weights, fill the memory.
NARROW = dict(WIDE, sparse_n=[2, 4, 2], num_heads=4, head_dim=32)
NARROW_SHAPE = dict(frames=25, height=512, width=1024)


def _offload_worker(rank, folder, argv):
    fixed_mmap_threshold(64 << 10)  # peak RSS = live allocations (see _denoise_peak)
    torch.set_num_threads(1)
    import transformers  # noqa: F401  (imported before the baseline: it is runtime, not a model)

    _, extra = peak_extra_mib(lambda: main(argv))
    (folder / "offload.json").write_text(json.dumps(extra))


def test_offload_peak_is_below_the_sum_of_the_weights(tmp_path):
    from suv.models import SparseUMMDiT
    from suv.sampling.plan import module_bytes
    from suv.vae import WFVAE

    (tmp_path / "wide.json").write_text(json.dumps(WIDE))
    argv = ["--demo", "--dit-config", str(tmp_path / "wide.json"), "--vae-config", "v1.5", "--frames", "1",
            "--height", "32", "--width", "32", "--steps", "1", "--no-progress", "--offload",
            "--out", str(tmp_path / "o.mp4")]  # fmt: skip
    torch.multiprocessing.spawn(_offload_worker, args=(tmp_path, argv), nprocs=1, join=True)
    peak = json.loads((tmp_path / "offload.json").read_text())
    dit = module_bytes(lambda: SparseUMMDiT(**WIDE), torch.float32) / 2**20
    vae = module_bytes(lambda: WFVAE.from_config("v1.5"), torch.float32) / 2**20
    assert 0.5 * vae < dit < 1.5 * vae  # comparable: the sum is well above the larger one
    assert peak < dit + vae, (peak, dit, vae)


def _denoise_peak(rank, world, folder, config):
    """RSS growth of one denoising step of the narrow model: every model built and a small step run (the
    process group's and the kernels' first-use buffers) before the baseline. Large frees leave the RSS at once
    (``fixed_mmap_threshold``), so the peak is what was alive, not the heap's fragmentation."""
    fixed_mmap_threshold(64 << 10)
    torch.set_num_threads(1)
    from suv.parallel import generation_groups
    from suv.sampling import demo_pipeline

    groups = None
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank, world_size=world)
        groups = generation_groups(world, False, "cpu")
    pipe = demo_pipeline(folder / "enc", dit_config=config)
    pipe.denoise("a cat", frames=9, height=64, width=64, steps=1, progress=False, groups=groups)
    _, extra = peak_extra_mib(lambda: pipe.denoise("a cat", steps=1, progress=False, groups=groups, **NARROW_SHAPE))
    (folder / f"peak{world}-{rank}.json").write_text(json.dumps(extra))


def test_sequence_parallel_lowers_the_activation_peak(tmp_path):
    """Each of 2 ranks peaks at <= 0.6x one process (the issue's target). Measured 0.56x on a Xeon, 8192 tokens: the
    feed-forward's activations halve; the (CFG-doubled) latents, the noise and the RoPE tables stay whole."""
    for world in (1, 2):
        torch.multiprocessing.spawn(_denoise_peak, args=(world, tmp_path, NARROW), nprocs=world, join=True)
    single = json.loads((tmp_path / "peak1-0.json").read_text())
    ranks = [json.loads((tmp_path / f"peak2-{r}.json").read_text()) for r in range(2)]
    assert max(ranks) <= 0.6 * single, (ranks, single)


def _peaks(out: str) -> tuple[float, float]:
    planned = float(re.search(r"peak per rank\s+([\d.]+) MiB", out).group(1))
    measured = float(re.search(r"peak host RSS (\d+) MiB", out).group(1))
    return planned, measured


@pytest.mark.parametrize("flags", [[], ["--offload"], ["--dit-config", "NARROW", "--frames", "9", "--height", "256",
                                                       "--width", "512", "--offload"]])  # fmt: skip
def test_dry_run_plan_is_within_15_percent_of_the_measured_peak(tmp_path, capsys, flags):
    (tmp_path / "narrow.json").write_text(json.dumps(NARROW))
    flags = [str(tmp_path / "narrow.json") if f == "NARROW" else f for f in flags]
    argv = ["--demo", "--steps", "1", "--no-progress", "--out", str(tmp_path / "v.mp4"), *flags]
    assert main([*argv, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert main(argv) == 0
    planned, _ = _peaks(plan + "\npeak host RSS 0 MiB")
    _, measured = _peaks("peak per rank 0 MiB\n" + capsys.readouterr().out)
    assert abs(planned - measured) <= 0.15 * measured, (planned, measured, plan)
