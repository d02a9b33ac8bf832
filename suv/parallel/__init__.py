"""Parallel execution of the models, shared by training and inference: sequence parallelism (Ulysses)."""
from .sequence import (
    gather_tokens,
    sequence_parallel_attention,
    sequence_parallel_group,
    split_tokens,
    sum_grad_over_group,
    sum_sequence_parallel_grads,
)

__all__ = [
    "gather_tokens", "sequence_parallel_attention", "sequence_parallel_group", "split_tokens", "sum_grad_over_group",
    "sum_sequence_parallel_grads",
]
