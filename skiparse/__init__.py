"""skiparse: fused Skiparse attention and token reorder kernels for Open-Sora Plan v1.5's SUV.

Public API: :func:`skiparse_attention`, :func:`reorder`, :func:`restore`, :func:`conv3d_3x3` (the WF-VAE's
convs), :func:`use_backend`.
The ops live in ``torch.ops.skiparse``; ``python -m skiparse.info`` lists the backends.
"""
from .api import conv3d_3x3, reorder, restore, skiparse_attention
from .backends import status as _status, use_backend

_status("cpu")  # loads skiparse._C (if built), registering the CPU kernels of torch.ops.skiparse
_status("triton")  # with a GPU, registers the Triton kernels as the CUDA kernels

__all__ = ["skiparse_attention", "reorder", "restore", "conv3d_3x3", "use_backend"]
__version__ = "0.1.0"
