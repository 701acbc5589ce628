//! One request to one saved image: generate, upscale to the output size,
//! save with metadata. The single path both the Studio's worker and the
//! in-process CLI take, so they can never drift apart.
//!
//! Everything that can be refused (bad values, no upscaler for 4K, no disk
//! space) is refused before any inference runs.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::pipeline::output::{Aspect, OutputKind, to_exact_size};
use crate::pipeline::upscale::Upscaler;
use crate::pipeline::{
    CancelToken, DEFAULT_STRENGTH, InitImage, Pipeline, Progress, Request, Settings, Stage, Timings,
};
use crate::provenance::Provenance;
use crate::store::{Entry, Gallery, ImageMeta, encode_png_bytes};
use crate::studio::JobSpec;
use crate::{SchedulerKind, SeededNoise};

/// The loaded models and the gallery they save into.
pub struct Producer {
    /// Text-to-image pipeline.
    pub pipeline: Pipeline,
    /// Upscaler for `4k` output, when loaded.
    pub upscaler: Option<Upscaler>,
    /// Where images go.
    pub gallery: Arc<Gallery>,
    /// Output kind for specs that do not name one.
    pub default_output: OutputKind,
    /// Watermark and manifest every image gets.
    pub provenance: Arc<Provenance>,
}

/// A checked request with every default filled in.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the pipeline will run.
    pub request: Request,
    /// Resolved generation values.
    pub settings: Settings,
    /// Output kind.
    pub output: OutputKind,
    /// Saved width and height.
    pub size: (u32, u32),
}

/// What a finished production made.
#[derive(Debug, Clone)]
pub struct Produced {
    /// The gallery entry.
    pub entry: Entry,
    /// The PNG on disk.
    pub path: PathBuf,
    /// The generation values used.
    pub settings: Settings,
    /// Seed used.
    pub seed: u64,
    /// Saved width and height.
    pub size: (u32, u32),
    /// Where the generation time went.
    pub timings: Timings,
    /// Time spent upscaling and resampling to the saved size.
    pub upscale_time: std::time::Duration,
    /// Time spent watermarking.
    pub watermark_time: std::time::Duration,
    /// Time spent encoding the PNG and signing its manifest.
    pub encode_and_sign_time: std::time::Duration,
}

/// The refusal of a 4K job when no upscaler bundle is loaded.
pub fn no_upscaler() -> Error {
    Error::invalid("output", "4k needs an upscaler bundle, and none is loaded")
}

/// The sizes a job spec resolves to, before any model work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// 4K or native.
    pub output: OutputKind,
    /// What the model generates.
    pub generated: (u32, u32),
    /// What is saved.
    pub saved: (u32, u32),
}

impl Sizes {
    /// Resolve `spec` against the bundle and the default output kind; the
    /// Studio uses it to refuse a job at once when the disk cannot hold it.
    pub fn of(
        spec: &JobSpec,
        default_output: OutputKind,
        info: &crate::BundleInfo,
    ) -> Result<Self> {
        let output = match &spec.output {
            Some(name) => OutputKind::from_name(name)?,
            None => default_output,
        };
        let generated = match (spec.width, spec.height) {
            (Some(w), Some(h)) => (w, h),
            (w, h) => {
                let aspect = spec
                    .aspect
                    .as_deref()
                    .map(Aspect::from_name)
                    .transpose()?
                    .unwrap_or_default();
                let (gw, gh) = aspect.generation_size(info);
                (w.unwrap_or(gw), h.unwrap_or(gh))
            }
        };
        let saved = match output {
            OutputKind::FourK => Aspect::of(generated.0, generated.1).four_k(),
            OutputKind::Native => generated,
        };
        Ok(Sizes {
            output,
            generated,
            saved,
        })
    }
}

impl Producer {
    /// Check a spec and fill in every default, without running anything:
    /// the same refusals `produce` would give, before any model work.
    pub fn plan(&self, spec: &JobSpec, init_latents: Option<Vec<f32>>) -> Result<Plan> {
        let info = self.pipeline.info();
        let sizes = Sizes::of(spec, self.default_output, info)?;
        let (output, (width, height)) = (sizes.output, sizes.generated);
        let seed = spec.seed.unwrap_or(0);
        let request = Request {
            prompt: spec.prompt.clone(),
            negative_prompt: spec.negative_prompt.clone(),
            seed,
            steps: spec.steps,
            guidance: spec.guidance,
            scheduler: spec
                .scheduler
                .as_deref()
                .map(SchedulerKind::from_name)
                .transpose()?,
            width: Some(width),
            height: Some(height),
            init_latents,
            init: spec.init_image.as_ref().map(|image| InitImage {
                image: Arc::clone(image),
                strength: spec.strength.unwrap_or(DEFAULT_STRENGTH),
            }),
        };
        let settings = self.pipeline.resolve(&request)?;
        Ok(Plan {
            request,
            settings,
            output,
            size: sizes.saved,
        })
    }

    /// Generate, upscale and save one image. `init_latents` replace the
    /// seeded draw (diffusers' `latents=`); `before_save` learns the gallery
    /// id just before the PNG is written (the Studio journals it).
    pub fn produce(
        &self,
        spec: &JobSpec,
        init_latents: Option<Vec<f32>>,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
        before_save: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<Produced> {
        // A job's activations go back to the kernel when it ends, however it
        // ends, so an idle device does not hold them.
        struct ReleaseAtEnd;
        impl Drop for ReleaseAtEnd {
            fn drop(&mut self) {
                crate::engine::release_free_memory();
            }
        }
        let _release = ReleaseAtEnd;
        let Plan {
            request,
            settings,
            output,
            size: (final_w, final_h),
        } = self.plan(spec, init_latents)?;
        let info = self.pipeline.info();
        let seed = request.seed;
        let upscaler = match output {
            OutputKind::FourK => Some(self.upscaler.as_ref().ok_or_else(no_upscaler)?),
            OutputKind::Native => None,
        };
        self.gallery.check_room(final_w, final_h)?;

        let generated =
            self.pipeline
                .run(&request, &mut SeededNoise::new(seed), progress, cancel)?;
        let mut image = generated.image;
        let started = std::time::Instant::now();
        if let Some(upscaler) = upscaler {
            progress.stage(Stage::Upscaling);
            image = to_exact_size(
                image,
                final_w,
                final_h,
                upscaler,
                &mut |done, total| progress.tile(done, total),
                cancel,
            )?;
        }
        let upscale_time = started.elapsed();
        cancel.check()?;
        progress.stage(Stage::Saving);
        let started = std::time::Instant::now();
        let watermark = self.provenance.watermark(&mut image);
        let watermark_time = started.elapsed();
        let meta = ImageMeta {
            prompt: request.prompt.clone(),
            negative_prompt: request.negative_prompt.clone(),
            seed,
            steps: settings.steps,
            scheduler: settings.scheduler.name().into(),
            guidance: settings.guidance,
            generated_width: settings.width,
            generated_height: settings.height,
            model: info.name.clone(),
            model_sha256: info
                .unet_sha256
                .clone()
                .unwrap_or_else(|| "unverified".into()),
            upscaler: upscaler.map(|u| u.manifest().name.clone()),
            upscaler_sha256: upscaler.map(|u| u.sha256().to_string()),
            output: output.name().into(),
            source: spec.source.clone().filter(|_| settings.strength.is_some()),
            strength: settings.strength,
            software: format!("pocket-studio {}", crate::VERSION),
            watermark,
            c2pa: self.provenance.c2pa_state().into(),
        };
        let id = self.gallery.new_id(&meta, &image);
        before_save(&id)?;
        if let Some(source) = &generated.source {
            self.gallery.save_source(&id, source)?;
        }
        let started = std::time::Instant::now();
        let png = encode_png_bytes(&image, &meta.text_chunks(image.width, image.height))?;
        let png = self.provenance.seal(png, &format!("{id}.png"), &meta)?;
        let encode_and_sign_time = started.elapsed();
        log::info!(
            "watermark {} ms ({}), PNG and C2PA {} ms ({})",
            watermark_time.as_millis(),
            meta.watermark,
            encode_and_sign_time.as_millis(),
            meta.c2pa
        );
        let entry = self.gallery.save_encoded(&id, &png)?;
        let path = self.gallery.path_of(&entry.id)?;
        Ok(Produced {
            entry,
            path,
            settings,
            seed,
            size: (image.width, image.height),
            timings: generated.timings,
            upscale_time,
            watermark_time,
            encode_and_sign_time,
        })
    }
}
