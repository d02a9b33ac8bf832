"""Faults in the model layer's files and inputs: a changed byte in a file this package wrote is refused naming the
file, writes honour the umask and leave no temporaries behind a killed writer, a failed write is one line naming
the file, and inputs that mean nothing (empty batches, NaN pixels, mismatched dtypes) get a clear error."""
import os
import resource
import signal
import socket
import subprocess
import sys

import pytest
import torch

from suv.io import CheckpointError, read_checkpoint, save_checkpoint, save_state, writing
from suv.models import SparseUMMDiT, load_suv, save_suv
from suv.vae import WFVAE, load_wfvae, save_wfvae

# Values no random init produces by chance: found in the file to flip a byte of tensor data, whatever the format.
MARKER = torch.arange(1.0, 65.0) * 1e-3 + 7.0


def flip_marker_byte(path):
    data = bytearray(path.read_bytes())
    at = data.find(MARKER.numpy().tobytes())
    assert at > 0, "marker tensor not found in the file"
    data[at + 17] ^= 0x04
    path.write_bytes(bytes(data))


def _suv_with_marker():
    model = SparseUMMDiT.from_config("suv-tiny")
    with torch.no_grad():
        model.proj_out.weight.view(-1)[:64] = MARKER
    return model, load_suv


def _wfvae_with_marker():
    model = WFVAE.from_config("tiny")
    with torch.no_grad():
        next(p for p in model.parameters() if p.numel() >= 64).view(-1)[:64] = MARKER
    return model, load_wfvae


@pytest.mark.parametrize("build", [_suv_with_marker, _wfvae_with_marker], ids=["suv", "wfvae"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_flipped_byte_in_tensor_data_is_refused_naming_the_file(tmp_path, build, suffix):
    model, load = build()
    path = tmp_path / f"model{suffix}"
    (save_suv if load is load_suv else save_wfvae)(model, path)
    load(path)  # intact: loads
    flip_marker_byte(path)
    with pytest.raises(CheckpointError, match=f"corrupt checkpoint {path}: its tensor data does not match"):
        load(path)


def test_flipped_byte_in_a_training_state_is_refused(tmp_path):
    path = tmp_path / "state.safetensors"
    save_state({"step": 3, "model": {"w": MARKER.clone()}, "opt": [torch.ones(2)]}, path)
    assert read_checkpoint(path)["step"] == 3
    flip_marker_byte(path)
    with pytest.raises(CheckpointError, match=f"corrupt checkpoint {path}"):
        read_checkpoint(path)


def test_files_from_elsewhere_have_no_hash_and_still_load(tmp_path):
    path = tmp_path / "released.pt"
    torch.save({"state_dict": {"w": MARKER.clone()}}, path)  # like a released checkpoint: no stored hash
    flip_marker_byte(path)
    assert not torch.equal(read_checkpoint(path)["state_dict"]["w"], MARKER)  # not verifiable: loads as it is


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_written_files_honour_the_umask(tmp_path, umask, mode, suffix):
    old = os.umask(umask)
    try:
        save_checkpoint({"w": torch.ones(3)}, tmp_path / f"m{suffix}")
    finally:
        os.umask(old)
    assert (tmp_path / f"m{suffix}").stat().st_mode & 0o777 == mode


def test_temporary_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.safetensors"
    code = ("import os, signal, sys; from skiparse.host import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'half a checkpoint'); os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)])
    assert proc.returncode == -signal.SIGKILL
    left = list(tmp_path.glob(".model.safetensors.*.tmp"))
    assert len(left) == 1 and not target.exists()
    live = tmp_path / f".model.safetensors.{socket.gethostname()}.{os.getpid()}.abc.tmp"  # a writer still at work
    live.write_bytes(b"")
    save_checkpoint({"w": torch.ones(3)}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "model.safetensors"]


def test_output_that_is_a_directory_is_one_clear_error(tmp_path):
    (tmp_path / "m.safetensors").mkdir()
    with pytest.raises(IsADirectoryError, match="cannot write .*m.safetensors: it is a directory"):
        save_checkpoint({"w": torch.ones(3)}, tmp_path / "m.safetensors")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_clear_error(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(OSError, match="cannot write .*m.pt: Permission denied"):
            save_checkpoint({"w": torch.ones(3)}, tmp_path / "m.pt")
    finally:
        tmp_path.chmod(0o755)


def _disk_full(limit: int = 4096):
    """In the child: writes past ``limit`` bytes fail with EFBIG instead of killing it (like a full disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("argv, name, reason", [
    # torch's zip writer: "[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 0"
    (["suv.cli.vae", "init", "{out}/vae.ckpt", "--preset", "tiny"], "vae.ckpt", "(is the disk full?)"),
    (["suv.cli.vae", "init", "{out}/vae.safetensors", "--preset", "tiny"], "vae.safetensors", "File too large"),
])  # fmt: skip
def test_disk_full_is_one_line_naming_the_file(tmp_path, argv, name, reason):
    argv = [a.format(out=tmp_path) for a in argv]
    proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, preexec_fn=_disk_full)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot write {tmp_path / name}:" in lines[0] and reason in lines[0]
    assert "inline_container" not in proc.stderr and not list(tmp_path.iterdir())  # no file, no temporary


def test_writing_names_the_file_when_torch_save_fails(tmp_path, monkeypatch):
    def enforce_fail(*a, **k):  # what torch.save raises when the disk fills up mid-write
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")  # fmt: skip

    with pytest.raises(OSError, match=r"cannot write .*m.pt: .*file write failed \(is the disk full\?\)"):
        with writing(tmp_path / "m.pt") as tmp:
            enforce_fail(tmp)


@pytest.mark.parametrize("field, value", [
    ("num_heads", 0), ("patch_size", 0), ("sparse_n", [2.0, 2.0, 2.0]), ("num_layers", "2"), ("head_dim", -1),
])  # fmt: skip
def test_meaningless_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"SUVConfig.{field} must be"):
        SparseUMMDiT.from_config({"num_layers": [2, 2, 2], "sparse_n": [1, 2, 1], field: value})


@pytest.fixture(scope="module")
def suv():
    torch.manual_seed(0)
    return SparseUMMDiT.from_config("suv-tiny").eval()


def suv_inputs(b=1, l_txt=5, dtype=torch.float32):
    return (torch.randn(b, 32, 1, 4, 4, dtype=dtype), torch.full((b,), 500.0), torch.randn(b, 1, l_txt, 24),
            torch.ones(b, 1, l_txt), torch.randn(b, 1, 16))  # fmt: skip


@pytest.mark.parametrize("inputs, error, message", [
    (suv_inputs(b=0), ValueError, r"hidden_states must have B, T, H, W >= 1, got shape \(0, 32, 1, 4, 4\)"),
    (suv_inputs(l_txt=0), ValueError, "encoder_hidden_states must hold at least one token"),
    (suv_inputs(dtype=torch.float64), TypeError, "hidden_states has dtype torch.float64 but the model's weights "
                                                 "are torch.float32"),
    (suv_inputs(dtype=torch.float16), TypeError, "hidden_states has dtype torch.float16"),
])  # fmt: skip
def test_suv_refuses_inputs_that_mean_nothing(suv, inputs, error, message):
    with torch.no_grad(), pytest.raises(error, match=message):
        suv(*inputs)


def test_suv_text_inputs_follow_the_latent_dtype(suv):
    x, t, text, mask, pooled = suv_inputs()
    with torch.no_grad():
        torch.testing.assert_close(suv(x, t, text.double(), mask, pooled.double()), suv(x, t, text, mask, pooled))


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return WFVAE.from_config("tiny").eval()


def test_vae_refuses_nan_pixels_and_empty_batches(vae):
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    x[0, 1, 4, 7, 3] = float("nan")
    with torch.no_grad():
        with pytest.raises(ValueError, match="x contains NaN pixels"):
            vae.encode(x)
        with pytest.raises(ValueError, match="x must hold at least one video"):
            vae.encode(torch.zeros(0, 3, 9, 16, 16))
        with pytest.raises(ValueError, match="z must hold at least one latent"):
            vae.decode(torch.zeros(0, 32, 2, 2, 2))
        for dtype in (torch.float64, torch.float16):
            with pytest.raises(TypeError, match=f"weight has dtype torch.float32 but x has {dtype}"):
                vae.encode(torch.zeros(1, 3, 9, 16, 16, dtype=dtype))
            with pytest.raises(TypeError, match=f"weight has dtype torch.float32 but x has {dtype}"):
                vae.decode(torch.zeros(1, 32, 2, 2, 2, dtype=dtype))
