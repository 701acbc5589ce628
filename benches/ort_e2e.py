#!/usr/bin/env python3
"""Prompt -> exact 4K PNG through onnxruntime, for `pocket-studio bench --end-to-end`.

The same work Pocket Studio's path does on the same ONNX files with the same
thread count: tokenize the prompt and the negative prompt, two text encoder
calls, `steps` UNet calls at batch 2 with classifier-free guidance and an
Euler step, the VAE decode, whole upscaler passes with our tiles, overlap and
feathered blending (`ort_upscale.upscale`), a Lanczos resample with a centred
crop to the exact size (Pillow) and a PNG encode (Pillow, zlib level 1, to
memory).

Runs as a server so the two engines can be interleaved: it loads the sessions,
prints one JSON line, then for every `run` line on stdin prints one JSON line
of stage milliseconds; it exits at end of input. Needs numpy, onnxruntime,
pillow and tokenizers.
"""
import argparse
import io
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ort_stages import clip_tokenizer, session  # noqa: E402
from ort_upscale import upscale  # noqa: E402

PROMPT = "a watercolor painting of a lighthouse at dawn"
NEGATIVE = "blurry"
MAX_PASSES = 2  # src/pipeline/output.rs MAX_UPSCALER_PASSES


def ids_of(tok, text: str) -> np.ndarray:
    """77 CLIP ids: BOS, the text's tokens (cut to fit), EOS, EOS padding."""
    body = tok.encode(text).ids[:75]
    ids = [49406] + body + [49407] * (76 - len(body))
    return np.array([ids], dtype=np.int64)


def euler_sigmas(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """diffusers' EulerDiscreteScheduler, scaled_linear betas, leading spacing."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float32) ** 2
    alphas = np.cumprod(1.0 - betas)
    sigmas = ((1 - alphas) / alphas) ** 0.5
    ratio = 1000 // steps
    timesteps = (np.arange(0, steps) * ratio).round()[::-1].astype(np.float32) + 1
    s = np.interp(timesteps, np.arange(len(sigmas)), sigmas)
    return timesteps, np.concatenate([s, [0.0]]).astype(np.float32)


class Path4K:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.tok = clip_tokenizer(a.bundle)
        self.te = session(a.bundle / "text_encoder/model.onnx", a.threads)
        self.unet = session(a.bundle / "unet/model.onnx", a.threads)
        self.vae = session(a.bundle / "vae_decoder/model.onnx", a.threads)
        self.up = session(a.upscaler, a.threads)
        cfg = json.loads((a.bundle / "vae_decoder/config.json").read_text())
        self.latent_scale = float(cfg.get("scaling_factor", 0.18215))

    def run(self, seed: int) -> dict:
        a, ms = self.a, {}
        t0 = tick = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal tick
            now = time.perf_counter()
            ms[name] = ms.get(name, 0.0) + (now - tick) * 1e3
            tick = now

        ids = [ids_of(self.tok, t) for t in (NEGATIVE, PROMPT)]
        lap("tokenize")
        te_in = self.te.get_inputs()[0]
        dtype = np.int32 if te_in.type == "tensor(int32)" else np.int64
        emb = np.concatenate([self.te.run(None, {te_in.name: i.astype(dtype)})[0] for i in ids])
        lap("text encoder")
        names = [i.name for i in self.unet.get_inputs()]
        rng = np.random.default_rng(seed)
        timesteps, sigmas = euler_sigmas(a.steps)
        lat = rng.standard_normal((1, a.channels, a.height // a.factor, a.width // a.factor)).astype(np.float32) * sigmas[0]
        unet_ms = []
        for i, t in enumerate(timesteps):
            lap("scheduler")
            x = np.concatenate([lat, lat]) / np.sqrt(sigmas[i] ** 2 + 1)
            start = time.perf_counter()
            eps = self.unet.run(None, {names[0]: x, names[1]: np.array([t], np.float32),
                                       names[2]: emb})[0]
            unet_ms.append((time.perf_counter() - start) * 1e3)
            lap("unet")
            eps = eps[:1] + a.guidance * (eps[1:] - eps[:1])
            lat = (lat + eps * (sigmas[i + 1] - sigmas[i])).astype(np.float32)
        lap("scheduler")
        vae_in = self.vae.get_inputs()[0].name
        img = self.vae.run(None, {vae_in: lat / self.latent_scale})[0][0]
        lap("vae decode")
        img = (np.clip(img / 2 + 0.5, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
        lap("scheduler")
        for _ in range(MAX_PASSES):
            h, w, _ = img.shape
            if w >= a.out_width and h >= a.out_height:
                break
            img = upscale(self.up, img.astype(np.float32) / 255.0, a.tile, a.overlap, a.scale)
            if img.shape[1] * a.scale > a.out_width or img.shape[0] * a.scale > a.out_height:
                break
        lap("upscale")
        out = ImageOps.fit(Image.fromarray(img), (a.out_width, a.out_height), Image.LANCZOS)
        lap("resample")
        buf = io.BytesIO()
        # zlib level 1, the nearest to our encoder's fast setting.
        out.save(buf, format="PNG", compress_level=1)
        lap("png encode")
        ms["unet per call"] = float(np.median(unet_ms))
        ms["total"] = (time.perf_counter() - t0) * 1e3
        ms["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ms["png_bytes"] = len(buf.getvalue())
        return ms


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("bundle", type=Path)
    p.add_argument("upscaler", type=Path, help="the upscaler's model.onnx")
    for name in ("width", "height", "out-width", "out-height", "steps", "tile", "overlap",
                 "scale", "threads", "factor", "channels"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--guidance", type=float, default=7.5)
    a = p.parse_args()
    import onnxruntime as ort

    start = time.perf_counter()
    path = Path4K(a)
    print(json.dumps({"load_ms": (time.perf_counter() - start) * 1e3,
                      "onnxruntime": ort.__version__}), flush=True)
    for n, line in enumerate(sys.stdin):
        if line.strip() == "run":
            print(json.dumps(path.run(n)), flush=True)


if __name__ == "__main__":
    main()
