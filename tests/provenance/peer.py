#!/usr/bin/env python3
"""The other side of tests/it/provenance.rs: the Python packages our
provenance must interoperate with, driven from the Rust test.

  corpus DIR                   write the test pictures (photos from
                               scikit-image's bundled data, resized and
                               cropped to many sizes, plus synthetic ones)
  encode BITS IN... --out DIR  watermark with invisible-watermark (dwtDct)
  decode BITS_LEN FILE...      decode with invisible-watermark; JSON
                               {file: bits}
  attack FILE --out DIR        the ordinary handling of the robustness table
                               (Pillow): JPEG 90/75/50, resize 50 %, crops,
                               brightness +10 %
  c2pa FILE [--trust PEM]      read a manifest with c2pa-python; JSON
  touch IN OUT                 change one pixel and nothing else: IDAT is
                               rewritten, every other chunk (the C2PA
                               manifest included) kept byte for byte

invisible-watermark imports torch for its rivaGan method only; when torch
is not installed an empty module stands in for it (dwtDct never touches it).
"""

import argparse
import json
import os
import struct
import sys
import types
import zlib

import numpy as np
from PIL import Image, ImageEnhance


def imwatermark():
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.modules["torch"] = types.ModuleType("torch")
    import imwatermark as iw

    return iw


def corpus(out):
    from skimage import data

    os.makedirs(out, exist_ok=True)
    photos = {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "motorcycle": data.stereo_motorcycle()[0],
        "hubble": data.hubble_deep_field(),
        "retina": data.retina(),
        "colorwheel": data.colorwheel() if hasattr(data, "colorwheel") else data.astronaut(),
    }
    # (photo, width, height): native, shrunk, enlarged, odd sizes (not
    # multiples of 4 or 8), portrait, and 4K as the product saves.
    sizes = [
        ("astronaut", 512, 512), ("astronaut", 3840, 2160), ("astronaut", 257, 300),
        ("coffee", 600, 400), ("coffee", 1920, 1080), ("coffee", 333, 501),
        ("chelsea", 451, 300), ("chelsea", 1024, 1024), ("rocket", 640, 427),
        ("rocket", 2160, 3840), ("motorcycle", 741, 500), ("motorcycle", 1366, 768),
        ("hubble", 872, 1000), ("hubble", 3840, 2160), ("retina", 1411, 1411),
        ("retina", 600, 600), ("colorwheel", 370, 371), ("coffee", 1023, 767),
    ]
    names = []
    for photo, w, h in sizes:
        img = Image.fromarray(photos[photo][..., :3]).convert("RGB").resize((w, h), Image.LANCZOS)
        name = f"{photo}-{w}x{h}.png"
        img.save(os.path.join(out, name))
        names.append(name)
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:720, 0:1280]
    synthetic = {
        # Smooth gradients (where chroma marks are hardest to hide).
        "gradient-1280x720.png": np.stack([x * 255 // 1279, y * 255 // 719, (x + y) * 255 // 1998], -1),
        # Noise with structure, like an upscaled sample.
        "noise-1280x720.png": np.clip(
            128 + 60 * np.sin(x / 23.0)[..., None] + rng.normal(0, 25, (720, 1280, 3)), 0, 255
        ),
        # Saturated colour blocks (blue clips first when U moves).
        "blocks-1280x720.png": np.stack(
            [(x // 160 % 2) * 255, (y // 120 % 2) * 255, ((x // 160 + y // 120) % 3) * 120], -1
        ),
    }
    for name, pixels in synthetic.items():
        Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(out, name))
        names.append(name)
    print(json.dumps(names))


def bgr(path):
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return image


def encode(bits, files, out):
    import cv2

    iw = imwatermark()
    os.makedirs(out, exist_ok=True)
    for path in files:
        encoder = iw.WatermarkEncoder()
        encoder.set_watermark("bits", [int(b) for b in bits])
        marked = encoder.encode(bgr(path), "dwtDct")
        cv2.imwrite(os.path.join(out, os.path.basename(path)), marked)


def decode(length, files):
    iw = imwatermark()
    result = {}
    for path in files:
        decoder = iw.WatermarkDecoder("bits", length)
        bits = decoder.decode(bgr(path), "dwtDct")
        result[path] = "".join("1" if b else "0" for b in bits)
    print(json.dumps(result))


def attack(path, out):
    os.makedirs(out, exist_ok=True)
    img = Image.open(path).convert("RGB")
    w, h = img.size
    stem = os.path.splitext(os.path.basename(path))[0]
    made = {}
    for q in (90, 75, 50):
        name = os.path.join(out, f"{stem}.jpeg{q}.jpg")
        img.save(name, quality=q)
        made[f"jpeg{q}"] = name
    variants = {
        "resize50": img.resize((w // 2, h // 2), Image.LANCZOS),
        # 10 % off the right and bottom: the top-left block grid survives.
        "crop10-corner": img.crop((0, 0, w * 9 // 10, h * 9 // 10)),
        # 5 % off every side: the grid shifts by a non-multiple of 8.
        "crop10-centre": img.crop((w // 20 + 1, h // 20 + 1, w - w // 20, h - h // 20)),
        "bright10": ImageEnhance.Brightness(img).enhance(1.10),
    }
    for kind, variant in variants.items():
        name = os.path.join(out, f"{stem}.{kind}.png")
        variant.save(name)
        made[kind] = name
    print(json.dumps(made))


def read_c2pa(path, trust):
    import c2pa

    context = None
    if trust:
        with open(trust) as f:
            context = c2pa.Context.from_dict({"trust": {"user_anchors": f.read()}})
    try:
        reader = c2pa.Reader(path, context=context) if context else c2pa.Reader(path)
    except Exception as e:  # no manifest, unreadable
        print(json.dumps({"error": str(e)}))
        return
    manifest_store = json.loads(reader.json())
    active = manifest_store["manifests"][manifest_store["active_manifest"]]
    actions = [a["data"] for a in active["assertions"] if a["label"].startswith("c2pa.actions")]
    print(
        json.dumps(
            {
                "sdk": c2pa.sdk_version(),
                "state": reader.get_validation_state(),
                "status": [s["code"] for s in manifest_store.get("validation_status") or []],
                "actions": actions,
                "labels": [a["label"] for a in active["assertions"]],
                "claim_generator_info": active.get("claim_generator_info"),
            }
        )
    )


def chunks(data):
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        yield kind, data[pos : pos + 12 + length]
        pos += 12 + length


def touch(src, dst):
    data = open(src, "rb").read()
    img = np.array(Image.open(src).convert("RGB"))
    img[0, 0, 0] ^= 1
    raw = b"".join(b"\x00" + row.tobytes() for row in img)
    idat = zlib.compress(raw, 6)
    out = [data[:8]]
    wrote = False
    for kind, chunk in chunks(data):
        if kind == b"IDAT":
            if not wrote:
                out.append(struct.pack(">I", len(idat)) + b"IDAT" + idat)
                out.append(struct.pack(">I", zlib.crc32(b"IDAT" + idat)))
                wrote = True
        else:
            out.append(chunk)
    open(dst, "wb").write(b"".join(out))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("corpus")
    p.add_argument("out")
    p = sub.add_parser("encode")
    p.add_argument("bits")
    p.add_argument("files", nargs="+")
    p.add_argument("--out", required=True)
    p = sub.add_parser("decode")
    p.add_argument("length", type=int)
    p.add_argument("files", nargs="+")
    p = sub.add_parser("attack")
    p.add_argument("file")
    p.add_argument("--out", required=True)
    p = sub.add_parser("c2pa")
    p.add_argument("file")
    p.add_argument("--trust")
    p = sub.add_parser("touch")
    p.add_argument("src")
    p.add_argument("dst")
    a = parser.parse_args()
    if a.cmd == "corpus":
        corpus(a.out)
    elif a.cmd == "encode":
        encode(a.bits, a.files, a.out)
    elif a.cmd == "decode":
        decode(a.length, a.files)
    elif a.cmd == "attack":
        attack(a.file, a.out)
    elif a.cmd == "c2pa":
        read_c2pa(a.file, a.trust)
    elif a.cmd == "touch":
        touch(a.src, a.dst)


if __name__ == "__main__":
    main()
