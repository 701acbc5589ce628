#!/usr/bin/env python3
"""Build a realistic-size, random-weight bundle for benchmarks only.

Shapes of a real on-device model, weights random (seed 0): a CLIP ViT-L/14
text encoder (123M), a BK-SDM-Tiny-class UNet (SD1.5 blocks without the mid
block and innermost stage, one layer per block, ~323M) and the SD VAE (84M),
exported at 512 px like the tiny bundle. Written to
models/.cache/realistic-sd/ (about 2 GB): generated, never committed.

    python3 models/export/make_realistic_sd.py [--out DIR]
"""
import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from tiny_sd import assemble, export_onnx, load_tokenizer, repo_root, write_clip_vocab, write_manifest

NATIVE = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=repo_root() / "models/.cache/realistic-sd")
    out = parser.parse_args().out
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_vocab(Path(tmp))
        tokenizer = load_tokenizer(Path(tmp))
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=768))
    unet = UNet2DConditionModel(
        sample_size=NATIVE // 8, in_channels=4, out_channels=4,
        block_out_channels=(320, 640, 1280), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * 3, up_block_types=("CrossAttnUpBlock2D",) * 3,
        mid_block_type=None, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=NATIVE,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    for name, m in [("text encoder", text_encoder), ("unet", unet), ("vae", vae)]:
        print(f"{name}: {sum(p.numel() for p in m.parameters()) / 1e6:.1f}M parameters")
    pipe = assemble(unet, vae, text_encoder, tokenizer)
    export_onnx(pipe, out, NATIVE, NATIVE)
    write_manifest(out, name="realistic-sd-random", licence="MIT (random weights; benchmark only)",
                   source="models/export/make_realistic_sd.py", width=NATIVE, height=NATIVE,
                   max_size=768, scheduler="euler", steps=20, guidance=7.5)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
