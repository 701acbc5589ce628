//! Image to image ("restyle this photo"): encode a source image with the
//! bundle's VAE encoder, noise it to the level that `strength` picks, and
//! denoise from there. Follows diffusers' StableDiffusionImg2ImgPipeline
//! number for number (its `get_timesteps`, `prepare_latents` and the latent
//! distribution's `sample`).

use super::noise::NoiseSource;
use super::output::resample_exact;
use super::scheduler::Scheduler;
use super::{Image, InitImage, Pipeline, Settings};
use crate::engine::Tensor;
use crate::error::{Error, Result};

/// diffusers clamps the encoder's log-variance to this range before sampling.
const LOGVAR_RANGE: (f32, f32) = (-30.0, 20.0);

/// The first step image-to-image runs, as diffusers' `get_timesteps`:
/// `steps - min(floor(steps * strength), steps)`. `None` when no step is left.
pub fn start_step(steps: u32, strength: f32) -> Option<usize> {
    let steps = steps as usize;
    let kept = ((steps as f64 * f64::from(strength)) as usize).min(steps);
    (kept > 0).then_some(steps - kept)
}

impl Pipeline {
    /// The noised latents denoising starts from, the step index to start
    /// at, and the source as fitted to the generation size. Draws the latent distribution's sample first, then the added noise,
    /// in diffusers' order.
    pub(super) fn image_latents(
        &self,
        init: &InitImage,
        settings: &Settings,
        scheduler: &dyn Scheduler,
        noise: &mut dyn NoiseSource,
    ) -> Result<(Vec<f32>, usize, Image)> {
        let start = start_step(settings.steps, init.strength).ok_or_else(|| {
            Error::invalid(
                "strength",
                "leaves no denoising step; raise it or the steps",
            )
        })?;
        let source = resample_exact(&init.image, settings.width, settings.height)?;
        let mut latents = self.encode_image(&source, noise)?;
        let mut added = vec![0.0f32; latents.len()];
        noise.fill(&mut added)?;
        scheduler.add_noise(&mut latents, &added, start);
        Ok((latents, start, source))
    }

    /// VAE-encode an image of the request's size and sample its latent
    /// distribution, scaled by the bundle's latent scaling factor.
    pub fn encode_image(&self, image: &Image, noise: &mut dyn NoiseSource) -> Result<Vec<f32>> {
        let info = self.info();
        let (width, height) = (image.width as usize, image.height as usize);
        let plane = width * height;
        let mut pixels = vec![0.0f32; plane * 3];
        for (index, rgb) in image.rgb.chunks_exact(3).enumerate() {
            for (channel, &value) in rgb.iter().enumerate() {
                pixels[channel * plane + index] = 2.0 * (f32::from(value) / 255.0) - 1.0;
            }
        }
        let encoder = self.vae_encoder()?;
        let parameters = encoder
            .run(&[&Tensor::f32(vec![1, 3, height, width], pixels)])?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Inference {
                stage: "vae encoder",
                reason: "no output".into(),
            })?;
        let f = info.vae_scale_factor as usize;
        let expected = [1, 2 * info.latent_channels, height / f, width / f];
        if parameters.shape != expected {
            return Err(Error::Inference {
                stage: "vae encoder",
                reason: format!(
                    "expected latent parameters {expected:?}, got {:?}",
                    parameters.shape
                ),
            });
        }
        let parameters = parameters.into_f32();
        let (mean, logvar) = parameters.split_at(parameters.len() / 2);
        let mut latents = vec![0.0f32; mean.len()];
        noise.fill(&mut latents)?;
        for ((x, &m), &lv) in latents.iter_mut().zip(mean).zip(logvar) {
            let std = (0.5 * lv.clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1)).exp();
            *x = (m + std * *x) * info.latent_scaling;
        }
        Ok(latents)
    }
}

#[cfg(test)]
mod tests {
    use super::start_step;

    #[test]
    fn strength_picks_the_first_step_as_diffusers_does() {
        assert_eq!(start_step(10, 1.0), Some(0));
        assert_eq!(start_step(10, 0.75), Some(3));
        assert_eq!(start_step(5, 0.5), Some(3));
        assert_eq!(start_step(4, 0.2), None);
        assert_eq!(start_step(4, 0.25), Some(3));
    }
}
