//! imgfleet worker: turns uploaded images into web-ready renditions.
//!
//! # Layout
//! - [`pipeline`]: bytes → renditions (sniff, decode, colour, resize, orient, encode); synchronous.
//! - [`process`]: the `imgfleet process` command: the pipeline over local files, on all cores.

pub mod pipeline;
pub mod process;
