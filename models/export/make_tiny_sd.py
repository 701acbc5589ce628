#!/usr/bin/env python3
"""Build the committed test bundle `models/tiny-sd/`.

A randomly initialised (seed 0), architecture-identical tiny Stable Diffusion
pipeline: CLIPTextModel, UNet2DConditionModel and AutoencoderKL with diffusers'
own test configs, OpenAI CLIP's real BPE vocabulary, exported by
`torch.onnx.export(dynamo=False)` at opset 17 into the diffusers ONNX layout,
with a `pocket-studio.toml` manifest. The torch pipeline is also saved under
`models/.cache/tiny-sd-torch/` for `make_parity_fixtures.py`.

Needs: torch, diffusers, transformers, open_clip_torch, onnx.
"""
import shutil
import tempfile
from pathlib import Path

from tiny_sd import export_onnx, load_tokenizer, repo_root, tiny_pipeline, write_clip_vocab, write_manifest

NATIVE = 64


def main() -> None:
    root = repo_root()
    out = root / "models/tiny-sd"
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_vocab(Path(tmp))
        tokenizer = load_tokenizer(Path(tmp))
    pipe = tiny_pipeline(tokenizer, seed=0)
    export_onnx(pipe, out, NATIVE, NATIVE)
    write_manifest(
        out,
        name="tiny-sd",
        licence="MIT (random weights, made by models/export/make_tiny_sd.py; CLIP vocabulary from OpenAI CLIP, MIT)",
        source="models/export/make_tiny_sd.py",
        width=NATIVE,
        height=NATIVE,
        max_size=256,
        scheduler="euler",
        steps=4,
        guidance=4.0,
    )
    cache = root / "models/.cache/tiny-sd-torch"
    if cache.exists():
        shutil.rmtree(cache)
    pipe.save_pretrained(cache)
    print(f"wrote {out} and {cache}")


if __name__ == "__main__":
    main()
