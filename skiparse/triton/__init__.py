"""Triton kernels of skiparse (NVIDIA GPUs).

- ``index``: the Skiparse row addressing (Triton twin of ``skiparse/index.py``).
- ``attention_fwd`` / ``attention_bwd``: fused Skiparse attention kernels; ``attention``: their launchers.
- ``reorder``: fused reorder / restore kernels and launchers.
- ``ops``: registers the launchers as the CUDA kernels of ``torch.ops.skiparse``.
- ``configs``: tile configurations for sm_80 / sm_90; ``aot``: ``python -m skiparse.triton.aot`` compiles every
  kernel and configuration for both targets without a GPU and reports registers, spills and shared memory.

Without a GPU the kernels run on CPU tensors under ``TRITON_INTERPRET=1`` (how the tests check them).
"""
