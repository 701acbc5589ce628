//! How far two generations of the same request are apart: what f16
//! arithmetic (or any other change of the engine) costs against f32, in the
//! two numbers `docs/benchmarks.md` reports.

use super::Generated;

/// The gap between two generations of one request and seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// Largest absolute difference of the final latents.
    pub latents_max_abs: f32,
    /// Largest absolute value of the first generation's latents (the scale
    /// the difference is read against).
    pub latents_scale: f32,
    /// PSNR of the second decoded image against the first
    /// ([`super::Image::psnr`]).
    pub psnr_db: f64,
}

impl Difference {
    /// Compare `other` with `reference`; `None` when their sizes differ.
    pub fn between(reference: &Generated, other: &Generated) -> Option<Difference> {
        if reference.latents.len() != other.latents.len() {
            return None;
        }
        let psnr_db = reference.image.psnr(&other.image)?;
        let latents_max_abs = reference
            .latents
            .iter()
            .zip(&other.latents)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let latents_scale = reference.latents.iter().fold(0f32, |m, x| m.max(x.abs()));
        Some(Difference {
            latents_max_abs,
            latents_scale,
            psnr_db,
        })
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "latents max abs difference {:.4} (values up to {:.2}), image PSNR {:.1} dB",
            self.latents_max_abs, self.latents_scale, self.psnr_db
        )
    }
}
