//! Pocket Studio: on-device text-to-image for ARM64 boards.
//!
//! Data flows one way: a front-end builds a [`Request`], the [`Pipeline`]
//! turns it into an [`Image`] with tract, and [`store`] writes it to disk.
//! Only [`engine`] names tract types, so another runtime can sit beside it.

pub mod bundle;
pub mod camera;
pub mod config;
pub mod engine;
pub mod error;
pub mod pipeline;
pub mod produce;
pub mod provenance;
pub mod service;
pub mod source;
pub mod store;
pub mod studio;
pub mod ui;

pub use bundle::{Bundle, BundleInfo};
pub use error::{Error, ModelFault, Result};
pub use pipeline::noise::{NoiseSource, RecordedNoise, SeededNoise};
pub use pipeline::scheduler::SchedulerKind;
pub use pipeline::{
    CancelToken, Generated, Image, InitImage, NoProgress, Pipeline, Progress, Request, Settings,
    Stage,
};

/// The version written into image metadata and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
