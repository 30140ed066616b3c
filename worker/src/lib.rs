//! imgfleet worker: turns uploaded images into web-ready renditions, at fleet scale.
//!
//! Data flows one way: message → job → fetch → decode → resize → encode → store → publish.
//! Dependencies run one way too: [`commands`] → [`fleet`] → [`pipeline`] / [`adapters`] / [`ops`]
//! → `imgfleet_shared`.
//!
//! # Layout
//! - [`commands`]: the command line.
//!   - [`commands::cli`]: argument parsing and dispatch to the subcommands.
//!   - [`commands::process`]: `imgfleet process`, the pipeline over local files on all cores.
//!   - [`commands::demo`]: `imgfleet demo`, the whole flow on the local adapters, nothing installed.
//!   - [`commands::backfill`]: `imgfleet backfill`, a direct job for every source missing renditions.
//!   - [`commands::presign`]: `imgfleet presign`, presigned POST policies for uploads.
//! - [`fleet`]: the worker.
//!   - [`fleet::service`]: configuration + adapters → a running worker, and its shutdown.
//!   - [`fleet::consumer`]: long polling, visibility heartbeats, acknowledgement by outcome, drain;
//!     the only module that deletes messages.
//!   - [`fleet::job`]: what every job shares, and what its [`fleet::job::Outcome`] means for the message.
//!   - [`fleet::render`]: a source → fetch → render → store → publish.
//!   - [`fleet::remove`]: a removed source → its renditions deleted.
//!   - [`fleet::pool`]: the fixed rendering threads, one per CPU slot.
//! - [`pipeline`]: bytes → renditions. Synchronous, no I/O; the only CPU-heavy code. The stages, in
//!   the order an image meets them, none importing another:
//!   - [`pipeline::sniff`]: the format, by magic bytes only.
//!   - [`pipeline::decode`]: pixels (or a JPEG's planes), limits checked from the header first;
//!     `decode::frames` takes the first frame of a GIF or an animated WebP.
//!   - [`pipeline::colour`]: embedded profiles → sRGB.
//!   - [`pipeline::resize`]: fast_image_resize to each rendition's plan.
//!   - [`pipeline::orient`]: EXIF orientation applied to the small results.
//!   - [`pipeline::encode`]: JPEG and WebP bytes, metadata stripped.
//!   - What the stages stand on: [`pipeline::pixels`] (the image types), [`pipeline::geometry`]
//!     (every size and crop, exact), [`pipeline::shrink`] (the box shrink), [`pipeline::exif`]
//!     (the orientation tag), and the libjpeg and libwebp encoders' bindings.
//! - [`adapters`]: narrow traits over the outside world, each with its real implementation.
//!   - [`adapters::queue`]: receive, delete, change visibility, send; SQS.
//!   - [`adapters::storage`]: size-capped fetch, put, head, delete, list; S3.
//!   - [`adapters::events`]: publish an event; a Redis stream and channel.
//!   - [`adapters::local`]: a folder store, an in-process queue and a JSON-lines sink, for the demo.
//! - [`ops`]: running in production.
//!   - [`ops::metrics`]: every Prometheus metric, and the `/metrics`, `/healthz`, `/readyz` endpoint.
//!   - [`ops::telemetry`]: logging as text or JSON lines.
//!   - [`ops::memory`]: allocator settings for image-sized buffers.
//!   - [`ops::protection`]: ECS task scale-in protection while jobs are in flight.

pub mod adapters;
pub mod commands;
pub mod fleet;
pub mod ops;
pub mod pipeline;
