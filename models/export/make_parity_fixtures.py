#!/usr/bin/env python3
"""Record diffusers' own output on the tiny bundle, one case per scheduler.

For each of euler, euler-a, ddim, lcm and dpmpp-2m this runs diffusers'
StableDiffusionPipeline (torch, CPU) on the weights saved by make_tiny_sd.py,
with fixed prompts, guidance and recorded initial latents, records every noise
tensor the scheduler draws (euler-a and lcm draw one per step), and stores
under tests/fixtures/parity/<scheduler>/:

  case.json           prompt, negative prompt, steps, guidance, size
  init_latents.npy    float32 [1, 4, h, w], passed as diffusers' `latents=`
  step_noise.npy      float32 [n, 1, 4, h, w], the scheduler's draws in order
  final_latents.npy   float32, latents after the last step (before decoding)
  image.png           the decoded RGB8 image diffusers returns

Then, for the image-to-image cases (IMG2IMG_CASES), diffusers'
StableDiffusionImg2ImgPipeline on the same weights from a fixed synthetic
source picture, under tests/fixtures/parity/img2img-<scheduler>/:

  case.json           as above, plus strength and the timesteps actually run
  init.png            the source image (the request's size, so no resize)
  noise.npy           float32 [n, 1, 4, h, w]: every draw in order: the VAE
                      latent distribution's sample, the noise add_noise mixes
                      in, then the scheduler's own draws
  final_latents.npy, image.png as above

CI reads these files only; it needs no torch.
"""
import json
import shutil

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
)
from diffusers.models.autoencoders import vae as vae_module
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as img2img_module
from PIL import Image

from tiny_sd import repo_root

CASES = {
    "euler": (EulerDiscreteScheduler, 5, 4.0),
    "euler-a": (EulerAncestralDiscreteScheduler, 5, 4.0),
    "ddim": (DDIMScheduler, 5, 4.0),
    # LCM models are run without classifier-free guidance: this case covers
    # the single-pass UNet path.
    "lcm": (LCMScheduler, 4, 1.0),
    "dpmpp-2m": (DPMSolverMultistepScheduler, 6, 4.0),
}
# name -> (scheduler class, steps, guidance, strength)
IMG2IMG_CASES = {
    "euler": (EulerDiscreteScheduler, 6, 4.0, 0.7),
    "ddim": (DDIMScheduler, 5, 4.0, 0.6),
    "dpmpp-2m": (DPMSolverMultistepScheduler, 8, 4.0, 0.5),
    "lcm": (LCMScheduler, 4, 1.0, 0.75),
}
PROMPT = "a watercolor painting of a lighthouse at dawn, soft light"
NEGATIVE = "blurry, low quality"
SIZE = 64


class NoiseRecorder:
    """Wraps diffusers' randn_tensor inside the given modules and keeps a copy
    of every draw, in call order."""

    def __init__(self, *modules):
        self.modules = modules
        self.originals = [m.randn_tensor for m in modules]
        self.draws = []

    def __enter__(self):
        for module, original in zip(self.modules, self.originals):
            def recording(*args, _original=original, **kwargs):
                t = _original(*args, **kwargs)
                self.draws.append(t.detach().cpu().numpy().astype(np.float32))
                return t

            module.randn_tensor = recording
        return self

    def __exit__(self, *exc):
        for module, original in zip(self.modules, self.originals):
            module.randn_tensor = original


def save_outcome(out, final, result) -> None:
    """The latents after the last step and the RGB8 image diffusers returns."""
    np.save(out / "final_latents.npy", final["latents"].numpy().astype(np.float32))
    pixels = (result.images[0] * 255).round().astype("uint8")
    Image.fromarray(pixels).save(out / "image.png")


def source_picture(size: int) -> Image.Image:
    """A fixed picture with smooth gradients, hard edges and saturated
    colour, so the encoder sees structure rather than noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    rgb = np.stack([x, y, 1.0 - 0.5 * (x + y)], axis=-1)
    rgb[size // 4: size // 2, size // 4: 3 * size // 4] = [0.9, 0.2, 0.1]
    disc = (x - 0.7) ** 2 + (y - 0.7) ** 2 < 0.03
    rgb[disc] = [0.1, 0.3, 0.95]
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def img2img_cases(root, base_config, components) -> None:
    pipe = StableDiffusionImg2ImgPipeline(**components, safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    source = source_picture(SIZE)
    for name, (cls, steps, guidance, strength) in IMG2IMG_CASES.items():
        pipe.scheduler = cls.from_config(base_config)
        module = __import__(cls.__module__, fromlist=["randn_tensor"])
        final = {}

        def keep_latents(_pipe, _i, _t, kwargs):
            final["latents"] = kwargs["latents"].detach().clone()
            return kwargs

        with NoiseRecorder(vae_module, img2img_module, module) as rec, torch.no_grad():
            result = pipe(
                PROMPT,
                image=source,
                strength=strength,
                negative_prompt=NEGATIVE,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=torch.Generator("cpu").manual_seed(11),
                output_type="np",
                callback_on_step_end=keep_latents,
            )
        out = root / "tests/fixtures/parity" / f"img2img-{name}"
        out.mkdir(parents=True)
        source.save(out / "init.png")
        np.save(out / "noise.npy", np.stack(rec.draws))
        save_outcome(out, final, result)
        t_start = steps - min(int(steps * strength), steps)
        ran = [float(t) for t in pipe.scheduler.timesteps[t_start:]]
        case = {
            "scheduler": name,
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "steps": steps,
            "guidance": guidance,
            "strength": strength,
            "width": SIZE,
            "height": SIZE,
            "timesteps": ran,
            "noise_draws": len(rec.draws),
        }
        (out / "case.json").write_text(json.dumps(case, indent=2) + "\n")
        print(f"img2img {name}: strength {strength}, {len(ran)} of {steps} steps, "
              f"{len(rec.draws)} noise draws, timesteps {ran}")


def main() -> None:
    root = repo_root()
    pipe = StableDiffusionPipeline.from_pretrained(root / "models/.cache/tiny-sd-torch", safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    base_config = pipe.scheduler.config
    out_root = root / "tests/fixtures/parity"
    if out_root.exists():
        shutil.rmtree(out_root)
    f = pipe.vae_scale_factor
    for index, (name, (cls, steps, guidance)) in enumerate(CASES.items()):
        pipe.scheduler = cls.from_config(base_config)
        module = __import__(cls.__module__, fromlist=["randn_tensor"])
        gen = torch.Generator("cpu").manual_seed(1000 + index)
        init = torch.randn((1, 4, SIZE // f, SIZE // f), generator=gen, dtype=torch.float32)
        final = {}

        def keep_latents(_pipe, _i, _t, kwargs):
            final["latents"] = kwargs["latents"].detach().clone()
            return kwargs

        with NoiseRecorder(module) as rec, torch.no_grad():
            result = pipe(
                PROMPT,
                negative_prompt=NEGATIVE,
                num_inference_steps=steps,
                guidance_scale=guidance,
                height=SIZE,
                width=SIZE,
                latents=init.clone(),
                generator=torch.Generator("cpu").manual_seed(7),
                output_type="np",
                callback_on_step_end=keep_latents,
            )
        out = out_root / name
        out.mkdir(parents=True)
        np.save(out / "init_latents.npy", init.numpy())
        if rec.draws:
            np.save(out / "step_noise.npy", np.stack(rec.draws))
        save_outcome(out, final, result)
        case = {
            "scheduler": name,
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "steps": steps,
            "guidance": guidance,
            "width": SIZE,
            "height": SIZE,
            "timesteps": [float(t) for t in pipe.scheduler.timesteps],
            "noise_draws": len(rec.draws),
        }
        (out / "case.json").write_text(json.dumps(case, indent=2) + "\n")
        print(f"{name}: {steps} steps, {len(rec.draws)} noise draws, timesteps {case['timesteps']}")
    img2img_cases(root, base_config, {k: v for k, v in pipe.components.items()
                                      if k not in ("safety_checker", "feature_extractor")})


if __name__ == "__main__":
    main()
