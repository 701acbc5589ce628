//! Model bundles: a folder in the diffusers ONNX layout plus our manifest.
//!
//! A bundle is trusted only after every file the manifest lists matches its
//! sha256; a folder exported by optimum (no manifest) still loads, with a
//! warning that nothing vouches for it. This module reads and checks files; it
//! never runs a network (that is `engine`'s job). The networks themselves are
//! checked by the engine as it parses them (`is_network`): hashing them here
//! first would read 2 GB twice and add the hash to every start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, ModelFault, Result};

/// Our manifest's file name inside a bundle folder.
pub const MANIFEST: &str = "pocket-studio.toml";

/// Files a text-to-image bundle must hold, relative to its folder.
pub const TEXT_TO_IMAGE_FILES: &[&str] = &[
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "text_encoder/model.onnx",
    "unet/model.onnx",
    "vae_decoder/model.onnx",
    "scheduler/scheduler_config.json",
];

/// Whether a bundle file is a network, which [`Bundle::open`] leaves to the
/// engine to verify while parsing (`engine::Model::load_checked`, one read of
/// the file for both) instead of hashing it up front.
fn is_network(rel: &str) -> bool {
    rel.ends_with(".onnx")
}

/// `pocket-studio.toml`, as written by the scripts in `models/export/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Human name shown in `Models` and written into every image.
    pub name: String,
    /// `text-to-image` or `upscaler`.
    pub kind: String,
    /// Licence and attribution of the weights.
    pub licence: String,
    /// Where the weights came from (a script, a wheel, a model card).
    pub source: String,
    /// The size the model was trained at; requests default to it.
    pub native: Size,
    /// The largest size a request may ask for.
    pub limits: Option<Limits>,
    /// Defaults for requests that leave these out.
    pub defaults: Option<Defaults>,
    /// sha256 (hex) of every file, keyed by path relative to the bundle.
    pub sha256: BTreeMap<String, String>,
}

/// A width and height in pixels.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

/// The largest image a bundle accepts (memory grows with the square of it).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Widest request in pixels.
    pub max_width: u32,
    /// Tallest request in pixels.
    pub max_height: u32,
}

/// Request defaults a bundle recommends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Scheduler name (`euler`, `euler-a`, `ddim`, `lcm`, `dpmpp-2m`).
    pub scheduler: Option<String>,
    /// Number of denoising steps.
    pub steps: Option<u32>,
    /// Classifier-free guidance scale.
    pub guidance: Option<f32>,
}

/// What the pipeline needs to know about a text-to-image bundle.
#[derive(Debug, Clone)]
pub struct BundleInfo {
    /// Manifest name, or the folder name for an unverified bundle.
    pub name: String,
    /// Whether a manifest vouched for every file.
    pub verified: bool,
    /// Native width in pixels.
    pub native_width: u32,
    /// Native height in pixels.
    pub native_height: u32,
    /// Largest width a request may ask for.
    pub max_width: u32,
    /// Largest height a request may ask for.
    pub max_height: u32,
    /// Pixels per latent cell along each axis (8 for SD).
    pub vae_scale_factor: u32,
    /// Image sides must be multiples of this: the VAE factor times the UNet's
    /// total downsampling (64 for SD1.5), and at least 8.
    pub size_multiple: u32,
    /// The VAE's latent scaling factor (0.18215 for SD1.x).
    pub latent_scaling: f32,
    /// Latent channels the UNet expects.
    pub latent_channels: usize,
    /// Scheduler named by the manifest, if any (else `scheduler_config.json`'s).
    pub default_scheduler: Option<String>,
    /// Default number of steps.
    pub default_steps: u32,
    /// Default guidance scale.
    pub default_guidance: f32,
    /// Hex sha256 of the UNet file (recorded in image metadata).
    pub unet_sha256: Option<String>,
}

/// An opened, verified bundle folder.
#[derive(Debug, Clone)]
pub struct Bundle {
    root: PathBuf,
    info: BundleInfo,
    /// The manifest's sha256 per relative path (empty when unverified).
    sha256: BTreeMap<String, String>,
}

impl Bundle {
    /// Open a text-to-image bundle: every file it needs must exist, and every
    /// file the manifest lists must match its checksum, the networks when
    /// they are parsed (a `Pipeline::load` right after) and the rest now.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(Error::model(&root, ModelFault::Missing));
        }
        for rel in TEXT_TO_IMAGE_FILES {
            let path = root.join(rel);
            if !path.is_file() {
                return Err(Error::model(path, ModelFault::Missing));
            }
        }
        let manifest_path = root.join(MANIFEST);
        let manifest = if manifest_path.is_file() {
            let manifest: Manifest = read_toml(&manifest_path)?;
            verify_files(&root, &manifest)?;
            Some(manifest)
        } else {
            log::warn!(
                "{} has no {MANIFEST}: its files are unverified",
                root.display()
            );
            None
        };
        let info = describe(&root, manifest.as_ref())?;
        let sha256 = manifest.map(|m| m.sha256).unwrap_or_default();
        log::info!(
            "bundle {} ({}x{} native, {})",
            info.name,
            info.native_width,
            info.native_height,
            if info.verified {
                "verified"
            } else {
                "unverified"
            }
        );
        Ok(Bundle { root, info, sha256 })
    }

    /// The bundle's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file inside the bundle.
    pub fn file(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Facts the pipeline needs.
    pub fn info(&self) -> &BundleInfo {
        &self.info
    }

    /// The sha256 the manifest vouches for a file (relative path), so a file
    /// read again after `open` (a lazily loaded network, a plan made for
    /// new shapes) is checked again; `None` for an unverified bundle.
    pub fn sha256(&self, rel: &str) -> Option<&str> {
        self.sha256.get(rel).map(String::as_str)
    }
}

/// Parse a TOML file, naming it in the error.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::model(path, ModelFault::Unreadable(e)))?;
    toml::from_str(&text).map_err(|e| Error::model(path, ModelFault::Invalid(e.to_string())))
}

/// Parse a JSON file, naming it in the error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::model(path, ModelFault::Unreadable(e)))?;
    serde_json::from_str(&text).map_err(|e| Error::model(path, ModelFault::Invalid(e.to_string())))
}

/// Check a file against the sha256 a manifest vouches for; returns the
/// digest.
pub fn verify_file(path: &Path, expected: &str) -> Result<String> {
    let actual = sha256_file(path)?;
    check_digest(path, expected, actual)
}

/// Compare a digest (hex) with the one a manifest vouches for; returns it
/// when they match, else the error that names the file and both digests.
pub fn check_digest(path: &Path, expected: &str, actual: String) -> Result<String> {
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(Error::model(
            path,
            ModelFault::ChecksumMismatch {
                expected: expected.to_string(),
                actual,
            },
        ));
    }
    Ok(actual)
}

/// Hex sha256 of bytes already in memory (a mapped network file).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Open a bundle file, with the error that names it: missing or unreadable.
pub fn open_file(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| {
        let fault = if e.kind() == std::io::ErrorKind::NotFound {
            ModelFault::Missing
        } else {
            ModelFault::Unreadable(e)
        };
        Error::model(path, fault)
    })
}

/// Hex sha256 of a file, streamed so large UNets never sit in memory twice.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = open_file(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::model(path, ModelFault::Unreadable(e)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn verify_files(root: &Path, manifest: &Manifest) -> Result<()> {
    for rel in TEXT_TO_IMAGE_FILES {
        if !manifest.sha256.contains_key(*rel) {
            return Err(Error::model(
                root.join(rel),
                ModelFault::Invalid(format!("not listed in {MANIFEST}")),
            ));
        }
    }
    // Small files only (the engine hashes each network while parsing it),
    // one thread each: they are independent.
    let results: Vec<Result<String>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = manifest
            .sha256
            .iter()
            .filter(|(rel, _)| !is_network(rel))
            .map(|(rel, expected)| scope.spawn(move || verify_file(&root.join(rel), expected)))
            .collect();
        jobs.into_iter()
            .map(|job| {
                job.join().unwrap_or_else(|_| {
                    Err(Error::model(
                        root,
                        ModelFault::Invalid("checksum thread panicked".into()),
                    ))
                })
            })
            .collect()
    });
    results.into_iter().try_for_each(|r| r.map(|_| ()))
}

/// The parts of diffusers' `vae_decoder/config.json` we use.
#[derive(Deserialize)]
struct VaeConfig {
    #[serde(default)]
    block_out_channels: Vec<u32>,
    scaling_factor: Option<f32>,
}

/// The parts of diffusers' `unet/config.json` we use.
#[derive(Deserialize)]
struct UnetConfig {
    in_channels: Option<usize>,
    #[serde(default)]
    block_out_channels: Vec<u32>,
    sample_size: Option<u32>,
}

fn optional_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn describe(root: &Path, manifest: Option<&Manifest>) -> Result<BundleInfo> {
    let vae: Option<VaeConfig> = optional_json(&root.join("vae_decoder/config.json"))?;
    let unet: Option<UnetConfig> = optional_json(&root.join("unet/config.json"))?;
    let vae_scale_factor = vae
        .as_ref()
        .filter(|v| !v.block_out_channels.is_empty())
        .map(|v| 1u32 << (v.block_out_channels.len() - 1))
        .unwrap_or(8);
    let latent_scaling = vae
        .as_ref()
        .and_then(|v| v.scaling_factor)
        .unwrap_or(0.18215);
    let latent_channels = unet.as_ref().and_then(|u| u.in_channels).unwrap_or(4);
    let unet_levels = unet
        .as_ref()
        .map_or(4, |u| u.block_out_channels.len().max(1));
    let size_multiple = (vae_scale_factor << (unet_levels - 1)).max(8);
    let defaults = manifest.and_then(|m| m.defaults.clone());
    let (name, native_width, native_height) = match manifest {
        Some(m) => (m.name.clone(), m.native.width, m.native.height),
        None => {
            let side = unet.as_ref().and_then(|u| u.sample_size).unwrap_or(64) * vae_scale_factor;
            let name = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "unnamed".into());
            (name, side, side)
        }
    };
    let (max_width, max_height) = manifest
        .and_then(|m| m.limits)
        .map(|l| (l.max_width, l.max_height))
        .unwrap_or((native_width * 2, native_height * 2));
    Ok(BundleInfo {
        name,
        verified: manifest.is_some(),
        native_width,
        native_height,
        max_width,
        max_height,
        vae_scale_factor,
        size_multiple,
        latent_scaling,
        latent_channels,
        default_scheduler: defaults.as_ref().and_then(|d| d.scheduler.clone()),
        default_steps: defaults.as_ref().and_then(|d| d.steps).unwrap_or(25),
        default_guidance: defaults.as_ref().and_then(|d| d.guidance).unwrap_or(7.5),
        unet_sha256: manifest.and_then(|m| m.sha256.get("unet/model.onnx").cloned()),
    })
}
