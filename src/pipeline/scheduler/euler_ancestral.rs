//! Euler ancestral (diffusers' `EulerAncestralDiscreteScheduler`): an Euler
//! step down to `sigma_down`, then fresh noise of size `sigma_up`.

use super::euler::SigmaSchedule;
use super::{ClassDefaults, Scheduler, SchedulerConfig};
use crate::error::Result;
use crate::pipeline::noise::NoiseSource;

const DEFAULTS: ClassDefaults = ClassDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: "linspace",
};

/// diffusers' EulerAncestralDiscreteScheduler.
#[derive(Debug, Clone)]
pub struct EulerAncestral {
    schedule: SigmaSchedule,
    noise: Vec<f32>,
}

impl EulerAncestral {
    /// Set up for `steps` steps from a bundle's scheduler config.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        Ok(EulerAncestral {
            schedule: SigmaSchedule::new(config, steps, &DEFAULTS)?,
            noise: Vec::new(),
        })
    }
}

impl Scheduler for EulerAncestral {
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
        noise: &mut dyn NoiseSource,
    ) -> Result<()> {
        let sigma_from = self.schedule.sigmas[index];
        let sigma_to = self.schedule.sigmas[index + 1];
        let sigma_up = (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
            / (sigma_from * sigma_from))
            .sqrt();
        let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).sqrt();
        let dt = sigma_down - sigma_from;
        self.noise.resize(sample.len(), 0.0);
        noise.fill(&mut self.noise)?;
        for ((x, &out), &n) in sample.iter_mut().zip(model_output).zip(&self.noise) {
            let x0 = self.schedule.predict_x0(out, *x, sigma_from);
            let derivative = (*x - x0) / sigma_from;
            *x = (*x + derivative * dt) + n * sigma_up;
        }
        Ok(())
    }
}
