//! What every job shares, and what a job's outcome means for its message.
//!
//! A job is one request of a message: a render ([`crate::fleet::render`]: fetch → render → store
//! → publish) or a removal ([`crate::fleet::remove`]). Its [`Outcome`] decides what becomes of the
//! message: completed, failed or deleted (the event is published, so the message may go), retry
//! (keep it), released (shutdown came first: give it back at once), or internal (imgfleet's own
//! bug: published on the first delivery, and the message kept for the dead-letter queue). The
//! consumer acts on it. Every event goes out through [`JobContext::publish`].

use crate::adapters::events::EventSink;
use crate::adapters::storage::{ObjectStore, StoreError};
use crate::fleet::pool::RenderPool;
use crate::ops::metrics::Metrics;
use crate::pipeline::{RenderError, RenderOptions, Rendered};
use imgfleet_shared::config::Sse;
use imgfleet_shared::event::{Event, EventSource, EventType, now_ms};
use imgfleet_shared::keys::KeyTemplate;
use imgfleet_shared::outcome::ErrorInfo;
use imgfleet_shared::{ErrorClass, ErrorKind, Preset, PresetCatalog};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Rendition metadata: the fingerprint of the preset that made it (read by `imgfleet backfill`).
pub const META_PRESET_FINGERPRINT: &str = "preset-fingerprint";
/// Rendition metadata: the source's ETag when the rendition was made.
pub const META_SOURCE_ETAG: &str = "source-etag";
/// Rendition metadata: the S3 sequencer of the upload it was made from (read when deleting).
pub const META_SOURCE_SEQUENCER: &str = "source-sequencer";

/// Settings for storing renditions, from the worker's configuration.
#[derive(Debug, Clone)]
pub struct OutputSettings {
    /// `None`: the source object's bucket.
    pub bucket: Option<String>,
    pub prefix: String,
    pub key_template: KeyTemplate,
    pub cache_control: String,
    pub sse: Option<Sse>,
    /// Base of the public URLs put in completion events.
    pub public_base_url: Option<String>,
}

/// What turns source bytes into renditions: [`crate::pipeline::render`] (tests put in a failing one).
pub type Renderer = fn(&[u8], &Preset, &RenderOptions) -> Result<Rendered, RenderError>;

/// Everything jobs share.
#[derive(Debug)]
pub struct JobContext<S, E> {
    pub store: S,
    pub events: E,
    pub catalog: Arc<PresetCatalog>,
    pub output: OutputSettings,
    pub worker_id: String,
    /// Bounds decoding to the CPU slots; separate from the number of messages in flight.
    pub cpu: Arc<Semaphore>,
    pub metrics: Metrics,
    /// Cancelled when shutdown begins: a job still waiting for a CPU slot gives its message back.
    pub stopping: CancellationToken,
    pub renderer: Renderer,
    /// The fixed rendering threads, one per CPU slot.
    pub pool: RenderPool,
}

/// What happened, and so what the consumer does with the message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Renditions stored and `rendition.completed` published: delete the message.
    Completed(Box<Event>),
    /// The input can never succeed and `rendition.failed` was published: delete the message.
    Failed(Box<Event>),
    /// The source was removed, its renditions dealt with and `rendition.deleted` published.
    Deleted(Box<Event>),
    /// Infrastructure trouble: keep the message and let it come back later.
    Retry { kind: ErrorKind, message: String },
    /// imgfleet's own bug: `rendition.failed` (kind `internal`) was published on the first
    /// delivery; keep the message so it ends in the dead-letter queue, to be redriven once fixed.
    Internal(Box<Event>),
    /// Shutdown began before the job started decoding: nothing was done; give the message back
    /// at once for another worker.
    Released,
}

impl Outcome {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Completed(_) => "completed",
            Self::Failed(_) => "failed",
            Self::Deleted(_) => "deleted",
            Self::Retry { .. } => "retried",
            Self::Internal(_) => "internal",
            Self::Released => "released",
        }
    }
}

/// Why a job did not complete, before it is turned into an [`Outcome`].
#[derive(Debug)]
pub(crate) enum JobFailure {
    /// An error of this kind.
    Error { kind: ErrorKind, message: String },
    /// Shutdown began before the job started decoding.
    Stopped,
}

impl JobFailure {
    pub(crate) fn new(kind: ErrorKind, message: impl ToString) -> Self {
        Self::Error { kind, message: message.to_string() }
    }
}

impl From<StoreError> for JobFailure {
    fn from(e: StoreError) -> Self {
        let kind = match e {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::TooLarge { .. } => ErrorKind::TooLarge,
            StoreError::Failed { transient: false, .. } => ErrorKind::StorageConfig,
            StoreError::Failed { .. } => ErrorKind::Storage,
        };
        Self::new(kind, e)
    }
}

/// A stable job id for one version of one object: the same upload notified twice gets the same id.
pub fn job_id(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut h = Sha256::new();
    for part in [bucket, key, version.unwrap_or("")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

impl<S: ObjectStore, E: EventSink> JobContext<S, E> {
    /// Publishes `event`; on failure the message is kept so the event is not lost.
    pub async fn publish(&self, event: Event, outcome: impl FnOnce(Box<Event>) -> Outcome) -> Outcome {
        let timer = self.metrics.time("publish");
        let published = self.events.publish(&event).await;
        timer.stop();
        match published {
            Ok(()) => outcome(Box::new(event)),
            Err(e) => {
                self.metrics.redis_errors.with_label_values(&["publish"]).inc();
                Outcome::Retry { kind: ErrorKind::Events, message: e.to_string() }
            }
        }
    }

    /// What `failure` means for the job whose event is `event` (a completion event so far),
    /// delivered for the `attempt`-th time: retried, released, or failed and published.
    pub(crate) async fn settle(&self, mut event: Event, failure: JobFailure, attempt: u32) -> Outcome {
        let (kind, message) = match failure {
            JobFailure::Stopped => return Outcome::Released,
            JobFailure::Error { kind, message } => (kind, message),
        };
        match kind.class() {
            ErrorClass::Retry => return Outcome::Retry { kind, message },
            ErrorClass::Internal => {
                tracing::error!(%kind, error = %message, "internal error: message kept for the dead-letter queue")
            }
            ErrorClass::Reject => tracing::info!(%kind, error = %message, "rejected"),
        }
        event.kind = EventType::Failed;
        event.error = Some(ErrorInfo { kind, message });
        match kind.class() {
            // The failure event went out on the first delivery.
            ErrorClass::Internal if attempt > 1 => Outcome::Internal(Box::new(event)),
            ErrorClass::Internal => self.publish(event, Outcome::Internal).await,
            _ => self.publish(event, Outcome::Failed).await,
        }
    }

    /// A message no parser understands (`message_id`, delivered for the `attempt`-th time):
    /// `rendition.failed` with kind `invalid_message` on its first delivery. Publishing is best
    /// effort: the message stays for the dead-letter queue whatever happens.
    pub async fn reject_message(&self, message_id: &str, attempt: u32, error: &impl ToString) {
        if attempt > 1 {
            return;
        }
        let id = format!("message-{message_id}");
        let mut event = Event::new(EventType::Failed, id, EventSource::default(), self.worker_id.clone(), now_ms());
        event.attempt = attempt;
        event.error = Some(ErrorInfo { kind: ErrorKind::InvalidMessage, message: error.to_string() });
        self.publish(event, Outcome::Failed).await;
    }

    pub(crate) fn count_s3_error(&self, e: &StoreError) {
        if let StoreError::Failed { operation, transient, .. } = e {
            self.metrics.aws_errors.with_label_values(&["s3", operation]).inc();
            if !transient {
                self.metrics.storage_config_errors.with_label_values(&[operation]).inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_stable_per_object_version() {
        let a = job_id("b", "uploads/a.jpg", Some("etag1"));
        assert_eq!(a, job_id("b", "uploads/a.jpg", Some("etag1")));
        assert_ne!(a, job_id("b", "uploads/a.jpg", Some("etag2")));
        assert_ne!(job_id("b", "ab", None), job_id("ba", "b", None));
        assert_eq!(a.len(), 24);
    }
}
