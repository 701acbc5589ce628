#!/usr/bin/env python3
"""Time an upscaler bundle in onnxruntime with Pocket Studio's own tiling.

Called by `pocket-studio bench --upscaler DIR`: same ONNX, same input PNG,
same tile origins, overlap and feathered blending as src/pipeline/upscale.rs,
same thread count; prints JSON with seconds and peak RSS (MiB).
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def origins(length: int, tile: int, overlap: int) -> list[int]:
    if tile >= length:
        return [0]
    stride = max(tile - 2 * overlap, 1)
    count = -(-(length - tile) // stride) + 1
    return [(length - tile) * i // (count - 1) for i in range(count)]


def feather(origin: int, tile: int, length: int, overlap: int, scale: int) -> np.ndarray:
    n = tile * scale
    ramp = max(2 * overlap * scale, 1)
    i = np.arange(n, dtype=np.float32)
    start = (i + 0.5) / ramp if origin > 0 else np.ones(n, np.float32)
    end = (n - i - 0.5) / ramp if origin + tile < length else np.ones(n, np.float32)
    return np.clip(np.minimum(start, end), 1e-3, 1.0).astype(np.float32)


def upscale(sess: ort.InferenceSession, img: np.ndarray, tile: int, overlap: int,
            s: int) -> np.ndarray:
    """One pass over HWC floats in 0..1; returns HWC uint8, blended as ours."""
    h, w, _ = img.shape
    tw, th = min(tile, w), min(tile, h)
    sums = np.zeros((3, h * s, w * s), np.float32)
    weights = np.zeros((h * s, w * s), np.float32)
    name = sess.get_inputs()[0].name
    for y0 in origins(h, th, overlap):
        wy = feather(y0, th, h, overlap, s)
        for x0 in origins(w, tw, overlap):
            wx = feather(x0, tw, w, overlap, s)
            part = img[y0:y0 + th, x0:x0 + tw].transpose(2, 0, 1)[None]
            out = sess.run(None, {name: np.ascontiguousarray(part)})[0][0]
            wgt = wy[:, None] * wx[None, :]
            sums[:, y0 * s:(y0 + th) * s, x0 * s:(x0 + tw) * s] += out * wgt
            weights[y0 * s:(y0 + th) * s, x0 * s:(x0 + tw) * s] += wgt
    out = (np.clip(sums / weights, 0, 1) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model", type=Path)
    p.add_argument("image", type=Path)
    p.add_argument("--tile", type=int, required=True)
    p.add_argument("--overlap", type=int, required=True)
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(str(a.model), opts, providers=["CPUExecutionProvider"])
    img = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32) / 255.0
    start = time.perf_counter()
    result = upscale(sess, img, a.tile, a.overlap, a.scale)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump({"seconds": seconds, "peak_rss_mib": peak_mib, "shape": list(result.shape),
               "onnxruntime": ort.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
