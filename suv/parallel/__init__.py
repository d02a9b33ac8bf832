"""Parallel execution of the models, shared by training and inference: sequence parallelism (Ulysses), and for
generation CFG parallelism beside it."""
from .generation import (
    GenerationGroups,
    check_generation_layout,
    exchange_branches,
    generation_groups,
    world_size,
)
from .sequence import (
    gather_tokens,
    head_shard_attention,
    sequence_parallel_attention,
    sequence_parallel_group,
    split_tokens,
    sum_grad_over_group,
    sum_sequence_parallel_grads,
    tokens_to_heads,
)

__all__ = [
    "GenerationGroups", "check_generation_layout", "exchange_branches", "generation_groups", "world_size",
    "gather_tokens", "head_shard_attention", "sequence_parallel_attention", "sequence_parallel_group", "split_tokens",
    "sum_grad_over_group", "sum_sequence_parallel_grads", "tokens_to_heads",
]
