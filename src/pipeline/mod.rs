//! Prompt in, image out: the diffusion pipeline and its request types.
//!
//! Knows nothing of D-Bus, the UI or files on disk beyond the model bundle;
//! front-ends build a [`Request`], pass a [`Progress`] sink and a
//! [`CancelToken`], and get a [`Generated`] image back.

pub mod difference;
mod img2img;
pub mod noise;
pub mod output;
pub mod preview;
pub mod scheduler;
mod text2img;
pub mod tokenizer;
pub mod upscale;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::bundle::{Bundle, BundleInfo};
use crate::engine::Model;
use crate::error::{Error, Result};
use scheduler::{SchedulerConfig, SchedulerKind};
use tokenizer::ClipTokenizer;

/// Longest prompt accepted, in characters. Past 75 CLIP tokens text is dropped
/// anyway (and reported); this bound only refuses absurd input early.
pub const MAX_PROMPT_CHARS: usize = 2000;

/// Most denoising steps a request may ask for.
pub const MAX_STEPS: u32 = 150;

/// Largest guidance scale accepted.
pub const MAX_GUIDANCE: f32 = 30.0;

/// What a user asks for; `None` fields take the bundle's defaults.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// What to draw.
    pub prompt: String,
    /// What to steer away from (used only with guidance > 1).
    pub negative_prompt: String,
    /// Seed of the default noise source.
    pub seed: u64,
    /// Denoising steps (1..=150).
    pub steps: Option<u32>,
    /// Classifier-free guidance scale; ≤ 1 skips the unconditional pass.
    pub guidance: Option<f32>,
    /// Scheduler; `None` uses the bundle's `scheduler_config.json`.
    pub scheduler: Option<SchedulerKind>,
    /// Width in pixels, a multiple of 8.
    pub width: Option<u32>,
    /// Height in pixels, a multiple of 8.
    pub height: Option<u32>,
    /// Initial latents `[1, C, h, w]` used as diffusers' `latents=` (they are
    /// scaled by the scheduler's initial sigma); replace the seeded draw.
    pub init_latents: Option<Vec<f32>>,
    /// Start from this picture instead of pure noise (image-to-image).
    pub init: Option<InitImage>,
}

/// The source of an image-to-image request.
#[derive(Debug, Clone, PartialEq)]
pub struct InitImage {
    /// Any size: it is centre-cropped to the output's aspect and resampled.
    /// Shared, so planning a job never copies a camera frame.
    pub image: Arc<Image>,
    /// How much of the source to repaint, in (0, 1]: 1 keeps only its
    /// composition's faintest trace, 0.3 keeps most of it.
    pub strength: f32,
}

/// Strength used when an image-to-image request names none (diffusers'
/// default).
pub const DEFAULT_STRENGTH: f32 = 0.8;

/// A request with every default filled in and every value checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Denoising steps.
    pub steps: u32,
    /// Guidance scale.
    pub guidance: f32,
    /// Scheduler.
    pub scheduler: SchedulerKind,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Image-to-image strength; `None` for text to image.
    pub strength: Option<f32>,
}

/// Coarse phases of a job, as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Tokenizer and text encoder.
    Encoding,
    /// The UNet loop.
    Denoising,
    /// The VAE decoder.
    Decoding,
    /// Learned upscaling and the exact-size resample.
    Upscaling,
    /// Encoding and writing the PNG.
    Saving,
}

impl Stage {
    /// The name used in D-Bus properties and progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Encoding => "encoding",
            Stage::Denoising => "denoising",
            Stage::Decoding => "decoding",
            Stage::Upscaling => "upscaling",
            Stage::Saving => "saving",
        }
    }
}

/// Receives progress; implementations must be cheap (called once per step).
pub trait Progress {
    /// A new stage began.
    fn stage(&mut self, stage: Stage);
    /// Denoising step `step` of `steps` finished (1-based).
    fn step(&mut self, step: usize, steps: usize);
    /// Upscaler tile `done` of `total` finished (all passes counted).
    fn tile(&mut self, done: usize, total: usize) {
        let _ = (done, total);
    }
    /// The latents after a step, `[channels, height, width]`, for previews.
    /// Called once per step after [`Progress::step`]; ignore it by default.
    fn latents(&mut self, latents: &[f32], channels: usize, height: usize, width: usize) {
        let _ = (latents, channels, height, width);
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&mut self, _: Stage) {}
    fn step(&mut self, _: usize, _: usize) {}
}

/// Shared flag a front-end sets to stop a job between steps.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the job to stop at the next step boundary.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once cancelled, for `?` at step boundaries.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// An 8-bit RGB image, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// `width * height * 3` bytes, RGB interleaved.
    pub rgb: Vec<u8>,
}

impl Image {
    /// PSNR of `other` against this image, in dB over 8-bit RGB (infinite
    /// when identical); `None` when the sizes differ or the image is empty.
    pub fn psnr(&self, other: &Image) -> Option<f64> {
        if (self.width, self.height) != (other.width, other.height)
            || self.rgb.len() != other.rgb.len()
            || self.rgb.is_empty()
        {
            return None;
        }
        let squared: f64 = self
            .rgb
            .iter()
            .zip(&other.rgb)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
        let mse = squared / self.rgb.len() as f64;
        Some(if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (255.0 * 255.0 / mse).log10()
        })
    }
}

/// Wall time spent in each part of a run, for benchmarks and logs.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Tokenizing both prompts.
    pub tokenize: Duration,
    /// Text encoder calls.
    pub text_encoder: Duration,
    /// Each UNet call (one per step; CFG halves run as one batch).
    pub unet: Vec<Duration>,
    /// Scheduler arithmetic and guidance mixing, all steps.
    pub scheduler: Duration,
    /// Image-to-image: fitting and VAE-encoding the source, adding noise.
    pub vae_encode: Duration,
    /// VAE decoder call.
    pub vae_decode: Duration,
    /// Latents to RGB8 conversion.
    pub to_rgb: Duration,
    /// The whole run.
    pub total: Duration,
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The decoded image at the requested size.
    pub image: Image,
    /// Final latents `[1, C, h, w]` before decoding.
    pub latents: Vec<f32>,
    /// The values actually used.
    pub settings: Settings,
    /// Prompt text dropped past 75 tokens (empty when none).
    pub dropped_prompt: String,
    /// Where the time went.
    pub timings: Timings,
    /// Image-to-image: the source as the model saw it (cropped and resampled
    /// to the generation size).
    pub source: Option<Image>,
}

/// A loaded text-to-image bundle, ready to run many requests.
pub struct Pipeline {
    bundle: Bundle,
    tokenizer: ClipTokenizer,
    scheduler_config: SchedulerConfig,
    text_encoder: Model,
    unet: Model,
    vae_decoder: Model,
    /// Loaded on the first image-to-image request: most jobs never need it.
    vae_encoder: std::sync::OnceLock<Model>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("bundle", &self.bundle.info().name)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Load every network of a bundle (once; keep the pipeline), each checked
    /// against the bundle's manifest as it is parsed.
    pub fn load(bundle: Bundle) -> Result<Self> {
        let tokenizer = ClipTokenizer::load(&bundle.file("tokenizer"))?;
        let scheduler_config: SchedulerConfig =
            crate::bundle::read_json(&bundle.file("scheduler/scheduler_config.json"))?;
        // Parsed side by side: parsing is single-threaded and takes seconds.
        let (text_encoder, unet, vae_decoder) = std::thread::scope(|scope| {
            let load = |rel: &'static str, stage: &'static str| {
                let path = bundle.file(rel);
                let sha256 = bundle.sha256(rel);
                move || Model::load_checked(&path, stage, sha256)
            };
            let text_encoder = scope.spawn(load("text_encoder/model.onnx", "text encoder"));
            let vae_decoder = scope.spawn(load("vae_decoder/model.onnx", "vae decoder"));
            let unet = load("unet/model.onnx", "unet")();
            let joined = |job: std::thread::ScopedJoinHandle<'_, Result<Model>>| {
                job.join().unwrap_or_else(|_| {
                    Err(Error::Inference {
                        stage: "load",
                        reason: "model parsing thread panicked".into(),
                    })
                })
            };
            (joined(text_encoder), unet, joined(vae_decoder))
        });
        let (text_encoder, unet, vae_decoder) = (text_encoder?, unet?, vae_decoder?);
        Ok(Pipeline {
            bundle,
            tokenizer,
            scheduler_config,
            text_encoder,
            unet,
            vae_decoder,
            vae_encoder: std::sync::OnceLock::new(),
        })
    }

    /// The VAE encoder, loaded once on first use.
    fn vae_encoder(&self) -> Result<&Model> {
        if let Some(model) = self.vae_encoder.get() {
            return Ok(model);
        }
        let path = self.bundle.file("vae_encoder/model.onnx");
        if !path.exists() {
            return Err(Error::invalid(
                "init_image",
                format!(
                    "model {:?} has no vae_encoder, so it cannot start from an image",
                    self.info().name
                ),
            ));
        }
        // Read long after the bundle was opened: checked as it is parsed.
        let sha256 = self.bundle.sha256("vae_encoder/model.onnx");
        let model = Model::load_checked(&path, "vae encoder", sha256)?;
        Ok(self.vae_encoder.get_or_init(|| model))
    }

    /// Compute every loaded network in `precision` from its next call on
    /// (`Auto` resolved for this CPU); a VAE encoder loaded later, by the
    /// first image-to-image job, takes the process's
    /// ([`crate::engine::set_precision`]).
    pub fn set_precision(&mut self, precision: crate::engine::Precision) {
        let models = [
            &mut self.text_encoder,
            &mut self.unet,
            &mut self.vae_decoder,
        ];
        for model in models.into_iter().chain(self.vae_encoder.get_mut()) {
            model.set_precision(precision);
        }
    }

    /// Facts about the loaded bundle.
    pub fn info(&self) -> &BundleInfo {
        self.bundle.info()
    }

    /// The loaded bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Multiply-adds of the last UNet call (batch 2 with guidance), for the
    /// benchmark's GFLOP/s.
    pub fn unet_multiply_adds(&self) -> Option<u64> {
        self.unet.last_call_multiply_adds()
    }

    /// The bundle's tokenizer.
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// Fill in defaults and check every value; errors name the field.
    pub fn resolve(&self, request: &Request) -> Result<Settings> {
        let info = self.info();
        let steps = request.steps.unwrap_or(info.default_steps);
        let guidance = request.guidance.unwrap_or(info.default_guidance);
        check_request_values(
            &request.prompt,
            &request.negative_prompt,
            Some(steps),
            Some(guidance),
        )?;
        let scheduler = match request.scheduler {
            Some(kind) => kind,
            None => match &info.default_scheduler {
                Some(name) => SchedulerKind::from_name(name)?,
                None => self.scheduler_config.default_kind().ok_or_else(|| {
                    Error::invalid(
                        "scheduler",
                        format!(
                            "the bundle's scheduler {:?} is not supported; name one",
                            self.scheduler_config.class_name.as_deref().unwrap_or("?")
                        ),
                    )
                })?,
            },
        };
        let width = request.width.unwrap_or(info.native_width);
        let height = request.height.unwrap_or(info.native_height);
        check_side("width", width, info.max_width, info.size_multiple)?;
        check_side("height", height, info.max_height, info.size_multiple)?;
        if let Some(latents) = &request.init_latents {
            let expected = self.latent_len(width, height);
            if latents.len() != expected {
                return Err(Error::invalid(
                    "latents",
                    format!(
                        "have {} values; {width}x{height} needs [1, {}, {}, {}] = {expected}",
                        latents.len(),
                        info.latent_channels,
                        height / info.vae_scale_factor,
                        width / info.vae_scale_factor
                    ),
                ));
            }
        }
        let strength = match &request.init {
            Some(init) => Some(check_strength(init.strength, steps)?),
            None => None,
        };
        // Build once to surface scheduler config problems before any work.
        scheduler.build(&self.scheduler_config, steps as usize)?;
        Ok(Settings {
            steps,
            guidance,
            scheduler,
            width,
            height,
            strength,
        })
    }

    /// Values in one latent tensor for an image of this size.
    pub fn latent_len(&self, width: u32, height: u32) -> usize {
        let info = self.info();
        let f = info.vae_scale_factor;
        info.latent_channels * (width / f) as usize * (height / f) as usize
    }
}

/// The checks that need no model: prompt lengths and the steps and guidance
/// ranges. Shared by [`Pipeline::resolve`] and the Studio, which must refuse
/// a job before it is queued, where no pipeline is at hand.
pub fn check_request_values(
    prompt: &str,
    negative_prompt: &str,
    steps: Option<u32>,
    guidance: Option<f32>,
) -> Result<()> {
    if prompt.trim().is_empty() {
        return Err(Error::invalid("prompt", "must not be empty"));
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(Error::invalid(
            "prompt",
            format!("is {chars} characters; at most {MAX_PROMPT_CHARS} are accepted"),
        ));
    }
    if negative_prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(Error::invalid(
            "negative_prompt",
            format!("at most {MAX_PROMPT_CHARS} characters are accepted"),
        ));
    }
    if let Some(steps) = steps.filter(|s| !(1..=MAX_STEPS).contains(s)) {
        return Err(Error::invalid(
            "steps",
            format!("{steps} is out of range 1..={MAX_STEPS}"),
        ));
    }
    if let Some(g) = guidance.filter(|g| !g.is_finite() || !(0.0..=MAX_GUIDANCE).contains(g)) {
        return Err(Error::invalid(
            "guidance",
            format!("{g} is out of range 0..={MAX_GUIDANCE}"),
        ));
    }
    Ok(())
}

/// Strength must lie in (0, 1] and leave at least one of `steps` to run.
pub fn check_strength(strength: f32, steps: u32) -> Result<f32> {
    if !strength.is_finite() || strength <= 0.0 || strength > 1.0 {
        return Err(Error::invalid(
            "strength",
            format!("{strength} is out of range (0, 1]"),
        ));
    }
    if img2img::start_step(steps, strength).is_none() {
        return Err(Error::invalid(
            "strength",
            format!("{strength} of {steps} steps leaves no step to run; raise either"),
        ));
    }
    Ok(strength)
}

fn check_side(key: &'static str, value: u32, max: u32, multiple: u32) -> Result<()> {
    if value == 0 || !value.is_multiple_of(multiple) {
        return Err(Error::invalid(
            key,
            format!("{value} is not a positive multiple of {multiple}"),
        ));
    }
    if value > max {
        return Err(Error::invalid(
            key,
            format!("{value} exceeds this model's limit of {max}"),
        ));
    }
    Ok(())
}
