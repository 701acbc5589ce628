//! Where randomness comes from: seeded initial latents and per-step noise.
//!
//! The default [`SeededNoise`] is ChaCha20 plus a Box–Muller transform computed
//! with the pure-Rust `libm`, so the same seed gives bit-identical latents on
//! x86_64 and aarch64 (no platform libm, no SIMD-dependent rounding).
//! [`RecordedNoise`] replays tensors recorded elsewhere (diffusers' torch
//! generator) so parity tests can compare step for step.

use std::collections::VecDeque;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// A stream of standard-normal values; each call fills the next tensor.
pub trait NoiseSource: Send {
    /// Fill `out` with the next `out.len()` draws.
    fn fill(&mut self, out: &mut [f32]) -> Result<()>;
}

/// Platform-independent Gaussian noise from a 64-bit seed.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    rng: ChaCha20Rng,
    spare: Option<f64>,
}

impl SeededNoise {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SeededNoise {
            rng: ChaCha20Rng::seed_from_u64(seed),
            spare: None,
        }
    }

    /// A uniform draw in (0, 1]: never 0, so its logarithm is finite.
    fn uniform(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64)
    }

    fn gaussian(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let radius = libm::sqrt(-2.0 * libm::log(self.uniform()));
        let angle = 2.0 * std::f64::consts::PI * self.uniform();
        self.spare = Some(radius * libm::sin(angle));
        radius * libm::cos(angle)
    }
}

impl NoiseSource for SeededNoise {
    fn fill(&mut self, out: &mut [f32]) -> Result<()> {
        for x in out {
            *x = self.gaussian() as f32;
        }
        Ok(())
    }
}

/// Replays recorded draws in order; a draw of the wrong size, or one more
/// than was recorded, is an error rather than a silent fallback.
#[derive(Debug, Clone, Default)]
pub struct RecordedNoise {
    draws: VecDeque<Vec<f32>>,
}

impl RecordedNoise {
    /// Draws in the order the scheduler will ask for them.
    pub fn new(draws: impl IntoIterator<Item = Vec<f32>>) -> Self {
        RecordedNoise {
            draws: draws.into_iter().collect(),
        }
    }

    /// Draws not yet used.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }
}

impl NoiseSource for RecordedNoise {
    fn fill(&mut self, out: &mut [f32]) -> Result<()> {
        let draw = self
            .draws
            .pop_front()
            .ok_or_else(|| Error::invalid("noise", "recorded noise is exhausted"))?;
        if draw.len() != out.len() {
            return Err(Error::invalid(
                "noise",
                format!(
                    "recorded draw has {} values, {} needed",
                    draw.len(),
                    out.len()
                ),
            ));
        }
        out.copy_from_slice(&draw);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_roughly_standard_normal() {
        let mut a = vec![0.0f32; 20_000];
        let mut b = vec![0.0f32; 20_000];
        SeededNoise::new(42).fill(&mut a).unwrap();
        SeededNoise::new(42).fill(&mut b).unwrap();
        assert_eq!(a, b);
        let mean = a.iter().map(|&x| f64::from(x)).sum::<f64>() / a.len() as f64;
        let var = a
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
        let mut c = vec![0.0f32; 16];
        SeededNoise::new(43).fill(&mut c).unwrap();
        assert_ne!(&a[..16], &c[..]);
    }

    #[test]
    fn recorded_noise_refuses_wrong_sizes_and_overdraw() {
        let mut noise = RecordedNoise::new([vec![1.0, 2.0]]);
        let mut out = [0.0f32; 3];
        assert!(noise.fill(&mut out).is_err());
        let mut noise = RecordedNoise::new([vec![1.0, 2.0]]);
        let mut out = [0.0f32; 2];
        noise.fill(&mut out).unwrap();
        assert_eq!(out, [1.0, 2.0]);
        assert!(noise.fill(&mut out).is_err());
    }
}
