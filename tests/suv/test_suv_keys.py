"""The released 8.5B structure on the meta device: every key and shape of the spec's table, parameter count."""
from __future__ import annotations

import dataclasses
import re

import torch

from suv.models import PRESETS, SparseUMMDiT

D, TC, F, HD = 3072, 1024, 12288, 128
STAGES = [2, 4, 6, 8, 6, 4, 2]


def spec_table(last_text_branch: bool) -> dict[str, tuple[int, ...]]:
    """The spec's section 3.2 key list, written out independently of the model code."""
    keys = {
        "patch_embed.proj.weight": (D, 32, 2, 2), "patch_embed.proj.bias": (D,),
        "caption_projection.weight": (D, 2048), "caption_projection.bias": (D,),
        "norm_final.weight": (D,), "norm_final.bias": (D,),
        "norm_out.norm.weight": (D,), "norm_out.norm.bias": (D,),
        "norm_out.linear.weight": (2 * D, TC), "norm_out.linear.bias": (2 * D,),
        "proj_out.weight": (128, D), "proj_out.bias": (128,),
    }  # fmt: skip
    for emb, din in (("timestep_embedder", TC), ("text_embedder", 1280)):
        keys[f"time_text_embed.{emb}.linear_1.weight"] = (TC, din)
        keys[f"time_text_embed.{emb}.linear_1.bias"] = (TC,)
        keys[f"time_text_embed.{emb}.linear_2.weight"] = (TC, TC)
        keys[f"time_text_embed.{emb}.linear_2.bias"] = (TC,)
    for j in range(3):
        for name in ("skip_norm_linear", "skip_norm_linear_enc"):
            keys[f"{name}.{j}.1.weight"] = (D, 2 * D)
            keys[f"{name}.{j}.1.bias"] = (D,)
    for s, n in enumerate(STAGES):
        for i in range(n):
            p = f"transformer_blocks.{s}.{i}."
            last = s == 6 and i == 1
            for norm in ("norm1", "norm2"):
                keys[p + f"{norm}.linear.weight"] = (6 * D, TC)
                keys[p + f"{norm}.linear.bias"] = (6 * D,)
                for sub in ("norm", "norm_enc"):
                    if norm == "norm2" and sub == "norm_enc" and last and not last_text_branch:
                        continue
                    keys[p + f"{norm}.{sub}.weight"] = (D,)
                    keys[p + f"{norm}.{sub}.bias"] = (D,)
            projs = ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0"]
            if not last or last_text_branch:
                projs.append("to_add_out")
            for proj in projs:
                keys[p + f"attn1.{proj}.weight"] = (D, D)
                keys[p + f"attn1.{proj}.bias"] = (D,)
            for norm in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
                keys[p + f"attn1.{norm}.weight"] = (HD,)
            for ff in ("ff", "ff_enc") if not last or last_text_branch else ("ff",):
                keys[p + f"{ff}.net.0.proj.weight"] = (F, D)
                keys[p + f"{ff}.net.2.weight"] = (D, F)
    return keys


def meta_model() -> SparseUMMDiT:
    with torch.device("meta"):
        return SparseUMMDiT.from_config("suv-8.5b")


def test_released_keys_and_shapes_equal_the_spec_table():
    model = meta_model()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = spec_table(last_text_branch=False)
    assert sorted(set(got) - set(want)) == [] and sorted(set(want) - set(got)) == []
    assert got == want
    assert len(got) == 1178  # the spec's TP=1 tensor count


def test_parameter_count_tp1_structure_and_with_the_unused_text_branch():
    model = meta_model()
    n = sum(p.numel() for p in model.parameters())
    assert n == 8_504_661_120
    table = spec_table(last_text_branch=True)
    extra = sum(torch.Size(s).numel() for k, s in table.items() if k not in model.state_dict())
    assert n + extra == 8_589_604_992
    assert len(table) == 1184


def test_tp2_release_dict_with_extra_state_loads_strictly_on_meta():
    """The TP>1 file layout (last-block text branch + ``_extra_state`` on Megatron linears) loads with a plain
    ``load_state_dict(strict=True)``: the unused entries are dropped by the model's load hook."""
    model = meta_model()
    table = spec_table(last_text_branch=True)
    released = {k: torch.empty(s, device="meta") for k, s in table.items()}
    for k in list(table):
        if re.search(r"(attn1\.(to_[qkv]|add_[qkv]_proj|to_out\.0|to_add_out)|norm[12]\.linear|ff(_enc)?\.net\.[02](\.proj)?)\.weight$", k):
            released[k.rsplit(".", 1)[0] + "._extra_state"] = None
    assert sum(k.endswith("_extra_state") for k in released) > 400
    result = model.load_state_dict(released, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_stage_schedule_single_group_alternation_and_dense_k1_stages():
    model = meta_model()
    got = [[(b.sparsity, b.group) for b in stage] for stage in model.transformer_blocks]
    want = [[(k, k > 1 and i % 2 == 1) for i in range(n)] for n, k in zip(STAGES, [1, 2, 4, 8, 4, 2, 1])]
    assert got == want
    assert [b.context_pre_only for stage in model.transformer_blocks for b in stage] == [False] * 31 + [True]
    with torch.device("meta"):
        dense = SparseUMMDiT.from_config(dataclasses.replace(PRESETS["suv-8.5b"], sparse1d=False))
    assert {(b.sparsity, b.group) for stage in dense.transformer_blocks for b in stage} == {(1, False)}
    assert dense.state_dict().keys() == model.state_dict().keys()


def test_from_reference_json_block():
    reference = {
        "model_id": "SparseUMMDiT", "num_layers": [2, 4, 6, 8, 6, 4, 2], "sparse_n": [1, 2, 4, 8, 4, 2, 1],
        "double_ff": True, "sparse1d": True, "num_heads": 24, "head_dim": 128, "in_channels": 32,
        "out_channels": 32, "timestep_embed_dim": 1024, "caption_channels": 2048, "pooled_projection_dim": 1280,
        "skip_connection": True, "dropout": 0.0, "attention_bias": True, "patch_size_t": 1, "patch_size": 2,
        "activation_fn": "gelu-approximate", "norm_elementwise_affine": True, "norm_eps": 1e-6,
        "norm_cls": "layer_norm", "skip_connection_zero_init": True,
    }  # fmt: skip
    with torch.device("meta"):
        a = SparseUMMDiT.from_config({"predictor": reference})
    assert a.config == PRESETS["suv-8.5b"]
