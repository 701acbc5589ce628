//! Provenance on every image: an invisible watermark in the pixels and a
//! signed C2PA manifest in the file. Runs between upscaling and saving; the
//! config switches both (on by default) and every image's metadata records
//! what was done, including a watermark skipped on a small image.

pub mod c2pa;
pub mod identity;
pub mod report;
pub mod watermark;

use std::path::Path;

use crate::config::ProvenanceConfig;
use crate::error::{Error, Result};
use crate::pipeline::Image;
use crate::store::ImageMeta;
use c2pa::ManifestSigner;
use identity::Identity;
use watermark::{Embedded, Payload};

/// Metadata value for a switched-off step.
pub const OFF: &str = "off";
/// Metadata value for a signed image.
pub const SIGNED: &str = "signed";

/// What each saved image gets; built once when models load.
#[derive(Debug)]
pub struct Provenance {
    payload: Option<Payload>,
    signer: Option<ManifestSigner>,
    anchor_pem: Option<String>,
}

impl Provenance {
    /// From `[provenance]`; makes the device's signing identity in
    /// `state_dir` on first use. A bad provisioned key is an error here, at
    /// start, not on the first image.
    pub fn from_config(config: &ProvenanceConfig, state_dir: &Path) -> Result<Self> {
        let payload = if config.watermark {
            Some(
                Payload::parse(&config.watermark_bits)
                    .map_err(|reason| Error::invalid("watermark_bits", reason))?,
            )
        } else {
            None
        };
        let (signer, anchor_pem) = if config.c2pa {
            let identity = match (&config.key, &config.certificate) {
                (Some(key), Some(chain)) => Identity::provisioned(key, chain)?,
                _ => Identity::device(state_dir)?,
            };
            log::info!("C2PA manifests signed with the {}", identity.origin);
            (
                Some(ManifestSigner::new(&identity, config.include_prompt)?),
                identity.anchor_pem,
            )
        } else {
            (None, None)
        };
        Ok(Provenance {
            payload,
            signer,
            anchor_pem,
        })
    }

    /// Neither watermark nor manifest (tests, tools).
    pub fn off() -> Self {
        Provenance {
            payload: None,
            signer: None,
            anchor_pem: None,
        }
    }

    /// Mark the pixels; returns the `watermark` metadata value.
    pub fn watermark(&self, image: &mut Image) -> String {
        let Some(payload) = &self.payload else {
            return OFF.into();
        };
        match watermark::embed(image, payload) {
            Embedded::Marked => format!("dwtDct {}", payload.to_bit_string()),
            Embedded::TooSmall => format!(
                "skipped: {}x{} is under {} pixels",
                image.width,
                image.height,
                watermark::MIN_PIXELS
            ),
        }
    }

    /// The `c2pa` metadata value images get.
    pub fn c2pa_state(&self) -> &'static str {
        if self.signer.is_some() { SIGNED } else { OFF }
    }

    /// Embed the signed manifest into an encoded PNG (unchanged when off).
    pub fn seal(&self, png: Vec<u8>, title: &str, meta: &ImageMeta) -> Result<Vec<u8>> {
        match &self.signer {
            Some(signer) => signer.sign_png(&png, title, meta),
            None => Ok(png),
        }
    }

    /// This device's trust anchor (PEM), for reading its own manifests.
    pub fn anchor_pem(&self) -> Option<&str> {
        self.anchor_pem.as_deref()
    }
}
