"""Shared pieces of the bundle export scripts.

Builds randomly initialised, architecture-identical Stable Diffusion pipelines
(CLIP text encoder, UNet2DConditionModel, AutoencoderKL) with a real CLIP BPE
vocabulary, and writes them in the diffusers ONNX layout plus our manifest
`pocket-studio.toml`. Weights are seeded so a rebuild gives the same tensors.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

OPSET = 17

# diffusers' SD1.5 scheduler settings; every scheduler we support reads these.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    timestep_spacing="leading",
    steps_offset=1,
)


def write_clip_vocab(folder: Path) -> None:
    """Write OpenAI CLIP's vocab.json + merges.txt, rebuilt from the BPE table
    that ships inside the open_clip_torch wheel (same 49408 tokens)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "vocab.json", "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(folder / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")


def load_tokenizer(folder: Path) -> CLIPTokenizer:
    """Hugging Face's CLIPTokenizer as diffusers loads it: the reference our
    Rust tokenizer must match id for id."""
    return CLIPTokenizer.from_pretrained(str(folder), pad_token="<|endoftext|>", model_max_length=77)


def tiny_pipeline(tokenizer: CLIPTokenizer, seed: int = 0) -> StableDiffusionPipeline:
    """The same tiny shapes diffusers uses in its own SD pipeline tests, with
    the real CLIP vocabulary size."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=49408,
            max_position_embeddings=77,
            projection_dim=32,
        )
    )
    return assemble(unet, vae, text_encoder, tokenizer)


def assemble(unet, vae, text_encoder, tokenizer) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class _TextEncoder(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        out = self.m(input_ids=input_ids.long(), return_dict=False)
        return out[0], out[1]


class _Unet(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.m(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class _VaeDecoder(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, latent_sample):
        return self.m.decode(latent_sample, return_dict=False)[0]


class _VaeEncoder(torch.nn.Module):
    """Exports the latent distribution's parameters (mean ++ logvar), as optimum
    does, so sampling stays in the runtime with its own noise source."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, sample):
        h = self.m.encoder(sample)
        return self.m.quant_conv(h)


def _export(module, args, path: Path, inputs, outputs, axes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def export_onnx(pipe: StableDiffusionPipeline, out: Path, height: int, width: int) -> None:
    """Write the four ONNX graphs and the configs in optimum's diffusers layout."""
    te = pipe.text_encoder
    ids = torch.zeros((1, 77), dtype=torch.int32)
    _export(
        _TextEncoder(te), (ids,), out / "text_encoder/model.onnx", ["input_ids"],
        ["last_hidden_state", "pooler_output"],
        {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}, "pooler_output": {0: "batch"}},
    )
    te.config.to_json_file(out / "text_encoder/config.json")

    unet = pipe.unet
    f = pipe.vae_scale_factor
    lat = torch.randn(2, unet.config.in_channels, height // f, width // f)
    ts = torch.tensor([999.0], dtype=torch.float32)
    ehs = torch.randn(2, 77, te.config.hidden_size)
    _export(
        _Unet(unet), (lat, ts, ehs), out / "unet/model.onnx",
        ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
        {"sample": {0: "batch", 2: "height", 3: "width"},
         "encoder_hidden_states": {0: "batch"},
         "out_sample": {0: "batch", 2: "height", 3: "width"}},
    )
    unet.save_config(out / "unet")

    vae = pipe.vae
    _export(
        _VaeDecoder(vae), (lat[:1],), out / "vae_decoder/model.onnx", ["latent_sample"], ["sample"],
        {"latent_sample": {0: "batch", 2: "height", 3: "width"},
         "sample": {0: "batch", 2: "height", 3: "width"}},
    )
    vae.save_config(out / "vae_decoder")
    img = torch.randn(1, 3, height, width)
    _export(
        _VaeEncoder(vae), (img,), out / "vae_encoder/model.onnx", ["sample"], ["latent_parameters"],
        {"sample": {0: "batch", 2: "height", 3: "width"},
         "latent_parameters": {0: "batch", 2: "height", 3: "width"}},
    )
    vae.save_config(out / "vae_encoder")

    pipe.scheduler.save_config(out / "scheduler")
    tok = out / "tokenizer"
    write_clip_vocab(tok)
    with open(tok / "tokenizer_config.json", "w") as fh:
        json.dump({"model_max_length": 77, "bos_token": "<|startoftext|>",
                   "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer"}, fh, indent=2)
    with open(out / "model_index.json", "w") as fh:
        json.dump({"_class_name": "OnnxStableDiffusionPipeline",
                   "text_encoder": ["diffusers", "OnnxRuntimeModel"],
                   "unet": ["diffusers", "OnnxRuntimeModel"],
                   "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
                   "vae_encoder": ["diffusers", "OnnxRuntimeModel"],
                   "tokenizer": ["transformers", "CLIPTokenizer"],
                   "scheduler": ["diffusers", type(pipe.scheduler).__name__]}, fh, indent=2)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(out: Path, *, name: str, licence: str, source: str, width: int, height: int,
                   max_size: int, scheduler: str, steps: int, guidance: float) -> None:
    """Our manifest: identity, defaults and the sha256 of every file in the bundle."""
    files = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.name != "pocket-studio.toml"
    )
    lines = [
        f'name = "{name}"',
        'kind = "text-to-image"',
        f'licence = "{licence}"',
        f'source = "{source}"',
        "",
        "[native]",
        f"width = {width}",
        f"height = {height}",
        "",
        "[limits]",
        f"max_width = {max_size}",
        f"max_height = {max_size}",
        "",
        "[defaults]",
        f'scheduler = "{scheduler}"',
        f"steps = {steps}",
        f"guidance = {guidance}",
        "",
        "[sha256]",
    ]
    lines += [f'"{p}" = "{sha256(out / p)}"' for p in files]
    (out / "pocket-studio.toml").write_text("\n".join(lines) + "\n")


def repo_root() -> Path:
    return Path(os.path.dirname(os.path.abspath(__file__))).parent.parent
