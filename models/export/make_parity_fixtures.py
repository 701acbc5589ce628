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
    StableDiffusionPipeline,
)
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
PROMPT = "a watercolor painting of a lighthouse at dawn, soft light"
NEGATIVE = "blurry, low quality"
SIZE = 64


class NoiseRecorder:
    """Wraps diffusers' randn_tensor inside a scheduler module and keeps a copy
    of every draw, in order."""

    def __init__(self, module):
        self.module = module
        self.original = module.randn_tensor
        self.draws = []

    def __enter__(self):
        def recording(*args, **kwargs):
            t = self.original(*args, **kwargs)
            self.draws.append(t.detach().cpu().numpy().astype(np.float32))
            return t

        self.module.randn_tensor = recording
        return self

    def __exit__(self, *exc):
        self.module.randn_tensor = self.original


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
        np.save(out / "final_latents.npy", final["latents"].numpy().astype(np.float32))
        pixels = (result.images[0] * 255).round().astype("uint8")
        Image.fromarray(pixels).save(out / "image.png")
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


if __name__ == "__main__":
    main()
