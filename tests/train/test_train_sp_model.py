"""The SUV denoiser and the trainer with sequence parallelism on 2 gloo processes equal one process.

One spawn serves every test of this file (starting processes dominates the run time): each rank runs the model
checks (output, loss and every parameter gradient after the SP-group sum) and then ``sequence_parallel: 2``
training steps; the tests compare what the ranks saved with one process.
"""
import importlib.util

import pytest
import torch
import torch.distributed as dist

from suv.models import SparseUMMDiT
from suv.parallel import sum_sequence_parallel_grads
from suv.train.objective import masked_mse

TRAINER = all(importlib.util.find_spec(m) is not None for m in ("av", "transformers"))
TINY = dict(num_heads=2, head_dim=16, timestep_embed_dim=32, caption_channels=24, pooled_projection_dim=16,
            in_channels=8, out_channels=8)
MODELS = {
    # The released structure (7 stages, sparsity up to 8, skips, double FFN) with both masks.
    "tiny": dict(config=dict(TINY, num_layers=[2] * 7), masked=True),
    # One FFN shared by both streams, 4 heads (2 per rank), k = 3: another split of the replicated/sharded work.
    "shared-ffn": dict(config=dict(TINY, num_heads=4, num_layers=[2, 2, 2], sparse_n=[1, 3, 1], double_ff=False),
                       masked=False),
}


def train_config(index, **kw):
    from suv.train.trainer import TrainConfig

    base = dict(data=str(index), t5_max_length=8, num_frames=9, height=32, width=32, batch_size=2, lr=3e-4,
                save_every=1000, bucket_min_factor=1)
    return TrainConfig.from_dict({**base, **kw})


def model_and_inputs(name):
    spec = MODELS[name]
    torch.manual_seed(0)
    model = SparseUMMDiT(**spec["config"])
    with torch.no_grad():  # norm affines away from 1/0, so their gradients are not trivially alike
        for n, p in model.named_parameters():
            if "norm" in n and "linear" not in n:
                p.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    b, t, h, w, txt = 2, 3, 8, 8, 5  # 3 x 4 x 4 = 48 video tokens, 24 per rank
    cfg = model.config
    text_mask = torch.ones(b, 1, txt)
    video_mask = None
    if spec["masked"]:
        text_mask[0, 0, -2:] = 0
        video_mask = torch.ones(b, t, h, w)
        video_mask[1, 2, 4:] = 0  # the last frame's bottom half of item 1: whole patches masked
    inputs = dict(hidden_states=torch.randn(b, cfg.in_channels, t, h, w, generator=g),
                  timestep=torch.rand(b, generator=g) * 1000,
                  encoder_hidden_states=torch.randn(b, 1, txt, cfg.caption_channels, generator=g),
                  encoder_attention_mask=text_mask,
                  pooled_projections=torch.randn(b, 1, cfg.pooled_projection_dim, generator=g),
                  attention_mask=video_mask)
    target = torch.randn(b, cfg.out_channels, t, h, w, generator=g)
    return model, inputs, target


def run_model(name, group=None):
    model, inputs, target = model_and_inputs(name)
    out = model(**inputs, sp_group=group)
    loss = masked_mse(out, target)
    loss.backward()
    if group is not None:
        sum_sequence_parallel_grads(model, group)
    return {"out": out.detach(), "loss": loss.detach(),
            "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None}}


def _worker(rank, world, folder, index):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank, world_size=world)
    result = {name: run_model(name, dist.group.WORLD) for name in MODELS}
    errors = []
    model, inputs, _ = model_and_inputs("tiny")
    odd = dict(inputs, hidden_states=inputs["hidden_states"][:, :, :1, :6, :6], attention_mask=None)  # 9 tokens
    three_heads = SparseUMMDiT(**dict(TINY, num_heads=3, num_layers=[2], sparse_n=[1]))
    for m, kw in ((model, odd), (three_heads, inputs)):
        try:
            m(**dict(kw, attention_mask=None), sp_group=dist.group.WORLD)
        except ValueError as e:
            errors.append(str(e))
    result["errors"] = errors
    torch.save(result, folder / f"model{rank}.pt")

    if index is not None:
        from suv.train.trainer import Trainer

        trainer = Trainer(train_config(index, sequence_parallel=2), folder / "run")
        rows = trainer.fit(3, progress=False)  # saves a checkpoint at the last step (rank 0)
        torch.save([(r["loss"], r["grad_norm"]) for r in rows], folder / f"rows{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sp")
    index = None
    if TRAINER:
        from suv.train.data import make_toy_dataset

        index = make_toy_dataset(folder / "toy", count=4, frames=11, size=32)
    torch.multiprocessing.spawn(_worker, args=(2, folder, index), nprocs=2, join=True)
    return folder, index


@pytest.mark.parametrize("name", list(MODELS))
def test_model_on_two_ranks_equals_one_process(ranks, name, one_thread):
    """Same output and loss on every rank; after the SP-group sum, every parameter gradient on every rank."""
    folder, _ = ranks
    single = run_model(name)
    for rank in range(2):
        got = torch.load(folder / f"model{rank}.pt", weights_only=True)[name]
        torch.testing.assert_close(got["out"], single["out"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["loss"], single["loss"], rtol=1e-6, atol=0)
        assert got["grads"].keys() == single["grads"].keys()
        for n, grad in single["grads"].items():
            torch.testing.assert_close(got["grads"][n], grad, rtol=1e-5, atol=1e-6, msg=lambda m: f"{n}: {m}")


def test_model_refuses_a_split_that_does_not_divide(ranks):
    errors = torch.load(ranks[0] / "model0.pt", weights_only=True)["errors"]
    assert errors == ["sequence parallel: the video tokens (9) must be divisible by the group size (2)",
                      "sequence parallel: num_heads (3) must be divisible by the group size (2)"]


@pytest.mark.skipif(not TRAINER, reason="the trainer's online data needs av and transformers")
def test_trainer_sequence_parallel_equals_one_process(ranks, tmp_path, one_thread):
    """``sequence_parallel: 2`` on 2 ranks (one SP group, batch 2) vs one process, batch 2: the same losses and
    gradient norms (AdamW would hide a gradient scale) and, from the 2-rank checkpoint, the same weights."""
    from suv.train.trainer import Trainer

    folder, index = ranks
    single = Trainer(train_config(index), tmp_path / "single")
    rows = [(r["loss"], r["grad_norm"]) for r in single.fit(3, progress=False)]
    for rank in range(2):
        got = torch.load(folder / f"rows{rank}.pt")
        assert [loss for loss, _ in got] == pytest.approx([loss for loss, _ in rows], rel=1e-5)
        assert [norm for _, norm in got] == pytest.approx([norm for _, norm in rows], rel=1e-4)
    resumed = Trainer(train_config(index), folder / "run")
    assert resumed.resume() and resumed.step == 3
    for name, tensor in single.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f"{name}: {m}")


def test_trainer_refuses_a_world_the_split_does_not_divide(tmp_path):
    from suv.train.trainer import TrainConfig, Trainer

    with pytest.raises(ValueError, match="sequence_parallel: expected an integer >= 1, got 0"):
        TrainConfig.from_dict({"data": "x.json", "sequence_parallel": 0})
    with pytest.raises(ValueError, match=r"sequence_parallel: 2 must divide the number of processes \(1\)"):
        Trainer(TrainConfig.from_dict({"data": "x.json", "sequence_parallel": 2}), tmp_path)
