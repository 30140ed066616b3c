//! imgfleet worker: turns uploaded images into web-ready renditions, at fleet scale.
//!
//! Data flows one way: message → job → fetch → decode → resize → encode → store → publish.
//!
//! # Layout
//! - [`pipeline`]: bytes → renditions (sniff, decode, colour, resize, orient, encode). Synchronous,
//!   no I/O; the only CPU-heavy code.
//! - [`queue`], [`storage`], [`events`]: narrow traits over SQS, S3 and Redis, each with its real
//!   implementation; [`local`] has the folder / in-process versions used by `imgfleet demo`.
//! - [`job`]: one request → fetch → render on the [`pool`]'s threads → store → publish, and its
//!   [`job::Outcome`].
//! - [`pool`]: the fixed rendering threads, one per CPU slot.
//! - [`memory`]: allocator settings for image-sized buffers.
//! - [`consumer`]: long polling with bounded capacity, visibility heartbeats, acknowledgement by
//!   outcome, graceful drain. The only module that deletes messages.
//! - [`keys`]: deterministic rendition keys that cannot escape the output prefix.
//! - [`metrics`]: every Prometheus metric, and the `/metrics`, `/healthz`, `/readyz` endpoint.
//! - [`protection`]: ECS task scale-in protection while jobs are in flight.
//! - [`service`]: configuration → adapters → a running worker. [`demo`], [`process`], [`cli`]: the commands.

pub mod backfill;
pub mod cli;
pub mod consumer;
pub mod demo;
pub mod events;
pub mod job;
pub mod keys;
pub mod local;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod pool;
pub mod presign;
pub mod process;
pub mod protection;
pub mod queue;
pub mod remove;
pub mod service;
pub mod storage;
pub mod telemetry;
