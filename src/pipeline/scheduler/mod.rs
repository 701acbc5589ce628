//! Diffusion schedulers, number for number with diffusers.
//!
//! Each scheduler is a small struct built from a bundle's
//! `scheduler_config.json` that knows its `timesteps()` and how to `step()`
//! latents. The arithmetic mirrors diffusers' float32 tensor math (and its
//! float64 numpy set-up) so final latents agree to ~1e-5. Schedulers never run
//! a network and never draw randomness themselves: noise comes from the
//! caller's [`NoiseSource`].

mod ddim;
mod dpmpp_2m;
mod euler;
mod euler_ancestral;
mod lcm;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::pipeline::noise::NoiseSource;

pub use ddim::Ddim;
pub use dpmpp_2m::DpmPp2m;
pub use euler::Euler;
pub use euler_ancestral::EulerAncestral;
pub use lcm::Lcm;

/// The schedulers a request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// Euler (k-diffusion `sample_euler`), diffusers' EulerDiscreteScheduler.
    Euler,
    /// Euler ancestral: draws fresh noise every step.
    EulerAncestral,
    /// DDIM with eta = 0 (deterministic).
    Ddim,
    /// Latent Consistency Model sampling (few steps, guidance usually 1).
    Lcm,
    /// DPM-Solver++ 2M (multistep, second order).
    DpmPp2m,
}

impl SchedulerKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [SchedulerKind; 5] = [
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::Ddim,
        SchedulerKind::Lcm,
        SchedulerKind::DpmPp2m,
    ];

    /// The name used on the command line, in D-Bus requests and metadata.
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Euler => "euler",
            SchedulerKind::EulerAncestral => "euler-a",
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::Lcm => "lcm",
            SchedulerKind::DpmPp2m => "dpmpp-2m",
        }
    }

    /// Parse a user-facing name.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                Error::invalid(
                    "scheduler",
                    format!("unknown scheduler {name:?} (known: {})", known.join(", ")),
                )
            })
    }

    /// Map a diffusers class name (`_class_name` in scheduler_config.json).
    pub fn from_diffusers_class(class: &str) -> Option<Self> {
        Some(match class {
            "EulerDiscreteScheduler" => SchedulerKind::Euler,
            "EulerAncestralDiscreteScheduler" => SchedulerKind::EulerAncestral,
            "DDIMScheduler" => SchedulerKind::Ddim,
            "LCMScheduler" => SchedulerKind::Lcm,
            "DPMSolverMultistepScheduler" => SchedulerKind::DpmPp2m,
            _ => return None,
        })
    }

    /// Build this scheduler for `steps` inference steps.
    pub fn build(self, config: &SchedulerConfig, steps: usize) -> Result<Box<dyn Scheduler>> {
        if steps == 0 {
            return Err(Error::invalid("steps", "must be at least 1"));
        }
        Ok(match self {
            SchedulerKind::Euler => Box::new(Euler::new(config, steps)?),
            SchedulerKind::EulerAncestral => Box::new(EulerAncestral::new(config, steps)?),
            SchedulerKind::Ddim => Box::new(Ddim::new(config, steps)?),
            SchedulerKind::Lcm => Box::new(Lcm::new(config, steps)?),
            SchedulerKind::DpmPp2m => Box::new(DpmPp2m::new(config, steps)?),
        })
    }
}

/// What the denoising loop needs from a scheduler.
pub trait Scheduler: Send {
    /// The timestep values fed to the UNet, one per step, first to last.
    fn timesteps(&self) -> &[f32];

    /// Factor applied to the initial noise (diffusers' `init_noise_sigma`).
    fn init_noise_sigma(&self) -> f32;

    /// Scale the UNet input for step `index` (diffusers' `scale_model_input`).
    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        let _ = (sample, index);
    }

    /// Noise clean latents up to the level of step `index`, where
    /// image-to-image starts (diffusers' `add_noise` at `timesteps[index]`
    /// after `set_begin_index(index)`).
    fn add_noise(&self, sample: &mut [f32], noise: &[f32], index: usize);

    /// Advance `sample` by one step given the (guided) model output.
    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
    ) -> Result<()>;
}

/// `scheduler_config.json`: the keys our schedulers read. Missing keys take
/// the defaults of the diffusers class being built, as `from_config` does.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct SchedulerConfig {
    /// diffusers class that wrote the file; picks the default scheduler.
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Training diffusion steps (1000 for SD).
    pub num_train_timesteps: Option<usize>,
    /// First beta of the schedule.
    pub beta_start: Option<f64>,
    /// Last beta of the schedule.
    pub beta_end: Option<f64>,
    /// `linear`, `scaled_linear` or `squaredcos_cap_v2`.
    pub beta_schedule: Option<String>,
    /// Explicit betas, overriding the schedule.
    pub trained_betas: Option<Vec<f64>>,
    /// `epsilon`, `v_prediction` or `sample`.
    pub prediction_type: Option<String>,
    /// `leading`, `trailing` or `linspace`.
    pub timestep_spacing: Option<String>,
    /// Added to `leading` timesteps (1 for SD1.x).
    pub steps_offset: Option<usize>,
    /// DDIM/LCM: clamp the predicted x0.
    pub clip_sample: Option<bool>,
    /// Range of that clamp.
    pub clip_sample_range: Option<f32>,
    /// DDIM/LCM: use alpha = 1 past the last step.
    pub set_alpha_to_one: Option<bool>,
    /// LCM: the distillation schedule length.
    pub original_inference_steps: Option<usize>,
    /// LCM: boundary-condition timestep scaling.
    pub timestep_scaling: Option<f32>,
    /// Options we do not implement; refused when set.
    pub use_karras_sigmas: Option<bool>,
    /// Refused when set (see `use_karras_sigmas`).
    pub rescale_betas_zero_snr: Option<bool>,
    /// Refused when set (see `use_karras_sigmas`).
    pub thresholding: Option<bool>,
    /// Euler: `linear` only.
    pub interpolation_type: Option<String>,
    /// Euler/DPM: `zero` only.
    pub final_sigmas_type: Option<String>,
    /// DPM: `dpmsolver++` only.
    pub algorithm_type: Option<String>,
    /// DPM: 2 only (the "2M").
    pub solver_order: Option<usize>,
    /// DPM: `midpoint` only.
    pub solver_type: Option<String>,
}

/// A numeric per-class default, so each scheduler states its own.
pub(crate) struct ClassDefaults {
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: &'static str,
    pub timestep_spacing: &'static str,
}

impl SchedulerConfig {
    /// The scheduler the bundle was saved with, if we implement it.
    pub fn default_kind(&self) -> Option<SchedulerKind> {
        self.class_name
            .as_deref()
            .and_then(SchedulerKind::from_diffusers_class)
    }

    pub(crate) fn train_steps(&self) -> usize {
        self.num_train_timesteps.unwrap_or(1000)
    }

    pub(crate) fn spacing<'a>(&'a self, d: &'a ClassDefaults) -> &'a str {
        self.timestep_spacing
            .as_deref()
            .unwrap_or(d.timestep_spacing)
    }

    pub(crate) fn offset(&self) -> usize {
        self.steps_offset.unwrap_or(0)
    }

    pub(crate) fn prediction(&self) -> Result<Prediction> {
        match self.prediction_type.as_deref().unwrap_or("epsilon") {
            "epsilon" => Ok(Prediction::Epsilon),
            "v_prediction" => Ok(Prediction::Velocity),
            "sample" => Ok(Prediction::Sample),
            other => Err(unsupported("prediction_type", other)),
        }
    }

    /// Refuse options whose maths we do not carry, instead of silently
    /// producing a different image than diffusers would.
    pub(crate) fn refuse_unsupported(&self) -> Result<()> {
        if self.use_karras_sigmas == Some(true) {
            return Err(unsupported("use_karras_sigmas", "true"));
        }
        if self.rescale_betas_zero_snr == Some(true) {
            return Err(unsupported("rescale_betas_zero_snr", "true"));
        }
        if self.thresholding == Some(true) {
            return Err(unsupported("thresholding", "true"));
        }
        Ok(())
    }

    /// diffusers' `alphas_cumprod`, float32 values accumulated in float64 as
    /// torch's CPU cumprod does.
    pub(crate) fn alphas_cumprod(&self, d: &ClassDefaults) -> Result<Vec<f32>> {
        let n = self.train_steps();
        let betas: Vec<f32> = if let Some(b) = &self.trained_betas {
            b.iter().map(|&x| x as f32).collect()
        } else {
            let start = self.beta_start.unwrap_or(d.beta_start);
            let end = self.beta_end.unwrap_or(d.beta_end);
            match self.beta_schedule.as_deref().unwrap_or(d.beta_schedule) {
                "linear" => torch_linspace_f32(start as f32, end as f32, n),
                "scaled_linear" => torch_linspace_f32(start.sqrt() as f32, end.sqrt() as f32, n)
                    .into_iter()
                    .map(|b| b * b)
                    .collect(),
                "squaredcos_cap_v2" => squaredcos_betas(n),
                other => return Err(unsupported("beta_schedule", other)),
            }
        };
        let mut acc = 1.0f64;
        Ok(betas
            .iter()
            .map(|&b| {
                acc *= f64::from(1.0f32 - b);
                acc as f32
            })
            .collect())
    }
}

/// What the UNet was trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prediction {
    Epsilon,
    Velocity,
    Sample,
}

pub(crate) fn unsupported(key: &str, value: &str) -> Error {
    Error::invalid(
        "scheduler",
        format!("scheduler_config.json sets {key} = {value}, which this build does not support"),
    )
}

/// torch.linspace for float32 on CPU: step computed in float32, the first
/// half counted up from `start`, the second half down from `end`.
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// diffusers' `betas_for_alpha_bar` with the cosine schedule.
fn squaredcos_betas(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// numpy's `(np.arange(0, n) * ratio).round()[::-1] + offset`, the
/// "leading" spacing shared by every scheduler here.
pub(crate) fn leading(n: usize, ratio: usize, offset: usize) -> Vec<f64> {
    (0..n).rev().map(|i| (i * ratio + offset) as f64).collect()
}

/// numpy's `np.arange(train, 0, -ratio).round() - 1`, "trailing" spacing.
pub(crate) fn trailing(train: usize, ratio: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut i = 0usize;
    loop {
        let v = train as f64 - i as f64 * ratio;
        if v <= 0.0 {
            break;
        }
        out.push(v.round_ties_even() - 1.0);
        i += 1;
    }
    out
}

/// numpy's `np.linspace(start, stop, n)` in float64 (last value exact).
pub(crate) fn np_linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    v[n - 1] = stop;
    v
}

/// numpy's `np.interp(x, arange(len(fp)), fp)` for x inside the range.
pub(crate) fn interp_index(x: f64, fp: &[f32]) -> f64 {
    let last = fp.len() - 1;
    if x <= 0.0 {
        return f64::from(fp[0]);
    }
    if x >= last as f64 {
        return f64::from(fp[last]);
    }
    let j = x.floor() as usize;
    let slope = (f64::from(fp[j + 1]) - f64::from(fp[j])) / 1.0;
    slope * (x - j as f64) + f64::from(fp[j])
}

/// diffusers' DDPM-style `add_noise` (DDIM, LCM):
/// `sqrt(a_t) * x + sqrt(1 - a_t) * noise` in float32.
pub(crate) fn add_noise_at_alpha(alpha_cumprod: f32, sample: &mut [f32], noise: &[f32]) {
    let (signal, spread) = (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt());
    for (x, &n) in sample.iter_mut().zip(noise) {
        *x = signal * *x + spread * n;
    }
}

/// The noise levels `sqrt((1 - a) / a)` in float32, as diffusers computes
/// them from `alphas_cumprod`.
pub(crate) fn sigmas_from_alphas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod
        .iter()
        .map(|&a| ((1.0 - a) / a).sqrt())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_spacing_matches_numpy() {
        // np.arange(1000, 0, -1000/3).round() - 1 == [999, 666, 332]
        assert_eq!(trailing(1000, 1000.0 / 3.0), vec![999.0, 666.0, 332.0]);
    }

    #[test]
    fn linspace_hits_both_ends() {
        let v = torch_linspace_f32(0.1, 0.2, 5);
        assert_eq!(v[0], 0.1);
        assert_eq!(v[4], 0.2);
    }
}
