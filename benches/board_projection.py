#!/usr/bin/env python3
"""Projected seconds per stage of prompt -> 3840x2160 on a board, from
counted work and modelled cycles: a projection, not a measurement.

Method, per node of each network's optimized plan (our operators in place,
as the engine plans them; `profile_onnx --costs`):
  compute = multiply-adds x cycles per multiply-add of the kernel that runs
            it (llvm-mca over its compiled inner loop, benches/inner_loops.py)
            / (cores x clock)
  memory  = bytes of its inputs (weights included) and outputs / DRAM
            bandwidth (nothing assumed to stay in cache)
  node    = max(compute, memory)
summed over the nodes and multiplied by the calls a 4K job makes (4 steps,
CFG on: the UNet at batch 2 and two text-encoder calls; off: batch 1, one
call; the upscaler's 28 tiles of 128 px for 672x384 -> 2688x1536). Winograd
nodes count 16/36 of their direct multiply-adds (F(2x2, 3x3)); nodes
without multiply-adds are priced by their traffic only. What no network
does (scheduler, Lanczos resample, PNG) is not projected: the x86 table
gives its time.

The same method on the x86 machine (its cores and clock, llvm-mca for its
core over our AVX2 tiles and tract's FMA kernel, its own copy bandwidth)
is printed next to the measured x86 stage times: their ratio says how far
to trust the board figures, and the "calibrated" column applies it.

Usage:
  benches/board_projection.py --bundle models/.cache/realistic-sd \\
      --upscaler models/.cache/upscalers/realesr-animevideov3-x4 \\
      [--measured-x86 STAGE=MS ...] [--x86-cpu rocketlake] [--costs-dir DIR]
Needs the x86 release build of examples/profile_onnx, both builds' objects
for benches/inner_loops.py (cross-test.sh --build-only; cargo build
--release), and llvm-mca.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# A landscape 4K job: 672x384 generated, 48x84 latents.
LATENTS = "48,84"
STEPS = 4
UPSCALE_TILES = 28

# Boards: (name, cores used, GHz, sustained DRAM GB/s, llvm-mca model)
BOARDS = [
    # RK3588: 4x A76 at 2.4 GHz (the A55 cluster left out); LPDDR4X-4224 on
    # 4x16 bits = 33.8 GB/s peak, 17-22 GB/s sequential measured on RK1
    # modules under sustained load: 17 assumed.
    ("rk3588", 4, 2.4, 17.0, "neoverse-n1"),
    # Raspberry Pi 5: 4x A76 at 2.4 GHz; LPDDR4X-4267 on 32 bits = 17.1 GB/s
    # peak: half of it, 8.5, assumed (the RK3588's measured share of peak).
    ("pi5", 4, 2.4, 8.5, "neoverse-n1"),
]

PRODUCT_TILE = "ours: product tile 6x16 (Winograd, fused attention)"
DIRECT = "ours: direct convolution 6x16"
TRACT_F32 = {"aarch64": "tract: arm64simd_mmm_f32_8x8_gen"}
TRACT_F16 = "tract: arm64fp16_mmm_f16_16x8_gen"


def stages(bundle, upscaler, cfg):
    """(stage, onnx file, input shapes, calls) of one 4K job."""
    batch = 2 if cfg else 1
    return [
        ("text encoder", f"{bundle}/text_encoder/model.onnx", ["1,77"], 2 if cfg else 1),
        ("unet (all steps)", f"{bundle}/unet/model.onnx",
         [f"{batch},4,{LATENTS}", "1", f"{batch},77,768"], STEPS),
        ("vae decode", f"{bundle}/vae_decoder/model.onnx", [f"1,4,{LATENTS}"], 1),
        ("upscale", f"{upscaler}/model.onnx", ["1,3,128,128"], UPSCALE_TILES),
    ]


def costs(onnx, shapes, cache_dir):
    """profile_onnx --costs of one network at these shapes (cached)."""
    key = os.path.join(cache_dir, (onnx + "@" + "_".join(shapes)).replace("/", "_") + ".jsonl")
    if not os.path.exists(key):
        exe = os.path.join(ROOT, "target/release/examples/profile_onnx")
        if not os.path.exists(exe):
            sys.exit("board_projection: build first: cargo build --release --example profile_onnx")
        print(f"planning {onnx} {' '.join(shapes)}", file=sys.stderr)
        out = subprocess.run([exe, onnx, *shapes, "--costs"], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"board_projection: profile_onnx failed on {onnx}:\n{out.stderr}")
        with open(key, "w") as f:
            f.write(out.stdout)
    with open(key) as f:
        return [json.loads(line) for line in f if line.strip()]


def loops(arch, cache_dir, cpu=None):
    """{kernel: {cpu: cycles per multiply-add}} from inner_loops.py."""
    path = os.path.join(cache_dir, f"loops-{arch}.json")
    cmd = [sys.executable, os.path.join(HERE, "inner_loops.py"), "--arch", arch, "--json", path]
    if cpu:
        cmd += ["--cpus", cpu]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    with open(path) as f:
        rows = json.load(f)
    return {r["kernel"]: {c: v["cycles_per_multiply_add"] for c, v in r["cpus"].items()}
            for r in rows}


def kernel_of(node, arch, precision):
    """(kernel, multiply-adds it runs) for one node; None for no arithmetic."""
    op, macs = node["op"], node["multiply_adds"]
    if not macs:
        return None, 0
    if op == "WinogradConv":
        return PRODUCT_TILE, macs * 16 / 36
    if op == "FusedAttention":
        return PRODUCT_TILE, macs
    if op == "DirectConv":
        return DIRECT, macs
    if precision == "f16":
        return TRACT_F16, macs
    return TRACT_F32[arch], macs


def seconds(nodes, arch, precision, cycles, cpu, cores, ghz, gbps, ours_f16=False):
    """Projected seconds of one call: the roofline sum over its nodes."""
    total = 0.0
    for node in nodes:
        kernel, work = kernel_of(node, arch, precision)
        compute = 0.0
        if kernel:
            cpm = cycles[kernel][cpu]
            if ours_f16 and kernel in (PRODUCT_TILE, DIRECT):
                # Our f16 twins at the efficiency of our f32 ones, twice the lanes.
                cpm = cpm / 2
            compute = work * cpm / (cores * ghz * 1e9)
        scale = 0.5 if precision == "f16" else 1.0
        memory = node["bytes"] * scale / (gbps * 1e9)
        total += max(compute, memory)
    return total


def copy_bandwidth_gbps():
    """This machine's copy bandwidth (read + write bytes a second) over
    256 MiB buffers, best of five (numpy's copy, one thread)."""
    try:
        import numpy as np
    except ImportError:
        sys.exit("board_projection: needs numpy to measure this machine's copy bandwidth "
                 "(run it with .venv/bin/python3, or pass --x86-gbps)")
    a = np.ones(1 << 26, dtype=np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--upscaler", required=True)
    p.add_argument("--costs-dir", default=os.path.join(ROOT, "target/board-projection"))
    p.add_argument("--x86-cpu", default="native", help="llvm-mca model of this machine's core")
    p.add_argument("--x86-cores", type=int, default=2)
    p.add_argument("--x86-ghz", type=float, default=None,
                   help="clock under load (default: from the measured FMA peak if given, else cpu MHz)")
    p.add_argument("--x86-gbps", type=float, help="this machine's DRAM bandwidth (default: measured)")
    p.add_argument("--measured-x86", nargs="*", default=[],
                   help="STAGE=MS of `bench --end-to-end` on this machine (text, unet, vae, upscale)")
    args = p.parse_args()
    os.makedirs(args.costs_dir, exist_ok=True)

    # The kernel tract picks here for the large products.
    report = subprocess.run([os.path.join(ROOT, "target/release/pocket-studio"), "cpu"],
                            capture_output=True, text=True, check=True).stdout
    TRACT_F32["x86_64"] = "tract: " + next(
        l.split(": ")[-1] for l in report.splitlines() if l.startswith("tract f32 3x3"))
    arm = loops("aarch64", args.costs_dir)
    x86 = loops("x86_64", args.costs_dir, args.x86_cpu)
    measured = dict(item.split("=", 1) for item in args.measured_x86)
    ghz = args.x86_ghz
    if ghz is None:
        with open("/proc/cpuinfo") as f:
            mhz = next(float(l.split(":")[1]) for l in f if l.startswith("cpu MHz"))
        ghz = mhz / 1e3
    x86_bw = args.x86_gbps or copy_bandwidth_gbps()

    ratios = {}
    for cfg in (True, False):
        print(f"\n### 4 steps, CFG {'on' if cfg else 'off'}\n")
        columns = ["stage", "G multiply-adds", "x86 projected s", "x86 measured s",
                   "measured / projected"]
        columns += [f"{b[0]} {p} s" for b in BOARDS for p in ("f32", "f16", "f16 twins")]
        print("| " + " | ".join(columns) + " |")
        print("|" + " --- |" * len(columns))
        totals = {}
        for stage, onnx, shapes, calls in stages(args.bundle, args.upscaler, cfg):
            nodes = costs(onnx, shapes, args.costs_dir)
            macs = sum(n["multiply_adds"] for n in nodes) * calls
            x86_s = seconds(nodes, "x86_64", "f32", x86, args.x86_cpu, args.x86_cores,
                            ghz, x86_bw) * calls
            key = stage.split()[0]
            meas = float(measured[key]) / 1e3 if cfg and key in measured else None
            if meas:
                ratios[key] = meas / x86_s
            ratio = ratios.get(key)
            row = [stage, f"{macs / 1e9:,.0f}", f"{x86_s:.2f}",
                   f"{meas:.2f}" if meas else "-", f"{ratio:.2f}" if ratio else "-"]
            for name, cores, bghz, gbps, cpu in BOARDS:
                for precision, ours_f16 in (("f32", False), ("f16", False), ("f16 twins", True)):
                    p16 = "f16" if precision.startswith("f16") else "f32"
                    s = seconds(nodes, "aarch64", p16, arm, cpu, cores, bghz, gbps,
                                ours_f16) * calls
                    totals[(name, precision)] = totals.get((name, precision), 0) + s
                    totals[(name, precision, "cal")] = (
                        totals.get((name, precision, "cal"), 0) + s * (ratio or 1))
                    row.append(f"{s:.1f}")
            print("| " + " | ".join(row) + " |")
        print()
        for name, *_ in BOARDS:
            for precision in ("f32", "f16", "f16 twins"):
                label = {"f32": "f32", "f16": "f16",
                         "f16 twins": "f16 with f16 twins of our ops"}[precision]
                print(f"projected {name} {label}: {totals[(name, precision)]:.1f} s "
                      "(times the stages' measured/projected x86 ratios: "
                      f"{totals[(name, precision, 'cal')]:.1f} s)")
    print(f"\nx86: {args.x86_cores} cores at {ghz:.2f} GHz, llvm-mca -mcpu={args.x86_cpu}, "
          f"{TRACT_F32['x86_64']}, "
          f"DRAM {x86_bw:.1f} GB/s" + ("" if args.x86_gbps else " (copy bandwidth measured with numpy, this run)"))


if __name__ == "__main__":
    main()
