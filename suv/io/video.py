"""Video files <-> tensors with PyAV, plus the pixel conversions and resizing the models expect.

Frames on disk are uint8 RGB; model tensors are (B, 3, T, H, W) floats in [-1, 1]. Writes are atomic.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F

from .writing import writing


def _av():
    try:
        import av
    except ImportError as e:  # optional dependency: the ``video`` extra
        raise ImportError("video I/O needs PyAV: pip install av") from e
    return av


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """Decode up to ``max_frames`` frames of the first video stream -> ((T, H, W, 3) uint8 RGB, fps)."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 24)
            for frame in container.decode(stream):
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot decode video {path}: {e}") from e
    if not frames:
        raise ValueError(f"{path} contains no decodable frames")
    return torch.stack(frames), fps


def video_rate(fps: float) -> Fraction:
    """The frame rate ``write_video`` stores for ``fps``: a fraction with denominator <= 1001 (so 23.976 is
    24000/1001). ValueError unless ``fps`` is finite and positive enough to store."""
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    rate = Fraction(fps).limit_denominator(1001)
    if rate == 0:
        raise ValueError(f"fps {fps!r} is below the smallest storable frame rate (1/1001)")
    return rate


def write_video(path: str | Path, frames: torch.Tensor, fps: float, codec: str = "libx264", crf: int = 17) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames to ``path`` (container from its suffix), atomically.

    H and W must be even (yuv420p). ``crf`` is the x264 quality (0 = lossless in YUV; 17 ~ visually lossless).
    """
    av = _av()
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {tuple(frames.shape)} {frames.dtype}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"frame height and width must be even for yuv420p, got {h}x{w}")
    path = Path(path)
    with writing(path) as tmp:
        with av.open(str(tmp), mode="w", format=path.suffix.lstrip(".") or "mp4") as container:
            stream = container.add_stream(codec, rate=video_rate(fps))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": str(crf)}
            for frame in frames.cpu().numpy():
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())


def frames_to_tensor(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, H, W) float32 in [-1, 1]."""
    return frames.permute(3, 0, 1, 2).unsqueeze(0).float().div(127.5).sub(1.0)


def tensor_to_frames(video: torch.Tensor) -> torch.Tensor:
    """(1, 3, T, H, W) or (3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8 (clamped, rounded)."""
    if video.dim() == 5:
        if video.shape[0] != 1:
            raise ValueError(f"expected a single video, got batch of {video.shape[0]}")
        video = video[0]
    return video.float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0)


def resize_center_crop(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale (B, C, T, H, W) so the frame covers ``height`` x ``width`` (aspect kept), then center-crop to it.

    Bilinear with antialiasing, in float32.
    """
    b, c, t, h, w = video.shape
    scale = max(height / h, width / w)
    rh, rw = max(height, round(h * scale)), max(width, round(w * scale))
    frames = video.transpose(1, 2).reshape(b * t, c, h, w).float()
    if (rh, rw) != (h, w):
        frames = F.interpolate(frames, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (rh - height) // 2, (rw - width) // 2
    frames = frames[:, :, top : top + height, left : left + width]
    return frames.reshape(b, t, c, height, width).transpose(1, 2).contiguous()
