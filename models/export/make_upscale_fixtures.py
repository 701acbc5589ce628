#!/usr/bin/env python3
"""Reference outputs for the upscaler tests (tests/fixtures/upscale/).

The photo is scikit-image's `chelsea` sample (skimage.data.chelsea(), "Chelsea
the cat" by Stefan van der Walt, public domain / CC0, shipped inside the
scikit-image wheel). It is downscaled x4 with Pillow's box filter to
input.png; onnxruntime runs our converted realesr-animevideov3-x4 ONNX on the
whole image (no tiling) and the result, clamped and rounded to 8 bits, is
ort_x4.png.

Needs scikit-image, pillow, numpy, onnxruntime and the bundle written by
fetch_upscalers.py.
"""
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import skimage
import skimage.data
from PIL import Image

from fetch_upscalers import repo_root

MODEL = "realesr-animevideov3-x4"


def main() -> None:
    root = repo_root()
    out = root / "tests/fixtures/upscale"
    out.mkdir(parents=True, exist_ok=True)
    photo = Image.fromarray(skimage.data.chelsea())
    small = photo.resize((photo.width // 4, photo.height // 4), Image.BOX)
    small.save(out / "input.png")
    bundle = root / "models/.cache/upscalers" / MODEL
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.asarray(small, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    y = sess.run(None, {"input": x})[0][0]
    pixels = (np.clip(y, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(pixels).save(out / "ort_x4.png")
    (out / "source.json").write_text(json.dumps({
        "photo": "skimage.data.chelsea()",
        "scikit_image": skimage.__version__,
        "licence": "public domain (CC0), Stefan van der Walt",
        "downscale": "Pillow BOX, x1/4",
        "model": MODEL,
        "model_sha256": (bundle / "pocket-studio.toml").read_text().split('"model.onnx" = "')[1][:64],
        "onnxruntime": ort.__version__,
    }, indent=2) + "\n")
    print(f"{small.size} -> {pixels.shape[1]}x{pixels.shape[0]} in {out}")


if __name__ == "__main__":
    main()
