"""Training data: the reference's annotation index, frame selection, and clips encoded once into latents.

An annotation file is a JSON list of records as Open-Sora Plan writes them: ``path`` (relative to the file's
folder), ``cap`` (a caption or a list of them), ``resolution {height, width}``, ``num_frames``, ``fps``.
Frames are resampled to ``train_fps`` (clips slower than it are dropped, as upstream does), a random window of
``num_frames`` is taken, and the length is cut to the largest ``T <= num_frames`` with ``(T - 1) % 8 == 0``.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ..sampling.prompts import clean_caption
from ..io import frames_to_tensor, read_video, resize_center_crop, write_video


@dataclass
class Record:
    path: Path
    captions: list[str]
    height: int
    width: int
    num_frames: int
    fps: float


def read_index(annotation: str | Path) -> list[Record]:
    """Records of an annotation JSON; a missing field or file is reported with the record's position."""
    annotation = Path(annotation)
    try:
        items = json.loads(annotation.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the annotation index {annotation}: {e}") from e
    records = []
    for i, item in enumerate(items):
        try:
            caps = item["cap"] if isinstance(item["cap"], list) else [item["cap"]]
            rec = Record(annotation.parent / item["path"], [clean_caption(clean_caption(c)) for c in caps],
                         int(item["resolution"]["height"]), int(item["resolution"]["width"]),
                         int(item["num_frames"]), float(item.get("fps", 24)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{annotation}: record {i} lacks or mistypes a field ({e!r}); expected path, cap, "
                             "resolution {height, width}, num_frames, fps") from e
        if rec.path.suffix.lower() != ".mp4":
            raise ValueError(f"{annotation}: record {i}: only .mp4 videos are read, got {rec.path.name}")
        records.append(rec)
    return records


def valid_frame_count(n: int, temporal_compression: int = 8) -> int:
    """The largest ``T <= n`` with ``(T - 1) % temporal_compression == 0`` (0 if none)."""
    return 0 if n < 1 else (n - 1) // temporal_compression * temporal_compression + 1


def frame_indices(available: int, fps: float, train_fps: float, num_frames: int, rng: random.Random) -> list[int]:
    """Source frame indices of one training clip, or ``[]`` if the clip cannot give ``num_frames`` frames."""
    if fps + 0.1 < train_fps:
        return []
    step = 1.0 if abs(fps - train_fps) <= 0.1 else fps / train_fps
    span = math.ceil((num_frames - 1) * step) + 1  # source frames the window covers
    if span > available:
        return []
    start = rng.randint(0, available - span)
    return [int(start + i * step) for i in range(num_frames)]


def load_clip(record: Record, num_frames: int, height: int, width: int, train_fps: float,
              rng: random.Random) -> torch.Tensor | None:
    """``(3, T, height, width)`` in [-1, 1] with ``T = valid_frame_count(num_frames)``, or None if too short;
    raises (FileNotFoundError, ValueError, ...) if the file is missing or cannot be decoded."""
    frames, fps = read_video(record.path)
    idx = frame_indices(frames.shape[0], fps, train_fps, valid_frame_count(num_frames), rng)
    if not idx:
        return None
    return resize_center_crop(frames_to_tensor(frames[idx]), height, width)[0]


def make_toy_dataset(folder: str | Path, count: int = 8, frames: int = 17, size: int = 64, fps: float = 24.0,
                     seed: int = 0, width: int | None = None) -> Path:
    """Real mp4 clips (``size`` x ``width or size``) of coloured squares moving in different directions, with
    captions; returns the index."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    colours = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
    moves = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
    records = []
    for i in range(count):
        colour, move = list(colours)[i % 4], list(moves)[(i // 4 + i) % 4]
        height, width = size, width or size
        video = torch.full((frames, height, width, 3), 16, dtype=torch.uint8)
        y0, x0 = (int(v) for v in torch.randint(size // 4, 3 * size // 4, (2,), generator=g))
        side = size // 4
        for t in range(frames):
            y = (y0 + moves[move][0] * t * 2) % (height - side)
            x = (x0 + moves[move][1] * t * 2) % (width - side)
            video[t, y : y + side, x : x + side] = torch.tensor(colours[colour], dtype=torch.uint8)
        name = f"clip_{i:03d}.mp4"
        write_video(folder / name, video, fps)
        records.append({"path": name, "cap": [f"a {colour} square moving {move}", f"{colour} box going {move}"],
                        "resolution": {"height": height, "width": width}, "num_frames": frames, "fps": fps})
    index = folder / "annotations.json"
    index.write_text(json.dumps(records, indent=1))
    return index
