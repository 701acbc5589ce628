//! DPM-Solver++ 2M (diffusers' `DPMSolverMultistepScheduler`, order 2,
//! midpoint): reuses the previous step's x0 estimate for a second-order update.

use super::ddim::integer_timesteps;
use super::{
    ClassDefaults, Prediction, Scheduler, SchedulerConfig, interp_index, sigmas_from_alphas,
    unsupported,
};
use crate::error::Result;
use crate::pipeline::noise::NoiseSource;

const DEFAULTS: ClassDefaults = ClassDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: "linspace",
};

/// diffusers' DPMSolverMultistepScheduler as DPM++ 2M.
#[derive(Debug, Clone)]
pub struct DpmPp2m {
    timesteps: Vec<f32>,
    /// One per timestep plus a final 0.
    sigmas: Vec<f32>,
    prediction: Prediction,
    previous_x0: Option<Vec<f32>>,
    x0: Vec<f32>,
}

/// `(alpha_t, sigma_t, lambda_t)` for a k-diffusion sigma.
fn alpha_sigma_lambda(sigma: f32) -> (f32, f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha;
    (alpha, sigma_t, alpha.ln() - sigma_t.ln())
}

impl DpmPp2m {
    /// Set up for `steps` steps from a bundle's scheduler config.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        config.refuse_unsupported()?;
        let checks = [
            (
                "algorithm_type",
                config.algorithm_type.as_deref(),
                "dpmsolver++",
            ),
            ("solver_type", config.solver_type.as_deref(), "midpoint"),
            (
                "final_sigmas_type",
                config.final_sigmas_type.as_deref(),
                "zero",
            ),
        ];
        for (key, value, wanted) in checks {
            if let Some(v) = value.filter(|v| *v != wanted) {
                return Err(unsupported(key, v));
            }
        }
        if let Some(order) = config.solver_order.filter(|&o| o != 2) {
            return Err(unsupported("solver_order", &order.to_string()));
        }
        let train = config.train_steps();
        let spacing = config.spacing(&DEFAULTS);
        // diffusers schedules steps + 1 points and drops the last.
        let mut steps_at = if spacing == "trailing" {
            integer_timesteps(spacing, train, train, steps, config.offset())?
        } else {
            let mut v = integer_timesteps(spacing, train, train, steps + 1, config.offset())?;
            v.pop();
            v
        };
        steps_at.truncate(steps);
        let all_sigmas = sigmas_from_alphas(&config.alphas_cumprod(&DEFAULTS)?);
        let mut sigmas: Vec<f32> = steps_at
            .iter()
            .map(|&t| interp_index(t as f64, &all_sigmas) as f32)
            .collect();
        sigmas.push(0.0);
        Ok(DpmPp2m {
            timesteps: steps_at.iter().map(|&t| t as f32).collect(),
            sigmas,
            prediction: config.prediction()?,
            previous_x0: None,
            x0: Vec::new(),
        })
    }
}

impl Scheduler for DpmPp2m {
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    fn add_noise(&self, sample: &mut [f32], noise: &[f32], index: usize) {
        let (alpha, sigma, _) = alpha_sigma_lambda(self.sigmas[index]);
        for (x, &n) in sample.iter_mut().zip(noise) {
            *x = alpha * *x + sigma * n;
        }
    }

    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        _noise: &mut dyn NoiseSource,
    ) -> Result<()> {
        let (alpha_s0, sigma_s0, lambda_s0) = alpha_sigma_lambda(self.sigmas[index]);
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[index + 1]);
        self.x0.clear();
        self.x0.extend(
            sample
                .iter()
                .zip(model_output)
                .map(|(&x, &out)| match self.prediction {
                    Prediction::Epsilon => (x - sigma_s0 * out) / alpha_s0,
                    Prediction::Velocity => alpha_s0 * x - sigma_s0 * out,
                    Prediction::Sample => out,
                }),
        );
        let h = lambda_t - lambda_s0;
        let ratio = sigma_t / sigma_s0;
        let coeff = alpha_t * ((-h).exp() - 1.0);
        let last = index + 1 == self.timesteps.len();
        match self.previous_x0.as_ref().filter(|_| !last) {
            None => {
                for (x, &x0) in sample.iter_mut().zip(&self.x0) {
                    *x = ratio * *x - coeff * x0;
                }
            }
            Some(previous) => {
                let (_, _, lambda_s1) = alpha_sigma_lambda(self.sigmas[index - 1]);
                let r0 = (lambda_s0 - lambda_s1) / h;
                let half = 0.5 * coeff;
                for ((x, &m0), &m1) in sample.iter_mut().zip(&self.x0).zip(previous) {
                    let d1 = 1.0 / r0 * (m0 - m1);
                    *x = ratio * *x - coeff * m0 - half * d1;
                }
            }
        }
        let x0 = std::mem::take(&mut self.x0);
        self.x0 = self.previous_x0.replace(x0).unwrap_or_default();
        Ok(())
    }
}
