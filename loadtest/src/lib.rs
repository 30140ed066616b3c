//! `imgfleet-loadtest`: how many images per second per core, what upload-to-event latency at a
//! given rate, and did anything get lost.
//!
//! - [`pipeline`]: the rendition job in-process over a folder (images/s, MP/s, stage shares, RSS, bytes).
//! - [`e2e`]: uploads to a real bucket and reads the fleet's events from Redis ([`stream`]), matched
//!   by [`ledger`]; [`report`] and [`chart`] write the table, `report.json` and `chart.svg`.
//! - [`setup`]: bucket + queue + dead-letter queue + bucket notification for a local run, and their teardown.
//! - [`capacity`]: the fleet and its queue simulated under the template's scaling policy for an
//!   upload-rate profile: tasks over time, message age, backlog drain time, cost per million photos.
//! - [`samples`]: generated photos, when no corpus is at hand. [`stats`]: percentiles and histograms.
//!
//! `setup` is also what the end-to-end tests use to make their bucket, queues and notification.

pub mod capacity;
pub mod chart;
pub mod e2e;
pub mod inputs;
pub mod ledger;
pub mod pipeline;
pub mod report;
pub mod samples;
pub mod setup;
pub mod stats;
pub mod stream;
