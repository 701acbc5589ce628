//! Euler (diffusers' `EulerDiscreteScheduler`, no churn): one model call and
//! one first-order ODE step per timestep.

use super::{
    ClassDefaults, Prediction, Scheduler, SchedulerConfig, interp_index, leading, np_linspace,
    sigmas_from_alphas, trailing, unsupported,
};
use crate::error::Result;
use crate::pipeline::noise::NoiseSource;

const DEFAULTS: ClassDefaults = ClassDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: "linspace",
};

/// Timesteps and sigmas shared by Euler and Euler ancestral (same set-up in
/// diffusers).
#[derive(Debug, Clone)]
pub(crate) struct SigmaSchedule {
    pub timesteps: Vec<f32>,
    /// One per timestep plus a final 0.
    pub sigmas: Vec<f32>,
    pub init_noise_sigma: f32,
    pub prediction: Prediction,
}

impl SigmaSchedule {
    pub(crate) fn new(config: &SchedulerConfig, steps: usize, d: &ClassDefaults) -> Result<Self> {
        config.refuse_unsupported()?;
        if let Some(t) = config
            .interpolation_type
            .as_deref()
            .filter(|t| *t != "linear")
        {
            return Err(unsupported("interpolation_type", t));
        }
        if let Some(t) = config.final_sigmas_type.as_deref().filter(|t| *t != "zero") {
            return Err(unsupported("final_sigmas_type", t));
        }
        let train = config.train_steps();
        let spacing = config.spacing(d);
        let timesteps: Vec<f32> = match spacing {
            "linspace" => np_linspace(0.0, (train - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|t| t as f32)
                .collect(),
            "leading" => leading(steps, train / steps, config.offset())
                .into_iter()
                .map(|t| t as f32)
                .collect(),
            "trailing" => trailing(train, train as f64 / steps as f64)
                .into_iter()
                .map(|t| t as f32)
                .collect(),
            other => return Err(unsupported("timestep_spacing", other)),
        };
        let all_sigmas = sigmas_from_alphas(&config.alphas_cumprod(d)?);
        let mut sigmas: Vec<f32> = timesteps
            .iter()
            .map(|&t| interp_index(f64::from(t), &all_sigmas) as f32)
            .collect();
        sigmas.push(0.0);
        let max_sigma = sigmas.iter().copied().fold(0.0f32, f32::max);
        let init_noise_sigma = match spacing {
            "linspace" | "trailing" => max_sigma,
            _ => (max_sigma * max_sigma + 1.0).sqrt(),
        };
        Ok(SigmaSchedule {
            timesteps,
            sigmas,
            init_noise_sigma,
            prediction: config.prediction()?,
        })
    }

    /// diffusers' `scale_model_input`: divide by sqrt(sigma^2 + 1).
    pub(crate) fn scale(&self, sample: &mut [f32], index: usize) {
        let sigma = self.sigmas[index];
        let denom = (sigma * sigma + 1.0).sqrt();
        sample.iter_mut().for_each(|x| *x /= denom);
    }

    /// diffusers' sigma-space `add_noise`: `x + noise * sigma`.
    pub(crate) fn add_noise(&self, sample: &mut [f32], noise: &[f32], index: usize) {
        let sigma = self.sigmas[index];
        for (x, &n) in sample.iter_mut().zip(noise) {
            *x += n * sigma;
        }
    }

    /// The model's estimate of the clean latents at noise level `sigma`.
    pub(crate) fn predict_x0(&self, out: f32, sample: f32, sigma: f32) -> f32 {
        match self.prediction {
            Prediction::Epsilon => sample - sigma * out,
            Prediction::Velocity => {
                out * (-sigma / (sigma * sigma + 1.0).sqrt()) + sample / (sigma * sigma + 1.0)
            }
            Prediction::Sample => out,
        }
    }
}

/// diffusers' EulerDiscreteScheduler with `s_churn = 0`.
#[derive(Debug, Clone)]
pub struct Euler {
    schedule: SigmaSchedule,
}

impl Euler {
    /// Set up for `steps` steps from a bundle's scheduler config.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        Ok(Euler {
            schedule: SigmaSchedule::new(config, steps, &DEFAULTS)?,
        })
    }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f32] {
        &self.schedule.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        self.schedule.init_noise_sigma
    }

    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        self.schedule.scale(sample, index);
    }

    fn add_noise(&self, sample: &mut [f32], noise: &[f32], index: usize) {
        self.schedule.add_noise(sample, noise, index);
    }

    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        _noise: &mut dyn NoiseSource,
    ) -> Result<()> {
        let sigma = self.schedule.sigmas[index];
        let dt = self.schedule.sigmas[index + 1] - sigma;
        for (x, &out) in sample.iter_mut().zip(model_output) {
            let x0 = self.schedule.predict_x0(out, *x, sigma);
            let derivative = (*x - x0) / sigma;
            *x += derivative * dt;
        }
        Ok(())
    }
}
