"""The plan of the NPU-tensor tests lists on a machine without an NPU (``pytest --collect-only``): every op, every
mask layout, both patterns, forward and gradients, and the second-NPU check."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_npu_tensor_tests_are_collected_without_an_npu():
    out = subprocess.run([sys.executable, "-m", "pytest", "tests/npu/test_npu_tensors.py", "--collect-only", "-q"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    ids = [line.split("::", 1)[1] for line in out.splitlines() if "::" in line]
    names = {i.split("[", 1)[0] for i in ids}
    assert names == {
        "test_reorder_and_restore_equal_the_reference", "test_reorder_and_restore_gradients_equal_the_reference",
        "test_reorder_reads_strided_inputs", "test_attention_matches_the_reference",
        "test_attention_masks_of_every_layout_and_strided_inputs", "test_attention_without_text_or_masks",
        "test_an_item_without_keys_gives_zeros_not_nan", "test_nan_reaches_the_outputs_as_in_the_reference",
        "test_conv3d_3x3_matches_the_reference",
        "test_ops_pass_opcheck_on_npu", "test_a_tensor_on_the_second_npu_runs_there",
    }
    layouts = {i for i in ids if i.startswith("test_attention_masks_of_every_layout")}
    for layout in ("contiguous", "sliced", "expanded", "transposed"):
        assert sum(layout in i for i in layouts) == 2  # single- and group-skip
    for dtype in ("float16", "bfloat16", "float32"):
        assert sum(f"torch.{dtype}" in i for i in ids if i.startswith("test_attention_matches")) == 8  # 4 k x 2
