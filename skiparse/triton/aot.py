"""``python -m skiparse.triton.aot``: compile every Triton kernel with every configuration for sm_80 and sm_90.

No GPU is needed: ``triton.compile`` targets ``GPUTarget("cuda", arch, 32)`` and the bundled ``ptxas`` reports the
resources. Prints one row per (kernel, target, config): registers per thread, spill bytes (stores + loads), shared
memory per program and local memory (stack frame) per thread. Exits 1 if a configuration fails to compile, spills,
or needs more shared memory than the target has.

    python -m skiparse.triton.aot [--arch 80 90] [--filter fwd] [--jobs 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

from . import configs


def all_specs() -> list[configs.KernelSpec]:
    from . import attention_bwd, attention_fwd, reorder

    return [*attention_fwd.aot_specs(), *attention_bwd.aot_specs(), *reorder.aot_specs()]


def _ptxas_numbers(log: str) -> dict[str, int]:
    def grab(pattern: str) -> int:
        m = re.search(pattern, log)
        return int(m.group(1)) if m else 0

    return {
        "registers": grab(r"Used (\d+) registers"),
        "spill_bytes": grab(r"(\d+) bytes spill stores") + grab(r"(\d+) bytes spill loads"),
        "local_bytes": grab(r"(\d+) bytes stack frame"),
    }


def compile_one(task: tuple[int, int, int]) -> dict:
    """Compile spec ``task[0]`` for arch ``task[1]`` with its config ``task[2]``; the row of the report."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    index, arch, ci = task
    spec = all_specs()[index]
    config = spec.configs[arch][ci]
    row = {"kernel": spec.name, "arch": f"sm_{arch}", "config": _describe(config)}
    # Pointers are 16-byte aligned and the aligned integers multiples of 16, as the JIT specializes them at launch.
    attrs = {(i,): [["tt.divisibility", 16]] for i, (name, kind) in enumerate(spec.signature.items())
             if kind.startswith("*") or name in spec.aligned}
    src = ASTSource(spec.fn, spec.signature, {**spec.constexprs, **config.kwargs}, attrs)
    log = io.StringIO()
    try:
        knobs.nvidia.dump_ptxas_log = True  # ptxas -v output is printed, not returned
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(
                src, target=GPUTarget("cuda", arch, 32),
                options={"num_warps": config.num_warps, "num_stages": config.num_stages},
            )
    except Exception as e:  # noqa: BLE001  (every failure is a row of the report)
        return {**row, "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"}
    row.update(_ptxas_numbers(log.getvalue()), shared_bytes=compiled.metadata.shared)
    problems = []
    if row["spill_bytes"]:
        problems.append("spills registers")
    if row["shared_bytes"] > configs.SHARED_LIMIT[arch]:
        problems.append(f"shared memory over the {configs.SHARED_LIMIT[arch]} B limit")
    row["error"] = "; ".join(problems)
    return row


def _describe(config) -> str:
    blocks = " ".join(f"{k}={v}" for k, v in config.kwargs.items())
    return f"{blocks} w{config.num_warps} s{config.num_stages}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=list(configs.ARCHS), choices=configs.ARCHS)
    parser.add_argument("--filter", default="", help="only kernels whose name contains this")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if configs.interpreting():
        parser.error("TRITON_INTERPRET is set: the interpreter compiles nothing; unset it to compile for the GPUs")

    specs = all_specs()
    tasks = [(i, arch, c) for i, s in enumerate(specs) if args.filter in s.name
             for arch in args.arch for c in range(len(s.configs[arch]))]
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated to silence its warning
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRITON_CACHE_DIR"] = cache  # a cold cache, so that ptxas runs and reports every kernel
        with ProcessPoolExecutor(max(1, args.jobs)) as pool:
            rows = list(pool.map(compile_one, tasks))

    header = f"{'kernel':<34} {'target':<6} {'config':<34} {'regs':>4} {'spill B':>7} {'shared B':>8} {'local B':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if "registers" in r:
            print(f"{r['kernel']:<34} {r['arch']:<6} {r['config']:<34} {r['registers']:>4} {r['spill_bytes']:>7} "
                  f"{r['shared_bytes']:>8} {r['local_bytes']:>7}" + (f"  FAIL: {r['error']}" if r["error"] else ""))
        else:
            print(f"{r['kernel']:<34} {r['arch']:<6} {r['config']:<34}  FAIL: {r['error']}")
    failed = [r for r in rows if r["error"]]
    print(f"\n{len(rows)} compilations, {len(failed)} failing")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
