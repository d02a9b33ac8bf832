"""load_suv / save_suv / suv-convert: round trips, released-layout dicts, clear refusals."""
from __future__ import annotations

import pytest
import torch

from suv.cli.convert import main as convert_main
from suv.io import CheckpointError
from suv.models import load_suv, save_suv
from suv_testing import random_suv, suv_inputs


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=0, rtol=0, msg=k)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_keeps_weights_config_and_output(tmp_path, suffix):
    model = random_suv()
    save_suv(model, tmp_path / f"m{suffix}")
    loaded = load_suv(tmp_path / f"m{suffix}")
    assert loaded.config == model.config and not loaded.training
    _same_weights(model, loaded)
    inp = suv_inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inp), model(**inp), atol=0, rtol=0)


def test_released_flat_dict_with_extra_state_and_last_block_text_branch(tmp_path):
    """The release's layout: flat dict, ``_extra_state: None`` entries, the TP>1 last-block text branch."""
    model = random_suv()
    flat = dict(model.state_dict())
    last = "transformer_blocks.6.1."
    d = model.dim
    flat[last + "attn1.to_add_out.weight"] = torch.randn(d, d)
    flat[last + "attn1.to_add_out.bias"] = torch.randn(d)
    flat[last + "ff_enc.net.0.proj.weight"] = torch.randn(4 * d, d)
    flat[last + "ff_enc.net.2.weight"] = torch.randn(d, 4 * d)
    flat[last + "norm2.norm_enc.weight"] = torch.randn(d)
    flat[last + "norm2.norm_enc.bias"] = torch.randn(d)
    for k in list(flat):
        if k.endswith("to_q.weight") or k.endswith("norm1.linear.weight"):
            flat[k[: -len(".weight")] + "._extra_state"] = None
    torch.save(flat, tmp_path / "model_ema.pt")
    _same_weights(model, load_suv(tmp_path / "model_ema.pt", config="suv-tiny"))  # None values: weights_only is fine
    # A plain strict load_state_dict works too, once the _extra_state entries are gone (they are not tensors).
    fresh = random_suv(seed=1)
    fresh.load_state_dict({k: v for k, v in flat.items() if v is not None}, strict=True)
    _same_weights(model, fresh)


def test_container_and_module_prefix_are_unwrapped(tmp_path):
    model = random_suv()
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "c.pt")
    _same_weights(model, load_suv(tmp_path / "c.pt", config="suv-tiny"))


def test_mismatched_config_is_refused_with_shapes(tmp_path):
    save_suv(random_suv(), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatches: .*attn1\.norm_q\.weight: checkpoint \(16,\) vs "
                                              r"model \(32,\)"):  # fmt: skip
        load_suv(tmp_path / "m.safetensors", config={**random_suv().config.to_dict(), "num_heads": 1, "head_dim": 32})
    with pytest.raises(CheckpointError, match=r"missing keys: 648 \[transformer_blocks\.1\.2\."):
        load_suv(tmp_path / "m.safetensors", config="suv-narrow")


def test_missing_keys_are_named(tmp_path):
    state = random_suv().state_dict()
    del state["proj_out.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: 1 \[proj_out\.bias\].*unexpected keys: 1 \[extra\.weight\]"):
        load_suv(tmp_path / "m.pt", config="suv-tiny")
    with pytest.raises(FileNotFoundError):
        load_suv(tmp_path / "absent.pt")


def test_convert_cli_writes_loadable_safetensors(tmp_path, capsys):
    model = random_suv()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    assert convert_main([str(tmp_path / "m.pt"), str(tmp_path / "m.safetensors"), "--config", "suv-tiny"]) == 0
    assert "wrote" in capsys.readouterr().out
    _same_weights(model, load_suv(tmp_path / "m.safetensors"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    with pytest.raises(SystemExit) as e:
        convert_main([str(tmp_path / "m.pt"), str(tmp_path / "x.safetensors"), "--config", "suv-narrow"])
    assert e.value.code == 2 and not (tmp_path / "x.safetensors").exists()
    with pytest.raises(SystemExit):
        convert_main([str(tmp_path / "m.pt"), str(tmp_path / "x.bin")])


def test_old_import_paths_still_work_with_a_deprecation_warning():
    import suv.checkpoint
    import suv.suv_checkpoint
    import suv.vae

    for module, name, new in [(suv.checkpoint, "load_suv", load_suv), (suv.suv_checkpoint, "save_suv", save_suv),
                              (suv.checkpoint, "load_wfvae", suv.vae.load_wfvae),
                              (suv.suv_checkpoint, "main", convert_main)]:  # fmt: skip
        with pytest.warns(DeprecationWarning, match=f"{module.__name__}.{name} is deprecated; import it from"):
            assert getattr(module, name) is new
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        suv.checkpoint.nothing
