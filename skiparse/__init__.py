"""skiparse: fused Skiparse attention and token reorder kernels for Open-Sora Plan v1.5's SUV.

Public API: :func:`skiparse_attention`, :func:`reorder`, :func:`restore`, :func:`use_backend`.
The ops live in ``torch.ops.skiparse``; ``python -m skiparse.info`` lists the backends.
"""
from .api import reorder, restore, skiparse_attention
from .backends import status as _status, use_backend

_status("cpu")  # loads skiparse._C (if built), registering the CPU kernels of torch.ops.skiparse
_status("triton")  # with a GPU, registers the Triton kernels as the CUDA kernels

__all__ = ["skiparse_attention", "reorder", "restore", "use_backend"]
__version__ = "0.1.0"
