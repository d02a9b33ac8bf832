"""Ascend NPU kernels of skiparse: AscendC reorder/restore (``csrc/npu``, built into ``lib/libskiparse_npu.so``
only where CANN is installed) and the attention composed on ``torch_npu``'s fused attention (``attention.py``).

Importing ``skiparse.npu.ops`` registers them; ``skiparse.backends.npu`` does so once ``torch_npu`` imports.
"""
