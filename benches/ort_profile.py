#!/usr/bin/env python3
"""Where onnxruntime spends a network call, per operator and per node.

The counterpart of `examples/profile_onnx.rs` for onnxruntime: runs MODEL
twice on random inputs of the given shapes (comma-separated dimensions, one
argument per input; integer inputs get ones) with onnxruntime's profiler on,
then prints the time per operator type and the slowest nodes of the second
run. Its graph optimisations are on, as in `ort_e2e.py`, so the nodes are the
ones it really runs (for example `Conv` in NCHWc form on AVX2 machines).

    python3 benches/ort_profile.py MODEL SHAPE... [--threads N] [--nodes N]

With `--conv OUT CHANNELS HEIGHT WIDTH` it instead writes OUT, an ONNX file of
one 3x3 convolution (CHANNELS in and out, "same" padding, random weights), to
time one layer in both engines; with `--attention OUT TOKENS KEYS FEATURES`
one attention as diffusers exports it (inputs Q `[2, TOKENS, 8, FEATURES]`,
K and V `[2, KEYS, 8, FEATURES]`; transposes, MatMul, Softmax, MatMul).
Needs numpy, onnx and onnxruntime.
"""
import argparse
import collections
import json
import os
import tempfile

import numpy as np


def write_conv(path, channels, height, width):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(0)
    weights = numpy_helper.from_array(
        (rng.randn(channels, channels, 3, 3) * 0.05).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.randn(channels).astype(np.float32), "B")
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], pads=[1] * 4, kernel_shape=[3, 3])
    shape = [1, channels, height, width]
    graph = helper.make_graph(
        [node], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def write_attention(path, tokens, keys, features):
    import onnx
    from onnx import TensorProto, helper

    def value(name, rows):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, rows, 8, features])

    nodes = [
        helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v"], ["vt"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["qt", "kt"], ["s"]),
        helper.make_node("Softmax", ["s"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "vt"], ["o"]),
        helper.make_node("Transpose", ["o"], ["y"], perm=[0, 2, 1, 3]),
    ]
    graph = helper.make_graph(
        nodes, "attention",
        [value("q", tokens), value("k", keys), value("v", keys)], [value("y", tokens)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def profile(path, shapes, threads, nodes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = {}
    for spec, shape in zip(session.get_inputs(), shapes):
        dims = [int(d) for d in shape.split(",")]
        if "int" in spec.type:
            feeds[spec.name] = np.ones(dims, dtype=np.int64 if "64" in spec.type else np.int32)
        else:
            feeds[spec.name] = np.random.RandomState(0).randn(*dims).astype(np.float32)
    session.run(None, feeds)
    session.run(None, feeds)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    runs = [e for e in events if e.get("name") == "model_run"]
    print(f"{path}: runs " + ", ".join(f"{e['dur'] / 1000:.1f} ms" for e in runs))
    last = runs[-1]["ts"]
    timed = [e for e in events
             if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= last]
    by_op = collections.Counter()
    for e in timed:
        by_op[e["args"]["op_name"]] += e["dur"] / 1000
    for op, ms in by_op.most_common():
        print(f"{op:30s} {ms:10.1f} ms")
    timed.sort(key=lambda e: -e["dur"])
    for e in timed[:nodes]:
        name = e["name"][: -len("_kernel_time")]
        print(f"{e['dur'] / 1000:10.1f} ms {e['args']['op_name']:14s} {name} {e['args'].get('output_type_shape')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("shapes", nargs="*")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--conv", nargs=4, metavar=("OUT", "CHANNELS", "HEIGHT", "WIDTH"))
    parser.add_argument("--attention", nargs=4, metavar=("OUT", "TOKENS", "KEYS", "FEATURES"))
    args = parser.parse_args()
    if args.attention:
        out, tokens, keys, features = args.attention
        write_attention(out, int(tokens), int(keys), int(features))
        return
    if args.conv:
        out, channels, height, width = args.conv
        write_conv(out, int(channels), int(height), int(width))
        return
    if not args.model:
        parser.error("a model (or --conv, --attention)")
    profile(args.model, args.shapes, args.threads, args.nodes)


if __name__ == "__main__":
    main()
