"""Text encoders (tiny random ones of the real classes) and the suv-generate CLI end to end."""
from __future__ import annotations

import pytest
import torch

from suv.cli.generate import main
from suv.text import CLIPTextEncoder, T5TextEncoder, make_tiny_clip, make_tiny_t5
from suv.io import read_video


def test_tiny_encoders_load_like_real_directories(tmp_path):
    make_tiny_t5(tmp_path / "t5", d_model=24)
    make_tiny_clip(tmp_path / "clip", projection_dim=16)
    t5 = T5TextEncoder(tmp_path / "t5", max_length=12)
    hidden, mask = t5.encode(["ab", "a longer prompt"])
    assert hidden.shape == (2, 1, 12, 24) and mask.shape == (2, 1, 12)
    assert mask[0, 0].tolist() == [1, 1, 1] + [0] * 9  # 2 characters + </s>, then padding
    assert type(t5.model).__name__ == "T5EncoderModel"
    clip = CLIPTextEncoder(tmp_path / "clip")
    pooled = clip.encode("ab")
    assert pooled.shape == (1, 1, 16) and type(clip.model).__name__ == "CLIPTextModelWithProjection"
    assert not torch.allclose(pooled, clip.encode("ba"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        T5TextEncoder(tmp_path / "nothing")
    with pytest.raises(TypeError, match="prompts"):
        t5.encode([])


def test_demo_writes_a_playable_mp4(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert main(["--demo", "--out", str(out), "--no-progress"]) == 0
    frames, fps = read_video(out)
    assert frames.shape == (9, 64, 64, 3) and fps == 24
    assert frames.float().std() > 1.0  # decoded content, not a constant frame
    assert "demo" in capsys.readouterr().out


def test_cli_errors(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "x.mp4")])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--demo", "--frames", "10", "--out", str(tmp_path / "x.mp4"), "--no-progress"])
    assert e.value.code == 2 and not (tmp_path / "x.mp4").exists()


def test_cli_with_weight_files_matches_the_demo_pipeline(tmp_path):
    """The non-demo path: SUV/WF-VAE checkpoints and T5/CLIP directories on disk, loaded like released weights.
    With the demo's weights saved to files, both paths must write the same video."""
    from suv.models import save_suv
    from suv.sampling import demo_pipeline
    from suv.vae import save_wfvae

    pipe = demo_pipeline(tmp_path / "enc", seed=0)
    save_suv(pipe.dit, tmp_path / "dit.safetensors")
    save_wfvae(pipe.vae, tmp_path / "vae.safetensors")
    common = ["--frames", "9", "--height", "32", "--width", "48", "--steps", "2", "--no-progress", "--seed", "0",
              "--prompt", "a cat", "--guidance-scale", "1"]  # short prompt, no negative: neither is truncated
    assert main(["--dit", str(tmp_path / "dit.safetensors"), "--vae", str(tmp_path / "vae.safetensors"),
                 "--t5", str(tmp_path / "enc" / "tiny_t5"), "--clip", str(tmp_path / "enc" / "tiny_clip"),
                 "--dtype", "fp32", "--device", "cpu", "--out", str(tmp_path / "a.mp4"), *common]) == 0  # fmt: skip
    assert main(["--demo", "--out", str(tmp_path / "b.mp4"), *common]) == 0
    a, _ = read_video(tmp_path / "a.mp4")
    b, _ = read_video(tmp_path / "b.mp4")
    assert a.shape == (9, 32, 48, 3)
    # Only the T5 padding differs (512 vs the demo's 32 tokens); the text mask makes it irrelevant.
    assert (a.int() - b.int()).abs().max() <= 2
