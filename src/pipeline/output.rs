//! Output presets: from the model's native size to an exact print size.
//!
//! `4k` means 3840x2160 landscape, 2160x3840 portrait or 4096x4096 square.
//! Diffusion runs near the bundle's native pixel count at the preset's aspect;
//! the learned upscaler runs as many whole passes as fit, and a Lanczos
//! resample (fast_image_resize, SIMD) with a centred crop lands on the exact
//! size. Never stretches: the aspect ratio is kept by cropping.

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::upscale::Upscaler;
use super::{CancelToken, Image};
use crate::bundle::BundleInfo;
use crate::error::{Error, Result};

/// What size the saved image has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputKind {
    /// Exactly 4K for the aspect (needs an upscaler).
    #[default]
    FourK,
    /// The generated size, no upscaling.
    Native,
}

impl OutputKind {
    /// Parse `4k` or `native`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "4k" => Ok(OutputKind::FourK),
            "native" => Ok(OutputKind::Native),
            other => Err(Error::invalid(
                "output",
                format!("unknown output {other:?} (known: 4k, native)"),
            )),
        }
    }

    /// The name used in requests and metadata.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::FourK => "4k",
            OutputKind::Native => "native",
        }
    }
}

/// Picture orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aspect {
    /// 1:1.
    #[default]
    Square,
    /// 16:9, wider than tall.
    Landscape,
    /// 9:16, taller than wide.
    Portrait,
}

impl Aspect {
    /// Parse `square`, `landscape` or `portrait`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "square" => Ok(Aspect::Square),
            "landscape" => Ok(Aspect::Landscape),
            "portrait" => Ok(Aspect::Portrait),
            other => Err(Error::invalid(
                "aspect",
                format!("unknown aspect {other:?} (known: square, landscape, portrait)"),
            )),
        }
    }

    /// The aspect of a width and height.
    pub fn of(width: u32, height: u32) -> Self {
        match width.cmp(&height) {
            std::cmp::Ordering::Greater => Aspect::Landscape,
            std::cmp::Ordering::Less => Aspect::Portrait,
            std::cmp::Ordering::Equal => Aspect::Square,
        }
    }

    /// The exact 4K size for this aspect.
    pub fn four_k(self) -> (u32, u32) {
        match self {
            Aspect::Square => (4096, 4096),
            Aspect::Landscape => (3840, 2160),
            Aspect::Portrait => (2160, 3840),
        }
    }

    /// Generation size near the bundle's native pixel count at this aspect,
    /// in multiples the UNet accepts.
    pub fn generation_size(self, info: &BundleInfo) -> (u32, u32) {
        let area = f64::from(info.native_width) * f64::from(info.native_height);
        let (aw, ah) = match self {
            Aspect::Square => (1.0, 1.0),
            Aspect::Landscape => (16.0, 9.0),
            Aspect::Portrait => (9.0, 16.0),
        };
        let unit = f64::from(info.size_multiple);
        let side = |a: f64, b: f64| -> u32 {
            let exact = (area * a / b).sqrt();
            ((exact / unit).round().max(1.0) * unit) as u32
        };
        (side(aw, ah), side(ah, aw))
    }
}

/// Most learned passes: past two, the network mostly re-sharpens its own
/// output and costs 16x more per pass; a resample is better value.
pub const MAX_UPSCALER_PASSES: usize = 2;

/// Upscale `image` to exactly `width` x `height`: whole upscaler passes while
/// they do not overshoot (at most [`MAX_UPSCALER_PASSES`]), then a Lanczos
/// resample with a centred crop.
/// `progress(done, total)` counts tiles over all passes.
pub fn to_exact_size(
    image: Image,
    width: u32,
    height: u32,
    upscaler: &Upscaler,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &CancelToken,
) -> Result<Image> {
    let scale = upscaler.scale();
    let mut current = image;
    for _ in 0..MAX_UPSCALER_PASSES {
        if current.width >= width && current.height >= height {
            break;
        }
        current = upscaler.upscale(&current, progress, cancel)?;
        if current.width * scale > width || current.height * scale > height {
            break;
        }
    }
    cancel.check()?;
    resample_exact(&current, width, height)
}

/// Lanczos3 resample to exactly `width` x `height`, cropping the source to
/// the target's aspect around its centre.
pub fn resample_exact(image: &Image, width: u32, height: u32) -> Result<Image> {
    if image.width == width && image.height == height {
        return Ok(image.clone());
    }
    let fail = |e: String| Error::Inference {
        stage: "resample",
        reason: e,
    };
    let source = FirImage::from_vec_u8(
        image.width,
        image.height,
        image.rgb.clone(),
        PixelType::U8x3,
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut target = FirImage::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .fit_into_destination(Some((0.5, 0.5)));
    Resizer::new()
        .resize(&source, &mut target, &options)
        .map_err(|e| fail(e.to_string()))?;
    Ok(Image {
        width,
        height,
        rgb: target.into_vec(),
    })
}
