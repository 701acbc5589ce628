//! DDIM (diffusers' `DDIMScheduler`) with eta = 0, as the SD pipelines call it:
//! deterministic, no noise drawn.

use super::{
    ClassDefaults, Prediction, Scheduler, SchedulerConfig, leading, np_linspace, trailing,
    unsupported,
};
use crate::error::{Error, Result};
use crate::pipeline::noise::NoiseSource;

const DEFAULTS: ClassDefaults = ClassDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: "leading",
};

/// Integer timesteps for the alpha-indexed schedulers (DDIM and DPM++), from
/// `count` points over `[0, last)`; `ratio_div` is the divisor of "leading".
pub(crate) fn integer_timesteps(
    spacing: &str,
    train: usize,
    last: usize,
    steps: usize,
    offset: usize,
) -> Result<Vec<usize>> {
    Ok(match spacing {
        "linspace" => np_linspace(0.0, (last - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(|t| t.round_ties_even() as usize)
            .collect(),
        "leading" => leading(steps, last / steps, offset)
            .into_iter()
            .map(|t| t as usize)
            .collect(),
        "trailing" => trailing(last, train as f64 / steps as f64)
            .into_iter()
            .map(|t| t as usize)
            .collect(),
        other => return Err(unsupported("timestep_spacing", other)),
    })
}

/// The clean-latent and noise estimates from a model output at `alpha_prod_t`.
pub(crate) fn split_prediction(
    prediction: Prediction,
    out: f32,
    sample: f32,
    alpha_sqrt: f32,
    beta_sqrt: f32,
) -> (f32, f32) {
    match prediction {
        Prediction::Epsilon => ((sample - beta_sqrt * out) / alpha_sqrt, out),
        Prediction::Sample => (out, (sample - alpha_sqrt * out) / beta_sqrt),
        Prediction::Velocity => (
            alpha_sqrt * sample - beta_sqrt * out,
            alpha_sqrt * out + beta_sqrt * sample,
        ),
    }
}

/// diffusers' DDIMScheduler, eta = 0.
#[derive(Debug, Clone)]
pub struct Ddim {
    timesteps: Vec<f32>,
    steps_at: Vec<usize>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    stride: usize,
    clip: Option<f32>,
    prediction: Prediction,
}

impl Ddim {
    /// Set up for `steps` steps from a bundle's scheduler config.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        config.refuse_unsupported()?;
        let train = config.train_steps();
        if steps > train {
            return Err(Error::invalid(
                "steps",
                format!("DDIM allows at most {train} steps"),
            ));
        }
        let alphas_cumprod = config.alphas_cumprod(&DEFAULTS)?;
        let steps_at = integer_timesteps(
            config.spacing(&DEFAULTS),
            train,
            train,
            steps,
            config.offset(),
        )?;
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let clip = config
            .clip_sample
            .unwrap_or(true)
            .then(|| config.clip_sample_range.unwrap_or(1.0));
        Ok(Ddim {
            timesteps: steps_at.iter().map(|&t| t as f32).collect(),
            steps_at,
            alphas_cumprod,
            final_alpha_cumprod,
            stride: train / steps,
            clip,
            prediction: config.prediction()?,
        })
    }
}

impl Scheduler for Ddim {
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
        _noise: &mut dyn NoiseSource,
    ) -> Result<()> {
        let t = self.steps_at[index];
        let alpha_t = *self.alphas_cumprod.get(t).ok_or_else(|| {
            Error::invalid("steps", format!("timestep {t} is outside the schedule"))
        })?;
        let alpha_prev = t
            .checked_sub(self.stride)
            .and_then(|p| self.alphas_cumprod.get(p).copied())
            .unwrap_or(self.final_alpha_cumprod);
        let beta_sqrt = (1.0 - alpha_t).sqrt();
        let alpha_sqrt = alpha_t.sqrt();
        let direction = (1.0 - alpha_prev - 0.0).sqrt();
        let alpha_prev_sqrt = alpha_prev.sqrt();
        for (x, &out) in sample.iter_mut().zip(model_output) {
            let (mut x0, eps) = split_prediction(self.prediction, out, *x, alpha_sqrt, beta_sqrt);
            if let Some(range) = self.clip {
                x0 = x0.clamp(-range, range);
            }
            *x = alpha_prev_sqrt * x0 + direction * eps;
        }
        Ok(())
    }
}
