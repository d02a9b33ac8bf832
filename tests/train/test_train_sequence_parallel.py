"""Ulysses sequence-parallel Skiparse attention on 2 gloo processes equals one process on the whole sequence."""
import pytest
import torch
import torch.distributed as dist

import skiparse
from suv.parallel import sequence_parallel_attention

B, L, H, D, T = 2, 42, 4, 16, 5


def inputs():
    g = torch.Generator().manual_seed(0)
    video = [torch.randn(B, L, H, D, generator=g, dtype=torch.float64) for _ in range(3)]
    text = [torch.randn(B, T, H, D, generator=g, dtype=torch.float64) for _ in range(3)]
    masks = dict(text_mask=torch.rand(B, T, generator=g) > 0.3, video_mask=torch.rand(B, L, generator=g) > 0.2)
    grads = [torch.randn(B, L, H, D, generator=g, dtype=torch.float64),
             torch.randn(B, T, H, D, generator=g, dtype=torch.float64)]
    return video, text, masks, grads


def _worker(rank, world, init, out, sparsity, group_skip):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    video, text, masks, (g_out, g_text) = inputs()
    chunk = slice(rank * L // world, (rank + 1) * L // world)
    mine = [x[:, chunk].clone().requires_grad_() for x in video]
    text = [t.clone().requires_grad_() for t in text]
    o, to = sequence_parallel_attention(*mine, sparsity, group_skip, *text, **masks)
    torch.autograd.backward([o, to], [g_out[:, chunk], g_text])
    text_grads = [t.grad.clone() for t in text]
    for t in text_grads:  # replicated inputs: their gradients are summed over the group (the contract)
        dist.all_reduce(t)
    torch.save({"out": o, "text_out": to, "grads": [x.grad for x in mine], "text_grads": text_grads},
               f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("sparsity,group_skip", [(2, False), (3, True)])
def test_two_ranks_equal_one(tmp_path, sparsity, group_skip):
    torch.multiprocessing.spawn(_worker, args=(2, f"file://{tmp_path}/pg", tmp_path, sparsity, group_skip),
                                nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    video, text, masks, (g_out, g_text) = inputs()
    video = [x.requires_grad_() for x in video]
    text = [t.requires_grad_() for t in text]
    out, text_out = skiparse.skiparse_attention(*video, sparsity, group_skip, *text, **masks)
    torch.autograd.backward([out, text_out], [g_out, g_text])
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks], 1), out)
    for r in ranks:
        torch.testing.assert_close(r["text_out"], text_out)
        for got, t in zip(r["text_grads"], text):
            torch.testing.assert_close(got, t.grad)
    for i, x in enumerate(video):
        torch.testing.assert_close(torch.cat([r["grads"][i] for r in ranks], 1), x.grad)

