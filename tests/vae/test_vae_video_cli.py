"""PyAV video I/O and the ``suv-vae`` command line."""

from __future__ import annotations

import re

import pytest
import torch

from suv.cli.vae import main
from suv.io import frames_to_tensor, read_video, resize_center_crop, tensor_to_frames, write_video
from suv.vae import load_wfvae
from suv.vae.metrics import psnr, ssim

pytest.importorskip("av")


def smooth_frames(t: int, h: int, w: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 moving colour gradients (compress well, so the codec error is small)."""
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    rgb = [128 + 100 * torch.sin((xx + 3 * tt) / 9.0), 128 + 100 * torch.cos((yy - 2 * tt) / 7.0),
           128 + 60 * torch.sin((xx + yy) / 11.0)]  # fmt: skip
    return torch.stack(rgb, dim=-1).round().to(torch.uint8)


def test_write_read_round_trip(tmp_path):
    frames = smooth_frames(12, 48, 64)
    write_video(tmp_path / "v.mp4", frames, fps=24)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    back, fps = read_video(tmp_path / "v.mp4")
    assert back.shape == frames.shape and back.dtype == torch.uint8
    assert fps == pytest.approx(24)
    as_video = lambda f: frames_to_tensor(f).add(1).div(2)  # noqa: E731
    assert psnr(as_video(back), as_video(frames)) > 30  # yuv420p chroma subsampling
    assert read_video(tmp_path / "v.mp4", max_frames=5)[0].shape[0] == 5


def test_tensor_frame_conversions_invert():
    frames = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    video = frames_to_tensor(frames)
    assert video.shape == (1, 3, 3, 8, 8) and video.min() >= -1 and video.max() <= 1
    torch.testing.assert_close(tensor_to_frames(video), frames, rtol=0, atol=0)


def test_resize_center_crop():
    video = torch.rand(1, 3, 2, 40, 60)
    torch.testing.assert_close(resize_center_crop(video, 40, 60), video)
    torch.testing.assert_close(resize_center_crop(video, 40, 40), video[..., 10:50])  # crop only
    assert resize_center_crop(video, 16, 32).shape == (1, 3, 2, 16, 32)


def test_bad_video_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot decode video"):
        read_video(tmp_path / "junk.mp4")
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8"):
        write_video(tmp_path / "o.mp4", torch.zeros(2, 8, 8, 3), fps=24)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    assert main(["init", str(root / "tiny.ckpt"), "--preset", "tiny", "--seed", "0"]) == 0
    write_video(root / "in.mp4", smooth_frames(20, 40, 56), fps=12)
    return root


def test_cli_recon_reports_the_metrics_of_its_reconstruction(demo, capsys):
    assert main(["recon", str(demo / "in.mp4"), str(demo / "out.mp4"), "--vae", str(demo / "tiny.ckpt"),
                 "--frames", "9", "--height", "32", "--width", "48"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    reported_psnr = float(re.search(r"PSNR: ([\d.]+) dB", printed).group(1))
    reported_ssim = float(re.search(r"SSIM: ([\d.]+)", printed).group(1))

    # Recompute independently: same preprocessing, direct (unchunked) pass.
    frames, _ = read_video(demo / "in.mp4", max_frames=9)
    x = resize_center_crop(frames_to_tensor(frames), 32, 48).clamp(-1, 1)
    model = load_wfvae(demo / "tiny.ckpt")
    with torch.inference_mode():
        recon = model.decode(model.encode(x).mode(), chunked=False).clamp(-1, 1)  # as written
    a, b = x.add(1).div(2), recon.add(1).div(2)
    assert reported_psnr == pytest.approx(psnr(a, b), abs=1e-3)
    assert reported_ssim == pytest.approx(ssim(a, b), abs=1e-3)

    out, fps = read_video(demo / "out.mp4")
    assert out.shape == (9, 32, 48, 3) and fps == pytest.approx(12)


def test_cli_default_frames_and_size(demo, capsys):
    # 20 frames -> 17 usable; 40x56 is already a multiple of 8.
    assert main(["recon", str(demo / "in.mp4"), str(demo / "o2.mp4"), "--vae", str(demo / "tiny.ckpt")]) == 0
    assert "17 frames 40x56" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "10"], r"--frames must be >= 1 with \(T - 1\) % 8 == 0, got 10"),
        (["--frames", "25"], "the video has only 20 frames"),
        (["--height", "32"], "--height and --width must be given together"),
        (["--height", "36", "--width", "32"], "--height must be a positive multiple of 8, got 36"),
        (["--height", "0", "--width", "32"], "--height must be a positive multiple of 8, got 0"),
        (["--height", "32", "--width", "-8"], "--width must be a positive multiple of 8, got -8"),
        (["--config", "v1.3"], "checkpoint does not match the WF-VAE config"),
    ],
)
def test_cli_errors(demo, capsys, args, message):
    code = main(["recon", str(demo / "in.mp4"), str(demo / "bad.mp4"), "--vae", str(demo / "tiny.ckpt"), *args])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (demo / "bad.mp4").exists()
