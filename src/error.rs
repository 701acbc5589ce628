//! The library's typed errors.
//!
//! Every error a user can cause or meet (a bad request, a broken model file, a
//! cancelled job) has its own variant, so front-ends can map it to a D-Bus
//! error name or a CLI exit line without parsing strings. Never panics, never
//! hides the file or key at fault.

use std::path::PathBuf;

/// Why a model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFault {
    /// The file the bundle layout or manifest names is not there.
    #[error("file is missing")]
    Missing,
    /// The bytes on disk are not the ones the manifest vouches for.
    #[error("sha256 is {actual}, the manifest says {expected}")]
    ChecksumMismatch {
        /// Hex digest from `pocket-studio.toml`.
        expected: String,
        /// Hex digest of the file on disk.
        actual: String,
    },
    /// The file exists but cannot be read.
    #[error("cannot be read: {0}")]
    Unreadable(#[source] std::io::Error),
    /// The file is readable but its contents are not what the bundle needs
    /// (an ONNX graph tract rejects, malformed JSON or TOML, a wrong shape).
    #[error("{0}")]
    Invalid(String),
}

/// Errors from every layer of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model bundle cannot be used; `file` names the culprit.
    #[error("model unavailable: {}: {fault}", file.display())]
    ModelUnavailable {
        /// The file at fault (or the bundle folder when no single file is).
        file: PathBuf,
        /// What is wrong with it.
        fault: ModelFault,
    },
    /// A request value is out of range or unknown; `key` names the request
    /// field, so D-Bus can answer `InvalidArgs` with it.
    #[error("invalid {key}: {reason}")]
    InvalidArgument {
        /// The request field at fault (`prompt`, `steps`, `width`, ...).
        key: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// Not enough free space for the image plus the configured reserve;
    /// nothing was written.
    #[error("not enough free space: {needed} bytes needed, {free} free")]
    NoSpace {
        /// Bytes the write needs, reserve included (0 when a write hit a
        /// full disk mid-way).
        needed: u64,
        /// Bytes free on the filesystem.
        free: u64,
    },
    /// The gallery's configured quota is reached.
    #[error("gallery full: {0}")]
    QuotaFull(String),
    /// No image or job with this id.
    #[error("not found: {0}")]
    NotFound(String),
    /// The configuration file is invalid; `reason` names the key.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// The job queue is full; try again when a job finishes.
    #[error("the queue is full ({0} jobs)")]
    QueueFull(usize),
    /// The job was cancelled through its [`crate::CancelToken`].
    #[error("cancelled")]
    Cancelled,
    /// A model ran but failed (bad shapes, an op tract cannot compute).
    #[error("inference failed in {stage}: {reason}")]
    Inference {
        /// Which network failed (`text encoder`, `unet`, `vae decoder`).
        stage: &'static str,
        /// tract's message.
        reason: String,
    },
    /// The camera cannot give a frame: none found, busy, no format we read,
    /// unplugged, or a frame that does not decode.
    #[error("camera {}{reason}", if device.is_empty() { String::new() } else { format!("{device}: ") })]
    Camera {
        /// The device node (empty when no device was chosen yet).
        device: String,
        /// What went wrong and, where it helps, what to do.
        reason: String,
    },
    /// Watermarking, signing or reading a C2PA manifest failed, or the
    /// signing identity is unusable.
    #[error("provenance: {0}")]
    Provenance(String),
    /// Reading or writing a file outside the model bundle failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for a bundle file problem.
    pub fn model(file: impl Into<PathBuf>, fault: ModelFault) -> Self {
        Error::ModelUnavailable {
            file: file.into(),
            fault,
        }
    }

    /// Shorthand for a bad request field.
    pub fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            key,
            reason: reason.into(),
        }
    }

    /// Shorthand for an I/O failure on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// What a caught panic said, for an error message.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
