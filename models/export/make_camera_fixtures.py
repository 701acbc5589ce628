#!/usr/bin/env python3
"""Reference frames for the camera's pixel-format conversions (tests/it/camera.rs).

Writes tests/fixtures/camera/:

  source.png          a 96x64 picture: gradients, flat colour patches, black,
                      white and a little noise (so rounding is exercised)
  yuyv422.raw         source.png as ffmpeg converts it to YUYV (BT.601, limited)
  nv12.raw            the same as NV12
  yuyv422.ref.png     yuyv422.raw back to RGB by ffmpeg's accurate conversion
  nv12.ref.png        (sws_flags neighbor+accurate_rnd+full_chroma_int+bitexact:
                      chroma taken from its pair / 2x2 block, as cameras site it)
  yuyv422.exact.png   the same by the exact BT.601 formula in float64 (numpy)
  nv12.exact.png
  mjpeg.jpg           source.png as ffmpeg's MJPEG encoder writes it (4:2:2,
                      with Huffman tables)
  mjpeg.ref.png       mjpeg.jpg decoded by Pillow (libjpeg-turbo)

Needs ffmpeg, numpy and Pillow; CI only reads the files.
"""
import subprocess

import numpy as np
from PIL import Image

from tiny_sd import repo_root

W, H = 96, 64


def source_picture() -> Image.Image:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    rgb = np.stack([x / (W - 1), y / (H - 1), 1 - 0.5 * (x / (W - 1) + y / (H - 1))], -1)
    rgb[10:30, 10:50] = [0.9, 0.15, 0.1]
    rgb[35:60, 55:90] = [0.1, 0.8, 0.3]
    rgb[5:20, 60:92] = [1, 1, 1]
    rgb[40:58, 5:30] = [0, 0, 0]
    rgb = np.clip(rgb + np.random.default_rng(3).normal(0, 0.02, rgb.shape), 0, 1)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def exact_bt601(y, u, v) -> np.ndarray:
    y = (y - 16) * 255 / 219
    u = (u - 128) * 255 / 224
    v = (v - 128) * 255 / 224
    kr, kb = 0.299, 0.114
    kg = 1 - kr - kb
    r = y + 2 * (1 - kr) * v
    b = y + 2 * (1 - kb) * u
    g = y - 2 * kb * (1 - kb) / kg * u - 2 * kr * (1 - kr) / kg * v
    return np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255).astype(np.uint8)


def planes(fmt: str, raw: bytes):
    a = np.frombuffer(raw, np.uint8).astype(np.float64)
    if fmt == "yuyv422":
        a = a.reshape(H, W * 2)
        return a[:, 0::2], np.repeat(a[:, 1::4], 2, 1), np.repeat(a[:, 3::4], 2, 1)
    y = a[: W * H].reshape(H, W)
    uv = a[W * H:].reshape(H // 2, W)
    up = lambda c: np.repeat(np.repeat(c, 2, 1), 2, 0)  # noqa: E731
    return y, up(uv[:, 0::2]), up(uv[:, 1::2])


def main() -> None:
    out = repo_root() / "tests/fixtures/camera"
    out.mkdir(parents=True, exist_ok=True)
    source_picture().save(out / "source.png")
    for fmt in ("yuyv422", "nv12"):
        raw = out / f"{fmt}.raw"
        ffmpeg("-i", str(out / "source.png"), "-f", "rawvideo", "-pix_fmt", fmt,
               "-color_range", "tv", "-colorspace", "bt470bg", str(raw))
        ffmpeg("-f", "rawvideo", "-pix_fmt", fmt, "-s", f"{W}x{H}", "-color_range", "tv",
               "-colorspace", "bt470bg", "-i", str(raw), "-pix_fmt", "rgb24",
               "-sws_flags", "neighbor+accurate_rnd+full_chroma_int+bitexact",
               str(out / f"{fmt}.ref.png"))
        Image.fromarray(exact_bt601(*planes(fmt, raw.read_bytes()))).save(out / f"{fmt}.exact.png")
    # `-huffman default`: the standard tables, as webcams use (they may then
    # leave them out of the frame; the test drops them to check that case).
    ffmpeg("-i", str(out / "source.png"), "-c:v", "mjpeg", "-huffman", "default", "-q:v", "3",
           "-pix_fmt", "yuvj422p",
           str(out / "mjpeg.jpg"))
    Image.open(out / "mjpeg.jpg").convert("RGB").save(out / "mjpeg.ref.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
