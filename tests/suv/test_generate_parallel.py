"""suv-generate under torch.distributed (gloo, CPU): sequence- and CFG-parallel sampling give the single process's
latents, each rank's attention sees only its shards, and bad layouts fail before any model loads.

Two spawns serve the equality tests (starting processes dominates the run time): 2 ranks run
``--sequence-parallel 2`` and then ``--cfg-parallel``; 4 ranks run both together.
"""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from suv.cli.generate import main
from suv.parallel import check_generation_layout

RUN = ["--demo", "--steps", "2", "--no-progress", "--seed", "3", "--prompt", "a cat"]
HEADS, TOKENS = 2, 32  # suv-tiny at the demo's 9x64x64: 2 x 4 x 4 video tokens
RUNS = {2: {"sp": ["--sequence-parallel", "2"], "cfg": ["--cfg-parallel"]},
        4: {"both": ["--sequence-parallel", "2", "--cfg-parallel"]}}


def _spy_attention(seen: list):
    """Record the q shape of every attention call: the model's (this rank's token chunk, all heads) under sequence
    parallelism, and the kernel's (all tokens, this rank's heads)."""
    import skiparse
    import suv.models.attention as attention

    kernel, exchange = skiparse.skiparse_attention, attention.tokens_to_heads

    def spy_kernel(q, *args, **kwargs):
        seen.append(("kernel", tuple(q.shape)))
        return kernel(q, *args, **kwargs)

    def spy_exchange(x, *args, **kwargs):  # q, k and v of the model, before the exchange
        seen.append(("chunk", tuple(x.shape)))
        return exchange(x, *args, **kwargs)

    skiparse.skiparse_attention, attention.tokens_to_heads = spy_kernel, spy_exchange


def _keep_latents(kept: list):
    """Keep what ``Pipeline.denoise`` returns on this rank (only rank 0 writes --latents-out)."""
    from suv.sampling import Pipeline

    denoise = Pipeline.denoise

    def spy(self, *args, **kwargs):
        kept.append(denoise(self, *args, **kwargs))
        return kept[-1]

    Pipeline.denoise = spy


def _worker(rank, world, folder):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/pg{world}", rank=rank, world_size=world)
    seen: list = []
    kept: list = []
    _spy_attention(seen)
    _keep_latents(kept)
    for name, flags in RUNS[world].items():
        seen.clear()
        out = folder / f"{name}.mp4"
        assert main([*RUN, *flags, "--out", str(out), "--latents-out", str(folder / f"{name}.safetensors")]) == 0
        torch.save({"seen": sorted(set(seen)), "latents": kept[-1]}, folder / f"{name}{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generate")
    for world in RUNS:
        torch.multiprocessing.spawn(_worker, args=(world, folder), nprocs=world, join=True)
    single = folder / "single.safetensors"
    assert main([*RUN, "--out", str(folder / "single.mp4"), "--latents-out", str(single)]) == 0
    return folder, load_file(single)["latents"]


@pytest.mark.parametrize("name, world", [("sp", 2), ("cfg", 2), ("both", 4)])
def test_parallel_latents_equal_one_process(runs, name, world):
    """Rank 0's --latents-out file and every rank's latents match one process."""
    folder, single = runs
    assert (folder / f"{name}.mp4").is_file()
    ranks = [torch.load(folder / f"{name}{rank}.pt")["latents"] for rank in range(world)]
    for rank, got in [("file", load_file(folder / f"{name}.safetensors")["latents"]), *enumerate(ranks)]:
        assert got.shape == single.shape and got.dtype == torch.float32
        assert (got - single).abs().max().item() <= 1e-5, (name, rank)


@pytest.mark.parametrize("name, world", [("sp", 2), ("cfg", 2), ("both", 4)])
def test_each_rank_attends_only_its_shards(runs, name, world):
    """Batch: both CFG branches together ([negative; positive]) or this rank's branch alone. Sequence parallel: the
    model's projections hold TOKENS / 2 tokens, the kernel all tokens for HEADS / 2 heads."""
    folder, _ = runs
    batch = 1 if name in ("cfg", "both") else 2
    sp = name in ("sp", "both")
    for rank in range(world):
        seen = torch.load(folder / f"{name}{rank}.pt")["seen"]
        shapes = {kind: {s[:3] for k, s in seen if k == kind} for kind in ("chunk", "kernel")}
        assert shapes["kernel"] == {(batch, TOKENS, HEADS // 2 if sp else HEADS)}, (name, rank, seen)
        assert shapes["chunk"] == ({(batch, TOKENS // 2, HEADS)} if sp else set()), (name, rank, seen)


@pytest.mark.parametrize("world, s, cfg, guidance, heads, tokens, match", [
    (4, 3, False, 8.0, 6, 36, "--sequence-parallel 3 must divide the number of processes"),
    (4, 2, False, 8.0, 6, 36, r"needs exactly 2 processes, got 4"),
    (2, 2, True, 8.0, 6, 36, r"--sequence-parallel 2 x 2 for --cfg-parallel needs exactly 4"),
    (2, 2, False, 8.0, 3, 36, "--sequence-parallel 2 must divide the denoiser's attention heads"),
    (2, 2, False, 8.0, 6, 35, "--sequence-parallel 2 must divide the video tokens"),
    (2, 1, True, 1.0, 6, 36, r"--cfg-parallel needs classifier-free guidance"),
    (1, 0, False, 8.0, 6, 36, "--sequence-parallel must be a positive integer"),
])  # fmt: skip
def test_bad_layouts_name_the_flag(world, s, cfg, guidance, heads, tokens, match):
    with pytest.raises(ValueError, match=match):
        check_generation_layout(world, s, cfg, guidance, heads, tokens)


@pytest.mark.parametrize("flags, env, match", [
    (["--sequence-parallel", "3"], {"WORLD_SIZE": "3"}, "attention heads"),
    (["--sequence-parallel", "2", "--frames", "1", "--height", "48", "--width", "48"], {"WORLD_SIZE": "2"},
     "video tokens per forward (9)"),
    (["--sequence-parallel", "2"], {"WORLD_SIZE": "3"}, "must divide the number of processes"),
    (["--cfg-parallel", "--guidance-scale", "1"], {"WORLD_SIZE": "2"}, "--cfg-parallel needs"),
    (["--guidance-scale", "nan"], {}, "--guidance-scale must be a finite number"),
    (["--fps", "0"], {}, "--fps must be a positive"),
])  # fmt: skip
def test_cli_refuses_bad_settings_before_loading_a_model(tmp_path, monkeypatch, capsys, flags, env, match):
    import suv.cli.generate as cli

    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(cli, "demo_pipeline", no_model)
    with pytest.raises(SystemExit) as e:
        main([*RUN, *flags, "--out", str(tmp_path / "x.mp4")])
    assert e.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
