//! Latent Consistency Model sampling (diffusers' `LCMScheduler`): each step
//! jumps to a denoised estimate, then re-noises to the next timestep.

use super::ddim::split_prediction;
use super::{ClassDefaults, Prediction, Scheduler, SchedulerConfig};
use crate::error::{Error, Result};
use crate::pipeline::noise::NoiseSource;

const DEFAULTS: ClassDefaults = ClassDefaults {
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    timestep_spacing: "leading",
};

/// diffusers' LCMScheduler.
#[derive(Debug, Clone)]
pub struct Lcm {
    timesteps: Vec<f32>,
    steps_at: Vec<usize>,
    alphas_cumprod: Vec<f32>,
    timestep_scaling: f32,
    clip: Option<f32>,
    prediction: Prediction,
    noise: Vec<f32>,
}

impl Lcm {
    /// Set up for `steps` steps from a bundle's scheduler config.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        config.refuse_unsupported()?;
        let train = config.train_steps();
        let original = config.original_inference_steps.unwrap_or(50);
        if original == 0 || original > train {
            return Err(super::unsupported(
                "original_inference_steps",
                &original.to_string(),
            ));
        }
        if steps > original {
            return Err(Error::invalid(
                "steps",
                format!("LCM allows at most {original} steps (original_inference_steps)"),
            ));
        }
        let k = train / original;
        let origin: Vec<usize> = (1..=original).rev().map(|i| i * k - 1).collect();
        // np.linspace(0, len, num=steps, endpoint=False), floored.
        let stride = origin.len() as f64 / steps as f64;
        let steps_at: Vec<usize> = (0..steps)
            .map(|i| origin[(i as f64 * stride).floor() as usize])
            .collect();
        let clip = config
            .clip_sample
            .unwrap_or(false)
            .then(|| config.clip_sample_range.unwrap_or(1.0));
        Ok(Lcm {
            timesteps: steps_at.iter().map(|&t| t as f32).collect(),
            steps_at,
            alphas_cumprod: config.alphas_cumprod(&DEFAULTS)?,
            timestep_scaling: config.timestep_scaling.unwrap_or(10.0),
            clip,
            prediction: config.prediction()?,
            noise: Vec::new(),
        })
    }
}

impl Scheduler for Lcm {
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    fn add_noise(&self, sample: &mut [f32], noise: &[f32], index: usize) {
        let alpha = self.alphas_cumprod[self.steps_at[index]];
        super::add_noise_at_alpha(alpha, sample, noise);
    }

    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
    ) -> Result<()> {
        let t = self.steps_at[index];
        let prev = self.steps_at.get(index + 1).copied().unwrap_or(t);
        let alpha_t = self.alphas_cumprod[t];
        let alpha_prev = self.alphas_cumprod[prev];
        let (alpha_sqrt, beta_sqrt) = (alpha_t.sqrt(), (1.0 - alpha_t).sqrt());
        let scaled = t as f32 * self.timestep_scaling;
        let c_skip = 0.25 / (scaled * scaled + 0.25);
        let c_out = scaled / (scaled * scaled + 0.25).sqrt();
        let last = index + 1 == self.steps_at.len();
        if !last {
            self.noise.resize(sample.len(), 0.0);
            noise.fill(&mut self.noise)?;
        }
        let (prev_alpha_sqrt, prev_beta_sqrt) = (alpha_prev.sqrt(), (1.0 - alpha_prev).sqrt());
        for (i, (x, &out)) in sample.iter_mut().zip(model_output).enumerate() {
            let (mut x0, _) = split_prediction(self.prediction, out, *x, alpha_sqrt, beta_sqrt);
            if let Some(range) = self.clip {
                x0 = x0.clamp(-range, range);
            }
            let denoised = c_out * x0 + c_skip * *x;
            *x = if last {
                denoised
            } else {
                prev_alpha_sqrt * denoised + prev_beta_sqrt * self.noise[i]
            };
        }
        Ok(())
    }
}
