"""Training under faults: a previous run is never overwritten by accident, a run or cache folder has one writer,
resume survives a damaged ``latest`` or checkpoint, metrics never repeat a step, bad config values fail at load
naming the key, and the latent cache notices replaced clips."""
import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("transformers")

from suv.cli import cache as cache_cli  # noqa: E402
from suv.cli import train as cli  # noqa: E402
from suv.train import cache  # noqa: E402
from suv.train.config import load_config  # noqa: E402
from suv.train.data import make_toy_dataset  # noqa: E402
from toy_training import toy_config  # noqa: E402
from suv.train.sources import load_encoders  # noqa: E402
from suv.train.trainer import TrainConfig, Trainer  # noqa: E402


@pytest.fixture(scope="module")
def toy_index(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), count=4, frames=9, size=32)


def config(index, **kw):
    return toy_config(index, save_every=1, **kw)


def yaml_config(tmp_path, index, **extra):
    lines = [f"data: {index}", "t5_max_length: 8", "num_frames: 9", "height: 32", "width: 32", "batch_size: 2",
             "save_every: 1", "bucket_min_factor: 1", *(f"{k}: {v}" for k, v in extra.items())]
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def metric_steps(run):
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def hold_lock(folder):
    """A separate process holding ``folder``'s lock (what a concurrent run does), and its pid."""
    code = ("import sys, time; from suv.io import folder_lock\n"
            "with folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_previous_run_is_refused_without_resume_or_overwrite(tmp_path, toy_index, one_thread):
    cfg, run = yaml_config(tmp_path, toy_index), tmp_path / "run"
    args = ["--config", str(cfg), "--output", str(run), "--no-progress"]
    assert cli.main([*args, "--max-steps", "2"]) == 0
    before = (run / "checkpoints" / "step_0000002.safetensors").read_bytes()
    with pytest.raises(SystemExit, match="holds a previous run .*--resume .*--overwrite"):
        cli.main([*args, "--max-steps", "1"])
    assert (run / "checkpoints" / "step_0000002.safetensors").read_bytes() == before
    assert (run / "checkpoints" / "latest").read_text() == "step_0000002.safetensors"
    assert metric_steps(run) == [1, 2]

    # --resume continues without repeating a step; --overwrite starts afresh.
    assert cli.main([*args, "--max-steps", "3", "--resume"]) == 0
    assert metric_steps(run) == [1, 2, 3]
    assert cli.main([*args, "--max-steps", "1", "--overwrite"]) == 0
    assert metric_steps(run) == [1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_0000001.safetensors"]


def test_second_concurrent_run_fails_at_once_naming_the_holder(tmp_path, toy_index):
    run = tmp_path / "run"
    holder = hold_lock(run)
    try:
        with pytest.raises(SystemExit, match=f"run folder .*run is in use by pid {holder.pid} on host "):
            cli.main(["--config", str(yaml_config(tmp_path, toy_index)), "--output", str(run), "--no-progress"])
        with pytest.raises(SystemExit, match=f"cache folder .*run is in use by pid {holder.pid} on host "):
            cache_cli.main(["--config", str(yaml_config(tmp_path, toy_index)), "--output", str(run)])
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # neither wrote anything


def test_lock_is_released_when_its_holder_is_killed(tmp_path):
    from suv.io import folder_lock

    holder = hold_lock(tmp_path)
    holder.kill()  # SIGKILL: no cleanup code runs, the kernel drops the lock
    holder.wait()
    with folder_lock(tmp_path) as lock:
        assert f"pid {os.getpid()}" in lock.read_text()


def test_output_that_is_a_file_and_meaningless_max_steps_are_refused(tmp_path, toy_index, capsys):
    cfg, afile = yaml_config(tmp_path, toy_index), tmp_path / "afile"
    afile.write_text("x")
    for main in (cli.main, cache_cli.main):
        with pytest.raises(SystemExit) as e:
            main(["--config", str(cfg), "--output", str(afile)])
        assert e.value.code == 2 and f"--output {afile} is a file; expected a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["--config", str(cfg), "--output", str(tmp_path / "run"), "--max-steps", "-1"])
    assert e.value.code == 2 and "--max-steps must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, value, message", [
    ("height", 60, "height: expected a multiple of 16"),
    ("batch_size", 0, "batch_size: expected an integer >= 1, got 0"),
    ("lr", "fast", "lr: expected a finite number, got 'fast'"),
    ("num_frames", "'9'", "num_frames: expected an integer, got '9'"),
    ("cfg_drop", 1.5, r"cfg_drop: expected a value in \[0, 1\], got 1.5"),
    ("betas", "[0.9]", r"betas: expected two numbers, got \[0.9\]"),
])  # fmt: skip
def test_bad_config_values_fail_at_load_naming_the_key(tmp_path, toy_index, key, value, message):
    with pytest.raises(ValueError, match=message):
        load_config(yaml_config(tmp_path, toy_index, **{key: value}), tmp_path)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory, toy_index):
    """A run folder with checkpoints of steps 1 and 2 and the metrics of both."""
    run = tmp_path_factory.mktemp("resume") / "run"
    Trainer(config(toy_index), run).fit(2, progress=False)
    return run


def damaged_copy(run, tmp_path, damage):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    damage(copy / "checkpoints")
    return copy


def flip_tensor_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) - 100] ^= 0x01  # the end of a safetensors file is tensor data
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, expect_step, why", [
    (lambda c: (c / "latest").write_text(""), 2, "latest is missing or empty"),
    (lambda c: (c / "latest").unlink(), 2, "latest is missing or empty"),
    (lambda c: (c / "latest").write_text("step_00"), 2, "names 'step_00'.*checkpoint not found"),
    (lambda c: (c / "step_0000002.safetensors").unlink(), 1, "checkpoint not found"),
    (lambda c: (c / "step_0000002.safetensors").write_bytes(b"\0" * 100), 1, "cannot read checkpoint"),
    (lambda c: flip_tensor_byte(c / "step_0000002.safetensors"), 1, "corrupt checkpoint .*step_0000002.safetensors"),
])  # fmt: skip
def test_resume_falls_back_to_the_newest_intact_checkpoint(two_checkpoints, tmp_path, toy_index, damage,
                                                           expect_step, why, one_thread):  # fmt: skip
    run = damaged_copy(two_checkpoints, tmp_path, damage)
    trainer = Trainer(config(toy_index), run)
    with pytest.warns(UserWarning, match=f"resume: .*{why}.*resuming from the newest intact checkpoint .*"
                                         f"step_000000{expect_step}"):  # fmt: skip
        assert trainer.resume()
    assert trainer.step == expect_step
    assert metric_steps(run) == list(range(1, expect_step + 1))  # the rows past it are trained again
    trainer.fit(3, progress=False)
    assert metric_steps(run) == [1, 2, 3]


def test_resume_without_any_intact_checkpoint_names_every_file(two_checkpoints, tmp_path, toy_index):
    def damage(c):
        for p in c.glob("step_*"):
            flip_tensor_byte(p)

    run = damaged_copy(two_checkpoints, tmp_path, damage)
    with pytest.raises(Exception, match="no intact checkpoint .*step_0000002.*step_0000001"):
        Trainer(config(toy_index), run).resume()


def test_torn_metrics_line_is_dropped_on_resume(two_checkpoints, tmp_path, toy_index):
    run = damaged_copy(two_checkpoints, tmp_path, lambda c: None)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "lo')  # killed mid-write
    trainer = Trainer(config(toy_index), run)
    assert trainer.resume() and trainer.step == 2
    assert metric_steps(run) == [1, 2]


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    index = make_toy_dataset(root / "data", count=2, frames=9, size=32)
    cfg = config(index)
    cache.build_cache(cfg, root / "cache")
    return cfg, root


def test_replaced_clip_makes_the_cache_stale(small_cache, tmp_path):
    import shutil

    cfg, root = small_cache
    shutil.copytree(root / "data", tmp_path / "data")
    shutil.copytree(root / "cache", tmp_path / "cache")
    moved = TrainConfig.from_dict({**vars(cfg), "data": str(tmp_path / "data" / "annotations.json")})
    cache.read_cache(tmp_path / "cache", moved)  # the dataset moved with its times: still the same clips
    clip = sorted((tmp_path / "data").glob("*.mp4"))[0]
    clip.write_bytes(clip.read_bytes() + b"\0")  # replaced by another video: another size and time
    with pytest.raises(ValueError, match="stale latent cache .* different clip_files"):
        cache.read_cache(tmp_path / "cache", moved)


def test_index_without_fingerprint_is_refused(small_cache, tmp_path):
    import shutil

    cfg, root = small_cache
    shutil.copytree(root / "cache", tmp_path / "cache")
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    del index["fingerprint"]
    (tmp_path / "cache" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="index.json has no fingerprint .*rebuild it with `suv-cache`"):
        cache.read_cache(tmp_path / "cache", cfg)


def test_random_tiny_vae_depends_on_the_seed_only(toy_index, tmp_path):
    cfg = config(toy_index)
    torch.manual_seed(1)
    a = load_encoders(cfg, tmp_path)[0].state_dict()
    torch.manual_seed(2)  # another global RNG state: the weights do not change
    b = load_encoders(cfg, tmp_path)[0].state_dict()
    other = load_encoders(config(toy_index, seed=7), tmp_path)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)  # and the seed, part of the fingerprint, does
