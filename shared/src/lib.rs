//! imgfleet contracts: the types every part of the fleet agrees on.
//!
//! This crate is plain data and parsing — serde, no tokio, no AWS — so the worker, the load test and
//! the end-to-end tests can all depend on it without pulling in a runtime.
//!
//! # Layout
//! - [`format`]: the image formats the fleet reads and writes.
//! - [`preset`]: rendition presets (name, box, fit, output formats) and source limits, loadable from TOML.
//! - [`outcome`]: what a rendition job reports ([`outcome::RenderResult`]) and how failures are classified
//!   ([`outcome::ErrorKind`], *reject* versus *retry*).
//! - [`envelope`]: SQS message bodies (S3 notifications, SNS, EventBridge, direct jobs) → requests.
//! - [`event`]: the versioned completion / failure events published through Redis.
//! - [`keys`]: rendition key templates and the keys they make, always under the output prefix.
//! - [`config`]: the worker's settings, read from `IMGFLEET_*` environment variables and an optional TOML file.

pub mod config;
pub mod envelope;
pub mod event;
pub mod format;
pub mod keys;
pub mod outcome;
pub mod preset;

pub use format::ImageFormat;
pub use outcome::{ErrorClass, ErrorInfo, ErrorKind, FocusBox, RenderResult};
pub use preset::{CropMode, Fit, Limits, OutputSpec, Preset, PresetCatalog, RenditionSpec};
