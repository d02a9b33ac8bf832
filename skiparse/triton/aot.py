"""``python -m skiparse.triton.aot``: compile every Triton kernel with every configuration for sm_80 and sm_90.

No GPU is needed: ``triton.compile`` targets ``GPUTarget("cuda", arch, 32)`` and the bundled ``ptxas`` reports the
resources. Prints one row per (kernel, target, config): registers per thread, spill bytes (stores + loads), shared
memory per program and local memory (stack frame) per thread. Exits 1 if a configuration fails to compile, spills,
or needs more shared memory than the target has.

    python -m skiparse.triton.aot [--arch 80 90] [--filter fwd] [--jobs 2] [--json out.json] [--dump DIR]
    python -m skiparse.triton.aot --loop-report [--arch 80 90] [--head-dim 64 128]

``--dump DIR`` also writes each compilation's cubin and ``DIR/index.json`` (one object per cubin: kernel, arch,
head_dim, dtype, group, masks, text_queries / text_keys, BLOCK_M, BLOCK_N, num_warps, num_stages, cubin,
registers, spill_bytes, shared_bytes). ``--loop-report`` prints the length in SASS instructions per tile of the
main loops of the forward (per key tile), dK/dV (per query tile) and dQ (per key tile) kernels, for each pattern
with and without key masks, next to the dense flash-attention kernel of the same kind in ``dense_flash.py``
compiled with the same config (see ``sass_loops.py``); rows over their target are flagged and the last line says
whether the forward's and the backward's targets are met (a verdict, not an exit status: it exits 1 only on a
compile failure or a spill).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
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


def _compile(spec: configs.KernelSpec, arch: int, config, overrides: dict | None = None):
    """``(compiled kernel, ptxas log)`` of ``spec`` with ``config`` (and constexpr ``overrides``) for ``sm_<arch>``."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    # Pointers are 16-byte aligned and the aligned integers multiples of 16, as the JIT specializes them at launch.
    attrs = {(i,): [["tt.divisibility", 16]] for i, (name, kind) in enumerate(spec.signature.items())
             if kind.startswith("*") or name in spec.aligned}
    src = ASTSource(spec.fn, spec.signature, {**spec.constexprs, **(overrides or {}), **config.kwargs}, attrs)
    log = io.StringIO()
    knobs.nvidia.dump_ptxas_log = True  # ptxas -v output is printed, not returned
    with contextlib.redirect_stdout(log):
        compiled = triton.compile(
            src, target=GPUTarget("cuda", arch, 32),
            options={"num_warps": config.num_warps, "num_stages": config.num_stages},
        )
    return compiled, log.getvalue()


def compile_one(task: tuple[int, int, int], dump: str | None = None) -> dict:
    """Compile spec ``task[0]`` for arch ``task[1]`` with its config ``task[2]``; the row of the report. With
    ``dump``, the cubin is written there and the row carries the fields of ``index.json``."""
    index, arch, ci = task
    spec = all_specs()[index]
    config = spec.configs[arch][ci]
    row = {"kernel": spec.name, "arch": f"sm_{arch}", "config": _describe(config)}
    try:
        compiled, log = _compile(spec, arch, config)
    except Exception as e:  # noqa: BLE001  (every failure is a row of the report)
        return {**row, "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"}
    row.update(_ptxas_numbers(log), shared_bytes=compiled.metadata.shared)
    problems = []
    if row["spill_bytes"]:
        problems.append("spills registers")
    if row["shared_bytes"] > configs.SHARED_LIMIT[arch]:
        problems.append(f"shared memory over the {configs.SHARED_LIMIT[arch]} B limit")
    row["error"] = "; ".join(problems)
    if dump:
        row.update(_index_fields(spec, arch, config))
        with open(os.path.join(dump, row["cubin"]), "wb") as f:
            f.write(compiled.asm["cubin"])
    return row


def _index_fields(spec: configs.KernelSpec, arch: int, config) -> dict:
    """What a cubin was compiled for, as ``--dump`` lists it in ``index.json``."""
    c = {**spec.constexprs, **config.kwargs}
    dtype = next(kind[1:] for kind in spec.signature.values() if kind.startswith("*"))
    masks = [name for name, flag in (("text", "HAS_TMASK"), ("video", "HAS_VMASK")) if c.get(flag)]
    name = re.sub(r"[^A-Za-z0-9]+", "_", f"{spec.name} sm{arch} {_describe(config)}").strip("_")
    return {
        "arch": arch, "head_dim": c.get("HEAD_DIM"), "dtype": dtype, "group": c.get("GROUP"), "masks": masks,
        "text_queries": c.get("TEXT_QUERIES"), "text_keys": c.get("TEXT_KEYS"),
        "BLOCK_M": c.get("BLOCK_M"), "BLOCK_N": c.get("BLOCK_N"), "num_warps": config.num_warps,
        "num_stages": config.num_stages, "cubin": f"{name}.cubin",
    }


# --loop-report: the main loop of the forward (key loop), dK/dV (query loop) and dQ (key loop) kernels per pattern
# and masks, next to the dense flash baseline of the same kernel with the same config.
LOOP_KERNELS = {"fwd": "attention_fwd d{} video-q", "dkdv": "attention_bwd_dkdv d{} video-k",
                "dq": "attention_bwd_dq d{} video-q"}
LOOP_VARIANTS = {
    "dense": {},
    "single": dict(GROUP=False, HAS_TMASK=False, HAS_VMASK=False),
    "group": dict(GROUP=True, HAS_TMASK=False, HAS_VMASK=False),
    "single+masks": dict(GROUP=False, HAS_TMASK=True, HAS_VMASK=True),
    "group+masks": dict(GROUP=True, HAS_TMASK=True, HAS_VMASK=True),
}
LOOP_TARGETS = {  # x dense, at most
    "fwd": {"single": 1.10, "group": 1.10, "single+masks": 1.25, "group+masks": 1.25},
    "dkdv": {"single": 1.15, "group": 1.15, "single+masks": 1.15, "group+masks": 1.15},
    "dq": {"single": 1.15, "group": 1.15, "single+masks": 1.15, "group+masks": 1.15},
}


def _loop_spec(kernel: str, head_dim: int) -> configs.KernelSpec:
    return next(s for s in all_specs() if s.name == LOOP_KERNELS[kernel].format(head_dim))


def loop_one(task: tuple[str, str, int, int, int]) -> dict:
    """Main-loop length of variant ``task[1]`` of kernel ``task[0]`` (``fwd``, ``dkdv``, ``dq``; or of its dense
    baseline) for arch ``task[2]``, head dim ``task[3]``, that kernel's config ``task[4]``."""
    from . import dense_flash, sass_loops

    kernel, variant, arch, head_dim, ci = task
    ours = _loop_spec(kernel, head_dim)
    spec = dense_flash.aot_spec(kernel, head_dim, ours.configs) if variant == "dense" else ours
    config = ours.configs[arch][ci]
    row = {"kernel": kernel, "variant": variant, "arch": arch, "head_dim": head_dim, "config": _describe(config)}
    try:
        compiled, log = _compile(spec, arch, config, LOOP_VARIANTS[variant])
        loop = sass_loops.main_loop(sass_loops.disassemble(compiled.asm["cubin"]))
    except Exception as e:  # noqa: BLE001  (a row of the report)
        return {**row, "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"}
    return {**row, **_ptxas_numbers(log), "instructions": loop.instructions, "mma": loop.mma, "error": ""}


def loop_report(rows: list[dict]) -> tuple[str, dict[str, bool]]:
    """The table of main-loop lengths (instructions per tile, and x dense) and, per kernel, whether every row
    compiled without spilling and met its target."""
    cells = {(r["kernel"], r["arch"], r["head_dim"], r["config"], r["variant"]): r for r in rows}
    names = list(LOOP_VARIANTS)
    lines = [f"{'kernel':<6} {'target':<6} {'D':>3} {'config':<28} " + " ".join(f"{n:>18}" for n in names)]
    ok: dict[str, bool] = {}
    for kernel, arch, d, config in dict.fromkeys(key[:4] for key in cells):
        dense = cells[(kernel, arch, d, config, "dense")].get("instructions")
        targets = LOOP_TARGETS[kernel]
        out = []
        for n in names:
            r = cells[(kernel, arch, d, config, n)]
            if r["error"] or r.get("spill_bytes"):
                out.append(f"{'FAIL' if r['error'] else 'SPILLS':>18}")
                ok[kernel] = False
                continue
            ratio = r["instructions"] / dense if dense else float("nan")
            met = n not in targets or ratio <= targets[n]
            ok[kernel] = ok.get(kernel, True) and met
            out.append(f"{r['instructions']:>6} {ratio:5.2f}x{'' if met else ' (!)':>4}" if n != "dense"
                       else f"{r['instructions']:>18}")
        lines.append(f"{kernel:<6} sm_{arch:<3} {d:>3} {config:<28} " + " ".join(out))
    lines.append("\nSASS instructions per tile in the main loop (x the dense kernel of the same kind and config: "
                 "dense_flash.py); the forward's loop walks key tiles, dK/dV's query tiles, dQ's key tiles; targets:")
    for kernel, targets in LOOP_TARGETS.items():
        lines.append(f"  {kernel}: " + ", ".join(f"{n} <= {t:.2f}x" for n, t in targets.items()))
    lines.append("(!) = over target")
    return "\n".join(lines), ok


def loop_verdict(ok: dict[str, bool]) -> str:
    """One line: whether the forward's and the backward's (dK/dV and dQ) loops meet their targets."""
    def word(kernels):
        return "MET" if all(ok.get(k, True) for k in kernels) else "NOT MET"

    return f"loop targets: forward {word(['fwd'])}, backward {word(['dkdv', 'dq'])}"


def _describe(config) -> str:
    blocks = " ".join(f"{k}={v}" for k, v in config.kwargs.items())
    return f"{blocks} w{config.num_warps} s{config.num_stages}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=list(configs.ARCHS), choices=configs.ARCHS)
    parser.add_argument("--filter", default="", help="only kernels whose name contains this")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--dump", metavar="DIR", default=None,
                        help="write DIR/<name>.cubin per compilation and DIR/index.json describing them")
    parser.add_argument("--loop-report", action="store_true",
                        help="instead: the main-loop SASS length per tile of the forward, dK/dV and dQ kernels next "
                        "to dense flash kernels")
    parser.add_argument("--head-dim", type=int, nargs="+", default=[128], choices=configs.AOT_HEAD_DIMS,
                        help="head dims of --loop-report (default 128)")
    args = parser.parse_args(argv)
    if configs.interpreting():
        parser.error("TRITON_INTERPRET is set: the interpreter compiles nothing; unset it to compile for the GPUs")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated to silence its warning
    if args.loop_report:
        tasks = [(kernel, n, arch, d, c) for kernel in LOOP_KERNELS for arch in args.arch for d in args.head_dim
                 for c in range(len(_loop_spec(kernel, d).configs[arch])) for n in LOOP_VARIANTS]
        rows = _run(loop_one, tasks, args.jobs)
        table, ok = loop_report(rows)
        print(table)
        print(loop_verdict(ok))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        return 0 if all(not r["error"] and not r.get("spill_bytes") for r in rows) else 1

    specs = all_specs()
    tasks = [(i, arch, c) for i, s in enumerate(specs) if args.filter in s.name
             for arch in args.arch for c in range(len(s.configs[arch]))]
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
    rows = _run(functools.partial(compile_one, dump=args.dump), tasks, args.jobs)

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
    if args.dump:
        with open(os.path.join(args.dump, "index.json"), "w") as f:
            json.dump([r for r in rows if "cubin" in r], f, indent=1)
    return 1 if failed or not rows else 0


def _run(fn, tasks: list, jobs: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRITON_CACHE_DIR"] = cache  # a cold cache, so that ptxas runs and reports every kernel
        with ProcessPoolExecutor(max(1, jobs)) as pool:
            return list(pool.map(fn, tasks))


if __name__ == "__main__":
    sys.exit(main())
