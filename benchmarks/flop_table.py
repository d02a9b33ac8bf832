"""The FLOP table that the GPU and NPU plans print: per case, forward and forward+backward TFLOP and the FLOP-ideal
speedup over dense attention on the same joint sequence."""


def print_flop_table(cases, flops, dense_flops: float, fwd_bwd_factor: float) -> None:
    """cases: (pattern, k) pairs; flops(pattern, k): forward FLOPs of one attention call."""
    print(f"{'pattern':<8}{'k':>3}{'TFLOP fwd':>11}{'TFLOP fwd+bwd':>15}{'ideal x':>9}")
    for pattern, k in cases:
        fl = flops(pattern, k)
        print(f"{pattern:<8}{k:>3}{fl / 1e12:>11.2f}{fl * fwd_bwd_factor / 1e12:>15.2f}{dense_flops / fl:>9.2f}")
