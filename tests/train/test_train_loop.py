"""The training loop on the tiny config: the loss falls, resume is bit-identical, an extreme norm stops resumably."""
import json

import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("transformers")

from suv.cli import train as cli  # noqa: E402
from suv.train.clipping import ClipStats  # noqa: E402
from suv.train.data import make_toy_dataset  # noqa: E402
from toy_training import toy_config  # noqa: E402
from suv.train.trainer import ExtremeGradNorm, TrainConfig, Trainer  # noqa: E402


@pytest.fixture(scope="module")
def toy_index(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), count=6, frames=11, size=32)


def test_tiny_run_from_the_command_line_learns(tmp_path, one_thread):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("data: toy\nt5_max_length: 8\nnum_frames: 9\nheight: 32\nwidth: 32\nbatch_size: 4\n"
                   "lr: 3.0e-4\nmax_steps: 40\nsave_every: 20\nbucket_min_factor: 1\n")
    out = tmp_path / "run"
    assert cli.main(["--config", str(cfg), "--output", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 41))
    first, last = sum(r["loss"] for r in rows[:10]) / 10, sum(r["loss"] for r in rows[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    assert {"grad_norm", "threshold", "moving_avg", "clipped", "samples_per_second"} <= set(rows[0])
    # Memory is named for what it is: host RSS on a CPU run (no device figure without a GPU).
    assert rows[0]["host_peak_rss_mib"] > 100 and not any(k.startswith("device") for k in rows[0])
    assert (out / "loss.png").stat().st_size > 5_000
    assert (out / "checkpoints" / "latest").read_text() == "step_0000040.safetensors"


def test_resume_continues_bit_identically(tmp_path, toy_index, one_thread):
    straight = Trainer(toy_config(toy_index), tmp_path / "a")
    straight.fit(6, progress=False)

    first = Trainer(toy_config(toy_index), tmp_path / "b")
    first.fit(3, progress=False)
    first.save()
    resumed = Trainer(toy_config(toy_index), tmp_path / "b")
    assert resumed.resume() and resumed.step == 3
    resumed.fit(6, progress=False)

    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    for name, tensor in straight.ema.shadow.items():
        assert torch.equal(tensor, resumed.ema.shadow[name]), name
    assert straight.clipper.state_dict() == resumed.clipper.state_dict()


def test_extreme_norm_stops_and_resumes_past_the_bad_batch(tmp_path, toy_index, one_thread, monkeypatch):
    trainer = Trainer(toy_config(toy_index), tmp_path / "run")
    trainer.fit(2, progress=False)
    before = {n: t.clone() for n, t in trainer.model.state_dict().items()}
    monkeypatch.setattr(trainer.clipper, "update", lambda g, params=(), group=None: ClipStats(
        g, g, 1.0, 1.0, 0.5, 0.0, clipped=False, extreme=True))
    with pytest.raises(ExtremeGradNorm, match="step 2: gradient norm .* continues at step 3"):
        trainer.fit(5, progress=False)
    assert (tmp_path / "run" / "global_step_for_sampler.txt").read_text().strip() == "3"
    resumed = Trainer(toy_config(toy_index), tmp_path / "run")
    assert resumed.resume() and resumed.step == 3
    for name, tensor in before.items():  # the bad step changed no weight
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_bad_config_is_refused_by_name(toy_index):
    with pytest.raises(ValueError, match=r"unknown training config keys \['learning_rate'\]"):
        TrainConfig.from_dict({"data": str(toy_index), "learning_rate": 1e-4})
    with pytest.raises(ValueError, match="num_frames: expected \\(T - 1\\) % 8 == 0, got 10"):
        toy_config(toy_index, num_frames=10)


def _parallel_worker(rank, world, index, out, init, parallel):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    trainer = Trainer(toy_config(index, batch_size=1, parallel=parallel), out)
    rows = trainer.fit(3, progress=False)  # saves a checkpoint at the last step (full tensors, rank 0)
    if rank == 0:
        torch.save({"losses": [r["loss"] for r in rows]}, out / "losses.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_equal_one_process_on_the_global_batch(tmp_path, toy_index, one_thread, parallel):
    """gloo, 2 ranks x batch 1 vs 1 process x batch 2: the same losses and weights; the checkpoint of the
    2-rank run (full tensors) resumes in one process."""
    out = tmp_path / parallel
    torch.multiprocessing.spawn(_parallel_worker, args=(2, toy_index, out, f"file://{tmp_path}/pg", parallel),
                                nprocs=2, join=True)
    single = Trainer(toy_config(toy_index, batch_size=2), tmp_path / "single")
    losses = [r["loss"] for r in single.fit(3, progress=False)]
    assert losses == pytest.approx(torch.load(out / "losses.pt")["losses"], rel=1e-5)
    resumed = Trainer(toy_config(toy_index, batch_size=2), out)
    assert resumed.resume() and resumed.step == 3
    for name, tensor in single.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f"{name}: {m}")
    for name, tensor in single.ema.shadow.items():
        torch.testing.assert_close(resumed.ema.shadow[name], tensor, rtol=1e-4, atol=1e-6)


def test_multi_resolution_buckets_train_one_shape_per_batch(tmp_path, one_thread):
    import json as _json

    square = make_toy_dataset(tmp_path / "sq", count=4, frames=11, size=32)
    wide = make_toy_dataset(tmp_path / "wide", count=4, frames=11, size=32, width=48)
    records = [{**r, "path": f"sq/{r['path']}"} for r in _json.loads(square.read_text())]
    records += [{**r, "path": f"wide/{r['path']}"} for r in _json.loads(wide.read_text())]
    index = tmp_path / "all.json"
    index.write_text(_json.dumps(records))
    cfg = toy_config(index, max_hxw=3072, hw_stride=16, batch_size=2)
    trainer = Trainer(cfg, tmp_path / "run")
    assert sorted(set(trainer.data.shapes)) == ["9x48x48", "9x48x64"]  # 32x48 snaps to 3:4, within 3,072 px
    seen = set()
    for _ in range(4):
        x0 = trainer.data.batch(trainer.sampler.batch(trainer.step), 0.0, torch.Generator().manual_seed(0))[0]
        seen.add(tuple(x0.shape[-2:]))
        trainer.train_step()
    assert seen == {(6, 6), (6, 8)}


def test_ffn_checkpointing_changes_memory_not_results(tmp_path, toy_index, one_thread):
    plain = Trainer(toy_config(toy_index), tmp_path / "plain")
    recompute = Trainer(toy_config(toy_index, checkpoint_ff=True), tmp_path / "ckpt")
    from suv.models.layers import FeedForward

    ffns = [m for m in recompute.model.modules() if isinstance(m, FeedForward)]
    assert ffns and all(m.recompute for m in ffns) and not any(m.recompute for m in plain.model.modules()
                                                                if isinstance(m, FeedForward))
    plain.fit(2, progress=False)
    recompute.fit(2, progress=False)
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, recompute.model.state_dict()[name]), name
