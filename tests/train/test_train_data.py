"""Annotation index, fps resampling and the (T - 1) % 8 frame rule."""
import json
import random

import pytest

from suv.train.data import frame_indices, read_index, valid_frame_count


@pytest.mark.parametrize("n,t", [(1, 1), (8, 1), (9, 9), (16, 9), (17, 17), (121, 121), (125, 121), (0, 0)])
def test_valid_frame_count(n, t):
    assert valid_frame_count(n) == t


def test_frame_indices_resample_and_window():
    rng = random.Random(0)
    idx = frame_indices(100, fps=48.0, train_fps=24.0, num_frames=9, rng=rng)
    assert len(idx) == 9 and all(b - a == 2 for a, b in zip(idx, idx[1:])) and idx[-1] < 100
    near = frame_indices(100, 24.05, 24.0, 9, rng)  # within 0.1 fps: every frame
    assert all(b - a == 1 for a, b in zip(near, near[1:]))
    assert frame_indices(100, 12.0, 24.0, 9, rng) == []  # slower than train_fps: dropped, as upstream
    assert frame_indices(16, 48.0, 24.0, 9, rng) == []  # needs 17 source frames


def test_read_index_reports_the_bad_record(tmp_path):
    good = {"path": "a.mp4", "cap": ["A  Cat", "x"], "resolution": {"height": 8, "width": 8}, "num_frames": 9,
            "fps": 24}
    index = tmp_path / "ann.json"
    index.write_text(json.dumps([good, {**good, "resolution": {}}]))
    with pytest.raises(ValueError, match="record 1 lacks or mistypes a field"):
        read_index(index)
    index.write_text(json.dumps([good, {**good, "path": "b.avi"}]))
    with pytest.raises(ValueError, match="only .mp4 videos"):
        read_index(index)
    index.write_text(json.dumps([good]))
    (rec,) = read_index(index)
    assert rec.path == tmp_path / "a.mp4" and rec.captions == ["a cat", "x"] and rec.fps == 24.0
