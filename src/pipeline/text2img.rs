//! Text to image: encode the prompts, run the UNet loop with classifier-free
//! guidance, decode with the VAE. Reads like diffusers' StableDiffusionPipeline
//! and must stay number-for-number with it.

use std::time::Instant;

use super::noise::NoiseSource;
use super::{CancelToken, Generated, Image, Pipeline, Progress, Request, Stage, Timings};
use crate::engine::Tensor;
use crate::error::{Error, Result};

impl Pipeline {
    /// Generate one image. Cancellation is honoured between steps.
    pub fn run(
        &self,
        request: &Request,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<Generated> {
        let started = Instant::now();
        let settings = self.resolve(request)?;
        let info = self.info();
        let mut timings = Timings::default();
        let cfg = settings.guidance > 1.0;
        let f = info.vae_scale_factor as usize;
        let latent_shape = vec![
            1,
            info.latent_channels,
            settings.height as usize / f,
            settings.width as usize / f,
        ];

        progress.stage(Stage::Encoding);
        let tick = Instant::now();
        let cond = self.tokenizer.encode(&request.prompt)?;
        if cond.dropped_tokens > 0 {
            log::warn!(
                "prompt truncated to 75 tokens; dropped {} tokens: {:?}",
                cond.dropped_tokens,
                cond.dropped_text
            );
        }
        let uncond = if cfg {
            Some(self.tokenizer.encode(&request.negative_prompt)?)
        } else {
            None
        };
        timings.tokenize = tick.elapsed();
        let tick = Instant::now();
        let mut embeddings = Vec::new();
        for tokens in uncond.iter().chain(Some(&cond)) {
            embeddings.extend(self.encode_text(&tokens.ids)?);
        }
        let batch = if cfg { 2 } else { 1 };
        let hidden = embeddings.len() / (batch * super::tokenizer::CONTEXT_LENGTH);
        let embeddings = Tensor::f32(
            vec![batch, super::tokenizer::CONTEXT_LENGTH, hidden],
            embeddings,
        );
        timings.text_encoder = tick.elapsed();
        cancel.check()?;

        let mut scheduler = settings
            .scheduler
            .build(&self.scheduler_config, settings.steps as usize)?;
        let tick = Instant::now();
        let (mut latents, start, source) = match &request.init {
            Some(init) => {
                let (latents, start, source) =
                    self.image_latents(init, &settings, scheduler.as_ref(), noise)?;
                timings.vae_encode = tick.elapsed();
                (latents, start, Some(source))
            }
            None => {
                let mut drawn = match &request.init_latents {
                    Some(given) => given.clone(),
                    None => {
                        let mut drawn = vec![0.0f32; latent_shape.iter().product()];
                        noise.fill(&mut drawn)?;
                        drawn
                    }
                };
                let sigma = scheduler.init_noise_sigma();
                drawn.iter_mut().for_each(|x| *x *= sigma);
                (drawn, 0, None)
            }
        };
        cancel.check()?;

        progress.stage(Stage::Denoising);
        let timesteps = scheduler.timesteps().to_vec();
        let to_run = timesteps.len() - start;
        let per_image = latents.len();
        let mut unet_input = Vec::with_capacity(per_image * batch);
        for (index, &t) in timesteps.iter().enumerate().skip(start) {
            let tick = Instant::now();
            unet_input.clear();
            for _ in 0..batch {
                unet_input.extend_from_slice(&latents);
            }
            scheduler.scale_model_input(&mut unet_input, index);
            let mut shape = latent_shape.clone();
            shape[0] = batch;
            let sample = Tensor::f32(shape, std::mem::take(&mut unet_input));
            let timestep = Tensor::f32(vec![1], vec![t]);
            timings.scheduler += tick.elapsed();

            let tick = Instant::now();
            let out = self
                .unet
                .run(&[&sample, &timestep, &embeddings])?
                .into_iter()
                .next()
                .ok_or_else(|| Error::Inference {
                    stage: "unet",
                    reason: "no output".into(),
                })?
                .into_f32();
            timings.unet.push(tick.elapsed());

            let tick = Instant::now();
            let guided = if cfg {
                let (uncond_out, text_out) = out.split_at(per_image);
                uncond_out
                    .iter()
                    .zip(text_out)
                    .map(|(&u, &c)| u + settings.guidance * (c - u))
                    .collect()
            } else {
                out
            };
            scheduler.step(&guided, index, &mut latents, noise)?;
            timings.scheduler += tick.elapsed();
            progress.step(index + 1 - start, to_run);
            progress.latents(&latents, latent_shape[1], latent_shape[2], latent_shape[3]);
            cancel.check()?;
        }

        progress.stage(Stage::Decoding);
        let tick = Instant::now();
        // What the denoising loop freed (its mid-sized activations in the
        // heap, its large ones kept) cannot all serve the decoder's larger
        // activations; handing it back first lowers the job's peak.
        crate::engine::release_free_memory();
        let scaled: Vec<f32> = latents.iter().map(|&x| x / info.latent_scaling).collect();
        let decoded = self
            .vae_decoder
            .run(&[&Tensor::f32(latent_shape, scaled)])?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Inference {
                stage: "vae decoder",
                reason: "no output".into(),
            })?;
        timings.vae_decode = tick.elapsed();
        let tick = Instant::now();
        let image = to_rgb8(decoded)?;
        timings.to_rgb = tick.elapsed();
        timings.total = started.elapsed();
        Ok(Generated {
            image,
            latents,
            settings,
            dropped_prompt: cond.dropped_text,
            timings,
            source,
        })
    }

    /// Run the text encoder on 77 ids; returns `[77, hidden]` values.
    pub fn encode_text(&self, ids: &[i64]) -> Result<Vec<f32>> {
        let input = Tensor::i64(vec![1, ids.len()], ids.to_vec());
        self.text_encoder
            .run(&[&input])?
            .into_iter()
            .next()
            .map(Tensor::into_f32)
            .ok_or_else(|| Error::Inference {
                stage: "text encoder",
                reason: "no output".into(),
            })
    }
}

/// diffusers' postprocess: `(x / 2 + 0.5).clamp(0, 1)`, then numpy's
/// `(x * 255).round()` (half to even), NCHW to interleaved RGB.
fn to_rgb8(decoded: Tensor) -> Result<Image> {
    let shape = decoded.shape.clone();
    if shape.len() != 4 || shape[0] != 1 || shape[1] != 3 {
        return Err(Error::Inference {
            stage: "vae decoder",
            reason: format!("expected output [1, 3, H, W], got {shape:?}"),
        });
    }
    let (height, width) = (shape[2], shape[3]);
    let plane = height * width;
    let values = decoded.into_f32();
    let mut rgb = vec![0u8; plane * 3];
    for (channel, chunk) in values.chunks_exact(plane).enumerate() {
        for (pixel, &v) in chunk.iter().enumerate() {
            let unit = (v / 2.0 + 0.5).clamp(0.0, 1.0);
            rgb[pixel * 3 + channel] = (unit * 255.0).round_ties_even() as u8;
        }
    }
    Ok(Image {
        width: width as u32,
        height: height as u32,
        rgb,
    })
}
