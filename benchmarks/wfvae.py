"""WF-VAE encode/decode time and peak memory: direct vs chunked, larger sizes chunked, optional reference.

    python benchmarks/wfvae.py --quick                      # ~3 min on 2 idle CPU cores
    python benchmarks/wfvae.py                              # 33x256x256 and larger, released widths (long on CPU)
    python benchmarks/wfvae.py --reference /path/to/WF-VAE  # also run the reference implementation side by side
    python benchmarks/wfvae.py --reference PATH --rounds 3  # main rows 3 times, interleaved: medians

Every case runs in a fresh subprocess (``--case``). "peak" is the peak RSS during the timed call (Linux VmHWM, reset
after loading), weights and input included; "work" is that peak minus the RSS just before the call. All cases share
one set of random weights with the released v1.5 layout, written once to a temporary checkpoint, so outputs are
comparable: the reference rows report their max abs difference from ours.

``--reference`` takes a checkout of PKU-YuanGroup/WF-VAE (its ``causalvideovae`` package); it is imported only in
its own subprocess. If ``diffusers`` is not installed, the few names the reference imports from it are stubbed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from skiparse.host import peak_rss_mib, reset_peak_rss, rss_mib

# Published anchor (paper 4.2, 33 frames, fp32, H100, no block-wise inference), printed for context.
ANCHOR = "WF-VAE-L encode 33x512x512 on H100: 7,170 MB, 0.0513 s (paper, different GPU and model size)"


def _stub_diffusers() -> None:
    """Minimal stand-ins for the diffusers names the reference imports (config registration and base classes)."""
    try:
        import diffusers  # noqa: F401
        return
    except ImportError:
        pass
    root = types.ModuleType("diffusers")
    root.ModelMixin = type("ModelMixin", (torch.nn.Module,), {})
    root.ConfigMixin = type("ConfigMixin", (), {})
    config_utils = types.ModuleType("diffusers.configuration_utils")
    config_utils.ConfigMixin, config_utils.register_to_config = root.ConfigMixin, lambda f: f
    models = types.ModuleType("diffusers.models")
    modeling_utils = types.ModuleType("diffusers.models.modeling_utils")
    modeling_utils.ModelMixin = root.ModelMixin
    utils = types.ModuleType("diffusers.utils")
    utils.BaseOutput = type("BaseOutput", (dict,), {"__getattr__": lambda self, k: self[k]})
    sys.modules.update({"diffusers": root, "diffusers.configuration_utils": config_utils, "diffusers.models": models,
                        "diffusers.models.modeling_utils": modeling_utils, "diffusers.utils": utils})  # fmt: skip


def _build(impl: str, weights: str, reference: str | None, config: str):
    from suv.vae import load_wfvae

    ours = load_wfvae(weights, config=config)
    if impl == "ours":
        return ours
    _stub_diffusers()  # the reference checkout is on PYTHONPATH (spawn)
    from causalvideovae.model.vae.modeling_wfvae import WFVAEModel

    model = WFVAEModel(**ours.config.to_dict()).eval()
    model.load_state_dict(ours.state_dict(), strict=True)
    return model


def run_case(case: dict) -> dict:
    """Child process: time one encode or decode and measure its memory."""
    torch.set_num_threads(case["threads"])
    model = _build(case["impl"], case["weights"], case.get("reference"), case["config"])
    t, s = case["frames"], case["size"]
    tc = model.config.temporal_compression if case["impl"] == "ours" else 8
    g = torch.Generator().manual_seed(0)
    if case["op"] == "encode":
        x = torch.rand(1, 3, t, s, s, generator=g) * 2 - 1
    else:
        x = torch.randn(1, 32, (t - 1) // tc + 1, s // 8, s // 8, generator=g)
    if case["chunked"] and case["impl"] == "ours":
        tile = case.get("tile")
        model.enable_tiling(spatial_tile=tile, spatial_overlap=tile // 4 if tile else None)
    elif case["chunked"]:
        model.enable_tiling()
    gc.collect()
    reset_peak_rss()  # the peak excludes loading
    before = rss_mib()
    with torch.inference_mode():
        start = time.perf_counter()
        if case["impl"] == "ours":
            out = model.encode(x).mean if case["op"] == "encode" else model.decode(x)
        else:
            out = model.encode(x).latent_dist.mean if case["op"] == "encode" else model.decode(x).sample
        seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    if case.get("save"):
        torch.save(out, case["save"])
    return {"seconds": seconds, "peak_mib": peak, "work_mib": peak - before}


def spawn(case: dict) -> dict:
    env = dict(os.environ)
    if case["impl"] == "ref":  # the reference's package, from its checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [case["reference"], env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True,
                          env=env)  # fmt: skip
    if proc.returncode != 0:
        if case["impl"] == "ref":  # e.g. the reference cannot chunk some T: report instead of aborting
            return {"error": proc.stderr.strip().splitlines()[-1]}
        raise RuntimeError(f"case {case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(results: list[dict]) -> dict:
    """Per-field median of repeated runs of one case (an error in any run is reported instead)."""
    errors = [r for r in results if "error" in r]
    if errors:
        return errors[0]
    return {k: sorted(r[k] for r in results)[len(results) // 2] for k in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (17x96x96; 33/121 frames at 64x64)")
    parser.add_argument("--reference", default=None, help="path to a WF-VAE checkout to run side by side")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the main-size rows this many times, interleaved, and report medians")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return

    main_t, main_s = (17, 96) if args.quick else (33, 256)
    long_s = 64 if args.quick else 256
    with tempfile.TemporaryDirectory() as tmp:
        from suv.vae import WFVAE, save_wfvae

        torch.manual_seed(0)
        weights = os.path.join(tmp, "wfvae_v15_random.safetensors")
        save_wfvae(WFVAE.from_config("v1.5"), weights)
        base = {"weights": weights, "config": "v1.5", "threads": args.threads, "reference": args.reference}

        plan = []  # (label, case)
        for op in ("encode", "decode"):
            for impl in ("ours", "ref") if args.reference else ("ours",):
                for chunked in (False, True):
                    save = os.path.join(tmp, f"{op}_{impl}_{int(chunked)}.pt")
                    plan.append((f"{op} {main_t}x{main_s}x{main_s} {impl} {'chunked' if chunked else 'direct'}",
                                 dict(base, impl=impl, op=op, chunked=chunked, frames=main_t, size=main_s, save=save)))
        main_rows = len(plan)
        if (main_t, main_s) != (33, long_s):  # else the main rows already hold it
            plan.append((f"decode 33x{long_s}x{long_s} ours chunked", dict(base, impl="ours", op="decode",
                                                                           chunked=True, frames=33, size=long_s)))
        plan.append((f"decode 121x{long_s}x{long_s} ours chunked", dict(base, impl="ours", op="decode", chunked=True,
                                                                        frames=121, size=long_s)))  # fmt: skip
        if not args.quick:
            plan.append(("encode 33x512x512 ours chunked", dict(base, impl="ours", op="encode", chunked=True,
                                                                frames=33, size=512)))  # fmt: skip
        tile = main_s // 2
        tiled_save = os.path.join(tmp, "decode_tiled.pt")
        plan.append((f"decode {main_t}x{main_s}x{main_s} ours chunked + {tile}px tiles",
                     dict(base, impl="ours", op="decode", chunked=True, frames=main_t, size=main_s, tile=tile,
                          save=tiled_save)))  # fmt: skip

        # The main-size rows (ours and the reference) run in interleaved rounds: this machine's speed drifts by
        # 10-20% over minutes, which a single run of each would turn into the ratio.
        runs: dict[str, list[dict]] = {label: [] for label, _ in plan}
        for i in range(args.rounds):
            for label, case in plan[:main_rows]:
                runs[label].append(spawn(case))
                if args.rounds > 1:
                    print(f"round {i + 1}/{args.rounds} {label}: {runs[label][-1].get('seconds', 'failed')}",
                          file=sys.stderr, flush=True)  # fmt: skip

        rows = []
        print(f"torch {torch.__version__}, {args.threads} threads, fp32, released v1.5 widths (random weights)"
              + (f", main rows: median of {args.rounds} interleaved rounds" if args.rounds > 1 else ""))
        print(f"{'case':<46} {'time s':>9} {'peak MiB':>9} {'work MiB':>9}  notes")
        for label, case in plan:
            r = _median(runs[label]) if runs[label] else spawn(case)
            if "error" in r:
                print(f"{label:<46} {'-':>9} {'-':>9} {'-':>9}  reference failed: {r['error']}", flush=True)
                continue
            notes = ""
            if case["impl"] == "ref":
                ours_path = case["save"].replace("_ref_", "_ours_")
                diff = (torch.load(case["save"]) - torch.load(ours_path)).abs().max().item()
                ours_row = next(x for x in rows if x["case"] == label.replace(" ref ", " ours "))
                notes = (f"ref/ours: time {r['seconds'] / ours_row['seconds']:.2f}x, "
                         f"peak {r['peak_mib'] / ours_row['peak_mib']:.2f}x; max|ours-ref| {diff:.1e}")  # fmt: skip
            if case.get("tile"):
                from suv.vae.metrics import psnr

                untiled = torch.load(tiled_save.replace("decode_tiled", "decode_ours_1")).clamp(-1, 1)
                tiled = torch.load(tiled_save).clamp(-1, 1)
                notes = f"PSNR vs untiled {psnr(tiled.add(1).div(2), untiled.add(1).div(2)):.1f} dB"
            if label.startswith("decode 121"):
                short = next(x for x in rows if x["case"] == label.replace("121x", "33x"))
                notes = f"{r['peak_mib'] / short['peak_mib']:.2f}x the peak of 33 frames"
            rows.append({"case": label, **r, "notes": notes})
            print(f"{label:<46} {r['seconds']:9.2f} {r['peak_mib']:9.0f} {r['work_mib']:9.0f}  {notes}", flush=True)
        print(f"context: {ANCHOR}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
