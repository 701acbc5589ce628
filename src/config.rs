//! `/etc/pocket-studio/config.toml`: every key optional, defaults in one place.
//!
//! Unknown keys are an error that names them (a typo must not silently fall
//! back to a default). The committed `systemd/config.example.toml` lists every
//! key with its default and is parsed in a test, so it cannot go stale.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::Precision;
use crate::error::{Error, Result};
use crate::pipeline::output::OutputKind;
use crate::store::Limits;

/// Where the service looks when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/pocket-studio/config.toml";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Text-to-image bundle folder.
    pub model: PathBuf,
    /// Upscaler bundle folder (for `output = "4k"`).
    pub upscaler: PathBuf,
    /// Gallery folder.
    pub images_dir: PathBuf,
    /// Job journal and keys live here.
    pub state_dir: PathBuf,
    /// Jobs accepted but not finished, at most.
    pub max_queue: usize,
    /// Cores one network call and the tiled stages use; 0 = all cores.
    pub threads: usize,
    /// `4k` or `native`.
    pub output: String,
    /// How the networks compute.
    pub engine: EngineConfig,
    /// Gallery quota and free-space reserve.
    pub gallery: GalleryConfig,
    /// Touch UI.
    pub ui: UiConfig,
    /// V4L2 camera.
    pub camera: CameraConfig,
    /// Watermark and C2PA.
    pub provenance: ProvenanceConfig,
}

/// `[engine]`: how the networks compute.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// `auto` (f16 where the CPU does half-precision arithmetic, such as the
    /// boards' Cortex-A76 and A55; else f32), `f32` or `f16`.
    pub precision: Precision,
}

/// `[gallery]`: what the image folder may hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GalleryConfig {
    /// Most images kept; 0 = no limit.
    pub max_images: usize,
    /// Most bytes of PNGs kept; 0 = no limit.
    pub max_bytes: u64,
    /// Free space (MiB) that must remain after any write.
    pub reserve_mb: u64,
}

/// `[ui]`: the touch UI on DRM/KMS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Draw the UI at all.
    pub enabled: bool,
    /// `auto` or a `/dev/dri/cardN` path.
    pub card: String,
    /// Screen rotation in degrees clockwise (0, 90, 180, 270).
    pub rotation: u32,
    /// `auto` (the output's preferred mode) or `WxH`.
    pub mode: String,
    /// `auto` (Liberation Sans, else DejaVu Sans, where the distribution puts
    /// it) or a TTF path.
    pub font: String,
    /// Input device files; empty = every device of udev seat0.
    pub input: Vec<String>,
    /// libinput touch calibration matrix (6 numbers), for panels whose
    /// touch layer is not aligned with the picture.
    pub touch_calibration: Option<[f32; 6]>,
}

/// `[camera]`: the V4L2 capture device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    /// `auto` (the first device that captures video in a format we read)
    /// or a `/dev/videoN` path.
    pub device: String,
    /// Frames dropped after the stream starts, while auto exposure and white
    /// balance settle.
    pub warmup_frames: u32,
}

/// `[provenance]`: what every image carries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvenanceConfig {
    /// Embed the invisible watermark.
    pub watermark: bool,
    /// Embed a signed C2PA manifest.
    pub c2pa: bool,
    /// Put the prompt into the C2PA manifest.
    pub include_prompt: bool,
    /// The watermark payload, 1 to 256 `0`/`1` characters; defaults to the
    /// 48 bits SDXL's reference code embeds. Put a device id here to tell
    /// devices apart.
    pub watermark_bits: String,
    /// A provisioned ES256 signing key (PKCS#8 PEM); with `certificate`,
    /// replaces the key the device makes for itself in `state_dir`.
    pub key: Option<PathBuf>,
    /// The provisioned key's certificate chain (PEM, signing certificate first).
    pub certificate: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: "/usr/share/pocket-studio/models/default".into(),
            upscaler: "/usr/share/pocket-studio/models/upscaler".into(),
            images_dir: "/var/lib/pocket-studio/images".into(),
            state_dir: "/var/lib/pocket-studio".into(),
            max_queue: 8,
            threads: 0,
            output: "4k".into(),
            engine: EngineConfig::default(),
            gallery: GalleryConfig::default(),
            ui: UiConfig::default(),
            camera: CameraConfig::default(),
            provenance: ProvenanceConfig::default(),
        }
    }
}

impl Default for GalleryConfig {
    fn default() -> Self {
        GalleryConfig {
            max_images: 0,
            max_bytes: 0,
            reserve_mb: 64,
        }
    }
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            card: "auto".into(),
            rotation: 0,
            mode: "auto".into(),
            font: "auto".into(),
            input: Vec::new(),
            touch_calibration: None,
        }
    }
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            device: "auto".into(),
            warmup_frames: 5,
        }
    }
}

impl Default for ProvenanceConfig {
    fn default() -> Self {
        ProvenanceConfig {
            watermark: true,
            c2pa: true,
            include_prompt: false,
            watermark_bits: crate::provenance::watermark::SDXL_BITS.into(),
            key: None,
            certificate: None,
        }
    }
}

impl Config {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|reason| Error::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// `--config FILE` when given, else the default path when it exists,
    /// else all defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) => Self::load(p),
            None if Path::new(DEFAULT_PATH).is_file() => Self::load(Path::new(DEFAULT_PATH)),
            None => Ok(Config::default()),
        }
    }

    /// Parse config text; the error names the bad key.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.message().to_string())?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> std::result::Result<(), String> {
        OutputKind::from_name(&self.output).map_err(|e| e.to_string())?;
        if self.max_queue == 0 || self.max_queue > 1024 {
            return Err(format!(
                "max_queue = {} is out of range 1..=1024",
                self.max_queue
            ));
        }
        if ![0, 90, 180, 270].contains(&self.ui.rotation) {
            return Err(format!(
                "ui.rotation = {} must be 0, 90, 180 or 270",
                self.ui.rotation
            ));
        }
        if self.ui.mode != "auto" && crate::ui::drm::parse_mode(&self.ui.mode).is_none() {
            return Err(format!(
                "ui.mode = {:?} must be \"auto\" or WIDTHxHEIGHT",
                self.ui.mode
            ));
        }
        crate::provenance::watermark::Payload::parse(&self.provenance.watermark_bits)
            .map_err(|e| format!("provenance.watermark_bits: {e}"))?;
        if self.provenance.key.is_some() != self.provenance.certificate.is_some() {
            return Err("provenance.key and provenance.certificate go together".into());
        }
        Ok(())
    }

    /// The output kind (checked at load).
    pub fn output_kind(&self) -> OutputKind {
        OutputKind::from_name(&self.output).unwrap_or_default()
    }

    /// Gallery limits from `[gallery]`.
    pub fn gallery_limits(&self) -> Limits {
        Limits {
            max_images: (self.gallery.max_images > 0).then_some(self.gallery.max_images),
            max_bytes: (self.gallery.max_bytes > 0).then_some(self.gallery.max_bytes),
            reserve_bytes: self.gallery.reserve_mb << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_example_is_exactly_the_defaults() {
        let text = include_str!("../systemd/config.example.toml");
        assert_eq!(Config::parse(text), Ok(Config::default()));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("max_queue = 4\nmax_qeue = 5\n").unwrap_err();
        assert!(err.contains("max_qeue"), "{err}");
        let err = Config::parse("[ui]\nrotaton = 90\n").unwrap_err();
        assert!(err.contains("rotaton"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(Config::parse("output = \"8k\"").unwrap_err().contains("8k"));
        let err = Config::parse("[provenance]\nwatermark_bits = \"10x\"").unwrap_err();
        assert!(err.contains("watermark_bits"), "{err}");
        let err = Config::parse("[provenance]\nkey = \"/k.pem\"").unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        assert!(
            Config::parse("max_queue = 0")
                .unwrap_err()
                .contains("max_queue")
        );
    }
}
