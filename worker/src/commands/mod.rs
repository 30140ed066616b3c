//! The `imgfleet` subcommands: each turns its arguments into calls on the fleet and the pipeline.

pub mod backfill;
pub mod cli;
pub mod demo;
pub mod presign;
pub mod process;
