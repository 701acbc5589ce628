#!/usr/bin/env python3
"""Cycles per multiply-add of the engine's inner loops on the boards' cores,
by llvm-mca over the compiled aarch64 code: the first input of the board
speed model in docs/benchmarks.md ("Board projection").

For each kernel it disassembles the aarch64 object code of the cross build
(tests/qemu/cross-test.sh --build-only): our NEON tiles from the crate's
rlib, tract's assembly kernels from its build folder. In each it takes the
loop (a backward branch and what lies between) with the most fused
multiply-adds, feeds that loop body to llvm-mca for each CPU model, and
prints cycles per iteration, multiply-adds per iteration (lanes of each
FMLA: 4 for .4s, 8 for .8h) and cycles per multiply-add of one core.

LLVM's `cortex-a76` scheduling model is its Cortex-A57 one (one 128-bit
FMLA a cycle; LLVM 14, 19 and 22 alike); `neoverse-n1`, the A76's server
twin with the same two 128-bit FP/ASIMD pipes, models the A76's documented
rate (two FMLA a cycle, Arm's Cortex-A76 Software Optimization Guide). Both
are printed; the projection uses neoverse-n1 and names the other as its
pessimistic bound.

Usage: benches/inner_loops.py [--arch aarch64|x86_64] [--build DIR] [--mca llvm-mca-22]
                              [--json FILE]
(`--arch x86_64`: our AVX2 tiles and tract's FMA and AVX-512 kernels on
this machine's core (`-mcpu=native`), to check the projection's method
against the x86 measurement.)
Needs aarch64-linux-gnu-objdump (./setup.sh --tests) and llvm-mca (Debian's
llvm-19 or llvm-22 packages).
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# (label, files under the build folder, symbol pattern, precision), per
# architecture; the first f32 rows are the kernels the projection prices.
KERNELS_AARCH64 = [
    ("ours: product tile 6x16 (Winograd, fused attention)",
     "deps/libpocket_studio-*.rlib", r"product_tile::neon::tile", "f32"),
    ("ours: direct convolution 6x16",
     "deps/libpocket_studio-*.rlib", r"direct_conv::neon::tile", "f32"),
    ("tract: arm64simd_mmm_f32_8x8_gen",
     "build/tract-linalg-*/out/*-arm64simd_mmm_f32_8x8_gen.o", r"arm64simd_mmm_f32_8x8_gen", "f32"),
    ("tract: arm64simd_mmm_f32_12x8_a55",
     "build/tract-linalg-*/out/*-arm64simd_mmm_f32_12x8_a55.o", r"arm64simd_mmm_f32_12x8_a55", "f32"),
    ("tract: arm64fp16_mmm_f16_16x8_gen",
     "build/tract-linalg-*/out/*-arm64fp16_mmm_f16_16x8_gen.o", r"arm64fp16_mmm_f16_16x8_gen", "f16"),
    ("tract: arm64fp16_mmm_f16_16x8_a55",
     "build/tract-linalg-*/out/*-arm64fp16_mmm_f16_16x8_a55.o", r"arm64fp16_mmm_f16_16x8_a55", "f16"),
]
# The same on x86_64, for the projection's check against the x86 measurement.
KERNELS_X86_64 = [
    ("ours: product tile 6x16 (Winograd, fused attention)",
     "deps/libpocket_studio-*.rlib", r"product_tile::avx2::tile", "f32"),
    ("ours: direct convolution 6x16",
     "deps/libpocket_studio-*.rlib", r"direct_conv::avx2::tile", "f32"),
    ("tract: fma_mmm_f32_16x6",
     "build/tract-linalg-*/out/*-fma_mmm_f32_16x6.o", r"fma_mmm_f32_16x6", "f32"),
    ("tract: avx512_mmm_f32_16x12",
     "build/tract-linalg-*/out/*-avx512_mmm_f32_16x12.o", r"avx512_mmm_f32_16x12", "f32"),
]
ARCHES = {
    "aarch64": {
        "kernels": KERNELS_AARCH64,
        "cpus": ["neoverse-n1", "cortex-a76", "cortex-a55"],
        "objdump": "aarch64-linux-gnu-objdump",
        "triple": "aarch64",
        "mattr": "+fullfp16,+dotprod",
        "build": "target/cross/aarch64-unknown-linux-gnu/aarch64",
        "branch": re.compile(r"^(b\.\w+|b|cbn?z|tbn?z)$"),
        "fma": re.compile(r"^(fmla|fmls)$"),
    },
    "x86_64": {
        "kernels": KERNELS_X86_64,
        "cpus": ["native"],
        "objdump": "objdump",
        "triple": "x86_64",
        "mattr": "+avx2,+fma",
        "build": "target/release",
        "branch": re.compile(r"^j\w+$"),
        "fma": re.compile(r"^vfn?m(add|sub)\d+ps$"),
    },
}
ARCH = ARCHES["aarch64"]
LANES = {"4s": 4, "8h": 8, "2s": 2, "4h": 4, "2d": 2}


def functions(path):
    """[(symbol, [(address, mnemonic, operands)])] of every function in an
    object file or archive; local labels (`.packed_packed_loop_4` in
    tract's assembly) stay part of the function they are in."""
    out = subprocess.run([ARCH["objdump"], "-d", "-C", "--no-show-raw-insn", path],
                         capture_output=True, text=True, check=False).stdout
    funcs, current = [], None
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if head:
            if not (head.group(1).startswith(".") and current is not None):
                # Each instance of a generic function has its own section,
                # all at address 0: one list per header.
                current = []
                funcs.append((head.group(1), current))
            continue
        insn = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if insn and current is not None:
            operands = insn.group(3).split("//")[0].strip()
            current.append((int(insn.group(1), 16), insn.group(2), operands))
    return funcs


def loops(body):
    """Every loop of a function: (first index, branch index) of each
    backward branch inside it."""
    index = {address: ix for ix, (address, _, _) in enumerate(body)}
    for ix, (address, mnemonic, operands) in enumerate(body):
        if not ARCH["branch"].match(mnemonic):
            continue
        target = re.search(r"\b([0-9a-f]+)\b(?=\s*<|$)", operands)
        if target and int(target.group(1), 16) < address and int(target.group(1), 16) in index:
            yield index[int(target.group(1), 16)], ix


def multiply_adds(insn):
    """Multiply-adds one instruction does (lanes of a vector FMLA or VFMADD)."""
    _, mnemonic, operands = insn
    if not ARCH["fma"].match(mnemonic):
        return 0
    if "%zmm" in operands:
        return 16
    if "%ymm" in operands:
        return 8
    if "%xmm" in operands:
        return 4
    arrangement = re.match(r"v\d+\.(\w+)", operands)
    return LANES.get(arrangement.group(1), 1) if arrangement else 1


def mca(mca_tool, cpu, lines):
    """Cycles per iteration llvm-mca gives a loop body on `cpu`."""
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        name = f.name
    try:
        iterations = 1000
        out = subprocess.run(
            [mca_tool, f"-mtriple={ARCH['triple']}", f"-mcpu={cpu}", f"-mattr={ARCH['mattr']}",
             f"-iterations={iterations}", name],
            capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"inner_loops: {mca_tool} -mcpu={cpu} failed:\n{out.stderr}")
        out = out.stdout
    finally:
        os.unlink(name)
    total = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    return total / iterations


def inner_loop(path_glob, pattern):
    """The innermost loop with the most multiply-adds among the matching functions:
    (symbol, instructions without the branches, multiply-adds per iteration)."""
    best = None
    for path in sorted(glob.glob(path_glob)):
        for symbol, body in functions(path):
            if not re.search(pattern, symbol):
                continue
            found = list(loops(body))
            for first, last in found:
                if any((f, l) != (first, last) and first <= f and l <= last for f, l in found):
                    continue  # not an innermost loop
                span = body[first:last + 1]
                macs = sum(multiply_adds(i) for i in span)
                key = (macs, -len(span))
                if macs and (best is None or key > best[0]):
                    best = (key, symbol, span)
    if best is None:
        return None
    _, symbol, span = best
    lines = [f"{m} {o}".strip() for (_, m, o) in span if not ARCH["branch"].match(m)]
    return symbol, lines, best[0][0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHES), default="aarch64")
    parser.add_argument("--build", help="the build's profile folder (default: the cross "
                        "build's for aarch64, target/release for x86_64)")
    parser.add_argument("--mca", default=next(
        (t for t in ("llvm-mca-22", "llvm-mca-19", "llvm-mca") if shutil.which(t)), None))
    parser.add_argument("--json", help="also write the table here")
    parser.add_argument("--cpus", help="llvm-mca CPU models, comma-separated, instead of the "
                        "architecture's list")
    args = parser.parse_args()
    global ARCH
    ARCH = ARCHES[args.arch]
    args.build = args.build or ARCH["build"]
    if args.cpus:
        ARCH = dict(ARCH, cpus=args.cpus.split(","))
    if not args.mca:
        sys.exit("inner_loops: no llvm-mca (apt-get install llvm-19 or llvm-22)")
    if not shutil.which(ARCH["objdump"]):
        sys.exit(f"inner_loops: no {ARCH['objdump']} (./setup.sh --tests installs "
                 "binutils-aarch64-linux-gnu)")
    version = subprocess.run([args.mca, "--version"], capture_output=True, text=True).stdout
    version = re.search(r"LLVM version ([\d.]+)", version)
    print(f"llvm-mca {version.group(1) if version else '?'} over {args.build}")
    print(f"{'kernel':52} {'MAC/iter':>8} "
          + " ".join(f"{c + ' cyc/it':>18} {'cyc/MAC':>8}" for c in ARCH["cpus"]))
    rows = []
    for label, path_glob, pattern, precision in ARCH["kernels"]:
        found = inner_loop(os.path.join(args.build, path_glob), pattern)
        if found is None:
            sys.exit(f"inner_loops: no loop with FMLA in {pattern} under {args.build} "
                     "(build first: tests/qemu/cross-test.sh --build-only for aarch64, "
                     "cargo build --release for x86_64)")
        symbol, lines, macs = found
        row = {"kernel": label, "precision": precision, "symbol": symbol,
               "instructions": len(lines), "multiply_adds_per_iteration": macs, "cpus": {}}
        cells = []
        for cpu in ARCH["cpus"]:
            cycles = mca(args.mca, cpu, lines)
            row["cpus"][cpu] = {"cycles_per_iteration": cycles,
                                "cycles_per_multiply_add": cycles / macs}
            cells.append(f"{cycles:18.2f} {cycles / macs:8.4f}")
        rows.append(row)
        print(f"{label:52} {macs:8d} " + " ".join(cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
