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
    /// PSNR of the second decoded image against the first, in dB over 8-bit
    /// RGB (infinite when identical).
    pub psnr_db: f64,
}

impl Difference {
    /// Compare `other` with `reference`; `None` when their sizes differ.
    pub fn between(reference: &Generated, other: &Generated) -> Option<Difference> {
        let (a, b) = (&reference.image, &other.image);
        if reference.latents.len() != other.latents.len()
            || (a.width, a.height) != (b.width, b.height)
            || a.rgb.len() != b.rgb.len()
            || a.rgb.is_empty()
        {
            return None;
        }
        let latents_max_abs = reference
            .latents
            .iter()
            .zip(&other.latents)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let latents_scale = reference.latents.iter().fold(0f32, |m, x| m.max(x.abs()));
        let squared: f64 = a
            .rgb
            .iter()
            .zip(&b.rgb)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
        let mse = squared / a.rgb.len() as f64;
        let psnr_db = if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (255.0 * 255.0 / mse).log10()
        };
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
