#!/usr/bin/env python3
"""Time the pipeline's stages in onnxruntime on a bundle's own ONNX files.

Called by `pocket-studio bench` so tract and onnxruntime are measured in the
same run on the same inputs' shapes; prints one JSON object of median
milliseconds keyed like the bench table. Needs numpy and onnxruntime; the
tokenizer row needs `tokenizers` and is left out without it.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def clip_tokenizer(bundle: Path):
    """transformers' CLIPTokenizer rebuilt on `tokenizers` (ImportError without it)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, Regex

    tok = Tokenizer(models.BPE.from_file(str(bundle / "tokenizer/vocab.json"),
                                         str(bundle / "tokenizer/merges.txt"),
                                         continuing_subword_prefix="", end_of_word_suffix="</w>",
                                         unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return tok


def median_ms(fn, runs: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("bundle", type=Path)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--height", type=int, required=True)
    a = p.parse_args()
    b = a.bundle
    rng = np.random.default_rng(0)
    result = {}

    try:
        tok = clip_tokenizer(b)
        prompts = ["a watercolor painting of a lighthouse at dawn", "blurry"]
        result["tokenize"] = median_ms(lambda: [tok.encode(s) for s in prompts], a.runs)
    except ImportError:
        pass

    te = session(b / "text_encoder/model.onnx", a.threads)
    ids_input = te.get_inputs()[0]
    ids = np.full((1, 77), 49407, dtype=TYPES[ids_input.type])
    result["text encoder"] = median_ms(lambda: te.run(None, {ids_input.name: ids}), a.runs)
    hidden = te.run(None, {ids_input.name: ids})[0].shape[-1]

    vae_cfg = json.loads((b / "vae_decoder/config.json").read_text())
    f = 2 ** (len(vae_cfg.get("block_out_channels", [0, 0, 0, 0])) - 1)
    unet = session(b / "unet/model.onnx", a.threads)
    names = [i.name for i in unet.get_inputs()]
    types = [TYPES[i.type] for i in unet.get_inputs()]
    lat = rng.standard_normal((2, 4, a.height // f, a.width // f)).astype(types[0])
    feeds = {names[0]: lat, names[1]: np.array([999], dtype=types[1]),
             names[2]: rng.standard_normal((2, 77, hidden)).astype(types[2])}
    result["unet (batch 2)"] = median_ms(lambda: unet.run(None, feeds), a.runs)
    del unet

    vae = session(b / "vae_decoder/model.onnx", a.threads)
    vname = vae.get_inputs()[0].name
    result["vae decode"] = median_ms(lambda: vae.run(None, {vname: lat[:1]}), a.runs)
    result["onnxruntime"] = ort.__version__
    result["threads"] = a.threads
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
