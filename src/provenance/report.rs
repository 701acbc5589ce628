//! Reading provenance back from a file: `pocket-studio inspect` and the
//! tests use this one function, so what users see is what is tested.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::c2pa::{ManifestReport, TRAINED_ALGORITHMIC_MEDIA, read_manifest};
use super::watermark::{self, Decoded, Payload};
use crate::error::{Error, Result};

/// Largest file `inspect` reads (a 4K PNG is about 25 MB).
const MAX_BYTES: u64 = 256 << 20;

/// Everything a file says about where it came from.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Pixels across and down.
    pub size: (u32, u32),
    /// The watermark read with the expected payload's length; `None` when
    /// the image is too small to carry one.
    pub watermark: Option<Decoded>,
    /// The payload looked for (the configured one).
    pub expected: Payload,
    /// The C2PA manifest, `None` when the file has none.
    pub manifest: Option<ManifestReport>,
    /// PNG text chunks (empty for JPEG).
    pub text: BTreeMap<String, String>,
}

/// Read a PNG or JPEG and check its watermark (for `expected`) and manifest
/// (trusting `anchors`, PEM).
pub fn inspect(path: &Path, expected: &Payload, anchors: Option<&str>) -> Result<Inspection> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if size > MAX_BYTES {
        return Err(Error::invalid(
            "file",
            format!(
                "{} is {size} bytes; inspect reads up to {MAX_BYTES}",
                path.display()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let format = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        "image/jpeg"
    } else {
        return Err(Error::invalid(
            "file",
            format!("{} is neither PNG nor JPEG", path.display()),
        ));
    };
    let image = crate::source::decode(&bytes)?;
    let text = if format == "image/png" {
        crate::store::read_png_text(path)?.2
    } else {
        BTreeMap::new()
    };
    Ok(Inspection {
        size: (image.width, image.height),
        watermark: watermark::decode(&image, expected.bits().len()),
        expected: expected.clone(),
        manifest: read_manifest(&bytes, format, anchors)?,
        text,
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "size: {}x{}", self.size.0, self.size.1)?;
        match &self.watermark {
            None => writeln!(
                f,
                "watermark: none (under {} pixels, too small to carry one)",
                watermark::MIN_PIXELS
            )?,
            Some(mark) if mark.detected() => {
                let accuracy = mark.accuracy(&self.expected);
                let whose = if accuracy == 1.0 {
                    "the configured payload".to_string()
                } else {
                    format!("{:.0} % of the configured payload's bits", accuracy * 100.0)
                };
                writeln!(
                    f,
                    "watermark: dwtDct {} ({} bits; matches {whose}; separation {:.2} over {} blocks)",
                    mark.bit_string(),
                    mark.bits.len(),
                    mark.separation,
                    mark.blocks
                )?
            }
            Some(mark) => writeln!(
                f,
                "watermark: none (separation {:.2} over {} blocks; marked images score {:.2} or more)",
                mark.separation,
                mark.blocks,
                watermark::DETECTION_THRESHOLD
            )?,
        }
        match &self.manifest {
            None => writeln!(f, "c2pa: none")?,
            Some(m) => {
                let detail = match m.state.as_str() {
                    "Trusted" => "signature, hashes and signer all check out".to_string(),
                    "Valid" => "signature and hashes check out; signer not in the trust list (pass --trust CA.pem)".to_string(),
                    _ => m.failures.join(", "),
                };
                writeln!(f, "c2pa: {} ({detail})", m.state)?;
                if let Some(kind) = &m.digital_source_type {
                    let short = if kind == TRAINED_ALGORITHMIC_MEDIA {
                        "trainedAlgorithmicMedia (made by a trained model)"
                    } else {
                        kind.as_str()
                    };
                    writeln!(f, "  created: {short}")?;
                }
                if let Some(generator) = &m.generator {
                    writeln!(f, "  software: {generator}")?;
                }
                if let Some(signer) = &m.signer {
                    writeln!(f, "  signed by: {signer}")?;
                }
                if let Some(generation) = &m.generation {
                    writeln!(f, "  generation: {generation}")?;
                }
            }
        }
        if self.text.is_empty() {
            writeln!(f, "parameters: none")?;
        } else {
            writeln!(f, "parameters:")?;
            for (key, value) in &self.text {
                writeln!(f, "  {key}: {}", value.replace('\n', "\n    "))?;
            }
        }
        Ok(())
    }
}
