"""Missing, corrupt and too-short clips are skipped with a logged reason, online and in the latent cache."""
import json
import logging
from pathlib import Path

import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("transformers")

from suv.cli import cache  # noqa: E402
from suv.io import write_video  # noqa: E402
from suv.train import TrainConfig, Trainer  # noqa: E402
from suv.train.data import make_toy_dataset  # noqa: E402
from suv.train.sources import OnlineClips, load_encoders  # noqa: E402

BAD = {1: "FileNotFoundError", 2: "cannot decode", 6: "too short"}  # clip -> what its warning says


def corrupt(index):
    """Delete clip 1, overwrite clip 2 with garbage, add clip 6 with 5 frames (9 are needed)."""
    folder = index.parent
    (folder / "clip_001.mp4").unlink()
    (folder / "clip_002.mp4").write_bytes(b"not a video at all" * 50)
    write_video(folder / "clip_006.mp4", torch.full((5, 32, 32, 3), 100, dtype=torch.uint8), 24.0)
    records = json.loads(index.read_text())
    records.append({**records[0], "path": "clip_006.mp4", "num_frames": 5})
    index.write_text(json.dumps(records))
    return index


def config(index, **kw):
    return TrainConfig.from_dict(dict(data=str(index), t5_max_length=8, num_frames=9, height=32, width=32,
                                      bucket_min_factor=1, **kw))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_clips")
    index = corrupt(make_toy_dataset(root / "data", count=6, frames=11, size=32))
    cfg = config(index)
    vae, text = load_encoders(cfg, root)
    return cfg, root, vae, text


def spy(source):
    """Which clips produced rows, and the captions their rows were given."""
    used, captions = [], []
    encode, caption = source.encode_clip, source.caption

    def encode_clip(i, rng):
        x0 = encode(i, rng)
        if x0 is not None:
            used.append(i)
        return x0

    def caption_fn(text):
        captions.append(text)
        return caption(text)

    source.encode_clip, source.caption = encode_clip, caption_fn
    return used, captions


def test_bad_clips_are_replaced_logged_once_and_deterministic(setup, caplog, one_thread):
    cfg, root, vae, text = setup
    source = OnlineClips(cfg, vae, text)
    used, captions = spy(source)
    indices = list(range(7))  # every clip, the three bad ones included
    with caplog.at_level(logging.WARNING, logger="suv.train.sources"):
        first = source.batch(indices, 0.5, torch.Generator().manual_seed(3))
        again = source.batch(indices, 0.5, torch.Generator().manual_seed(3))  # bad clips now known
    x0, hidden, mask, pooled = first
    assert x0.shape == (7, 32, 2, 4, 4) and hidden.shape[:2] == mask.shape[:2] == pooled.shape[:2] == (7, 1)
    assert len(used) == 14 and not set(used) & set(BAD)
    for i, caption in zip(used, captions):  # a replacement row carries its own clip's caption (or "")
        assert caption in source.records[i].captions + [""]
    for i, reason in BAD.items():
        path = str(source.records[i].path)
        logged = [r for r in caplog.records if path in r.getMessage()]
        assert len(logged) == 1 and reason in logged[0].getMessage() and logged[0].levelno == logging.WARNING
    assert set(source.bad) == set(BAD)
    assert all(torch.equal(a, b) for a, b in zip(first, again))

    fresh = OnlineClips(cfg, vae, text)  # a resumed run (or another rank) has not seen the bad clips yet
    rank1 = fresh.batch(indices, 0.5, torch.Generator().manual_seed(3), slice(3, 7))
    assert all(torch.equal(a[3:7], b) for a, b in zip(first, rank1))


def test_a_bucket_with_no_usable_clip_raises_clearly(setup):
    cfg, root, vae, text = setup
    records = json.loads(Path(cfg.data).read_text())
    only_bad = root / "data" / "only_bad.json"
    only_bad.write_text(json.dumps([records[i] for i in BAD]))
    source = OnlineClips(config(only_bad), vae, text)
    with pytest.raises(RuntimeError, match=r"every clip of shape 9x32x32 is unusable \(3 of 3 failed"):
        source.batch([0, 1], 0.0, torch.Generator().manual_seed(0))


def test_cache_leaves_bad_clips_out_and_trains(setup, tmp_path, caplog, capsys, one_thread):
    cfg, root, vae, text = setup
    yaml = tmp_path / "c.yaml"
    yaml.write_text(f"data: {cfg.data}\nt5_max_length: 8\nnum_frames: 9\nheight: 32\nwidth: 32\n"
                    f"bucket_min_factor: 1\nt5: {root / 'tiny_t5'}\nclip: {root / 'tiny_clip'}\n")
    with caplog.at_level(logging.WARNING):
        assert cache.main(["--config", str(yaml), "--output", str(tmp_path / "cache"), "--shard-clips", "2"]) == 0
    assert "4 clips cached, 3 skipped" in capsys.readouterr().out
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert [s["path"].rsplit("/", 1)[1] for s in index["skipped"]] == ["clip_001.mp4", "clip_002.mp4",
                                                                         "clip_006.mp4"]
    assert all(any(s["path"] in r.getMessage() for r in caplog.records) for s in index["skipped"])
    assert any("left out 3 of 7 clips" in r.getMessage() for r in caplog.records)

    cached = TrainConfig.from_dict({**vars(cfg), "t5": str(root / "tiny_t5"), "clip": str(root / "tiny_clip"),
                                    "cache": str(tmp_path / "cache"), "batch_size": 2})
    trainer = Trainer(cached, tmp_path / "run")
    assert trainer.data.shapes == ["9x32x32"] * 4 and len(trainer.data.latents) == 4
    assert sorted(i for b in trainer.sampler.buckets for i in b) == [0, 1, 2, 3]
    rows = trainer.fit(2, progress=False)
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
