//! One job: a request for a source object → fetch → render (on a blocking thread) → store → publish.
//!
//! The job decides what its outcome means for the message ([`Outcome`]): completed or failed
//! (both published, so the message may go), retry (keep the message), or internal (imgfleet's own
//! bug: published on the first delivery, and the message kept for the dead-letter queue). The
//! consumer acts on it.

use crate::events::EventSink;
use crate::keys::{self, KeyParts};
use crate::metrics::Metrics;
use crate::pipeline::{Output, RenderError, RenderOptions, Rendered};
use crate::storage::{Fetched, ObjectStore, PutOptions, StoreError};
use imgfleet_shared::config::Sse;
use imgfleet_shared::envelope::Request;
use imgfleet_shared::event::{Event, EventRendition, EventSource, EventType, JobTimings, public_url};
use imgfleet_shared::outcome::ErrorInfo;
use imgfleet_shared::{ErrorClass, ErrorKind, Preset, PresetCatalog};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

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
    pub key_template: String,
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
    pub pool: crate::pool::RenderPool,
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
        }
    }
}

/// A failure inside the job, before it is turned into an [`Outcome`].
#[derive(Debug)]
struct JobFailure {
    kind: ErrorKind,
    message: String,
}

impl JobFailure {
    fn new(kind: ErrorKind, message: impl ToString) -> Self {
        Self { kind, message: message.to_string() }
    }
}

impl From<StoreError> for JobFailure {
    fn from(e: StoreError) -> Self {
        let kind = match e {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::TooLarge { .. } => ErrorKind::TooLarge,
            _ => ErrorKind::Storage,
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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl<S: ObjectStore, E: EventSink> JobContext<S, E> {
    /// Runs the job for `request` (delivered for the `attempt`-th time) and publishes its event.
    pub async fn run(&self, request: &Request, attempt: u32) -> Outcome {
        let started = Instant::now();
        let object = &request.object;
        let mut source = EventSource {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            etag: object.etag.clone(),
            version_id: object.version_id.clone(),
            size: object.size,
            ..Default::default()
        };
        let mut timings = JobTimings::default();
        let preset_name = request.options.preset.clone().unwrap_or_else(|| self.catalog.default_preset().name.clone());
        let result = self.produce(request, &preset_name, &mut source, &mut timings).await;
        let id = request.options.job_id.clone().unwrap_or_else(|| {
            job_id(&source.bucket, &source.key, source.version_id.as_deref().or(source.etag.as_deref()))
        });
        timings.total_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut event = Event::new(EventType::Completed, id, source, self.worker_id.clone(), now_ms());
        event.preset = Some(preset_name);
        event.timings = Some(timings);
        event.attempt = attempt;
        match result {
            Ok((renditions, placeholder)) => {
                event.renditions = renditions;
                event.placeholder = Some(placeholder);
                self.publish(event, Outcome::Completed).await
            }
            Err(f) if f.kind.class() == ErrorClass::Retry => Outcome::Retry { kind: f.kind, message: f.message },
            Err(f) if f.kind.class() == ErrorClass::Internal => {
                tracing::error!(kind = %f.kind, error = %f.message, "internal error: message kept for the dead-letter queue");
                event.kind = EventType::Failed;
                event.error = Some(ErrorInfo { kind: f.kind, message: f.message });
                if attempt > 1 {
                    // The failure event went out on the first delivery.
                    return Outcome::Internal(Box::new(event));
                }
                self.publish(event, Outcome::Internal).await
            }
            Err(f) => {
                tracing::info!(kind = %f.kind, error = %f.message, "rejected");
                event.kind = EventType::Failed;
                event.error = Some(ErrorInfo { kind: f.kind, message: f.message });
                self.publish(event, Outcome::Failed).await
            }
        }
    }

    /// Publishes `event`; on failure the message is kept so the event is not lost.
    pub async fn publish(&self, event: Event, outcome: impl FnOnce(Box<Event>) -> Outcome) -> Outcome {
        let t = Instant::now();
        let published = self.events.publish(&event).await;
        self.metrics.stage("publish", t.elapsed().as_secs_f64());
        match published {
            Ok(()) => outcome(Box::new(event)),
            Err(e) => {
                self.metrics.redis_errors.with_label_values(&["publish"]).inc();
                Outcome::Retry { kind: ErrorKind::Events, message: e.to_string() }
            }
        }
    }

    async fn produce(
        &self,
        request: &Request,
        preset_name: &str,
        source: &mut EventSource,
        timings: &mut JobTimings,
    ) -> Result<(Vec<EventRendition>, String), JobFailure> {
        let preset = self.catalog.get(preset_name).cloned().ok_or_else(|| {
            JobFailure::new(ErrorKind::UnknownPreset, format!("preset {preset_name:?} is not configured"))
        })?;
        let limits = self.catalog.limits;
        if let Some(size) = request.object.size.filter(|&s| s > limits.max_source_bytes) {
            return Err(JobFailure::new(
                ErrorKind::TooLarge,
                format!("source is {size} bytes: over the limit of {} bytes", limits.max_source_bytes),
            ));
        }

        let t = Instant::now();
        let fetched = self.store.get(&source.bucket, &source.key, limits.max_source_bytes).await;
        timings.fetch_ms = t.elapsed().as_secs_f64() * 1000.0;
        self.metrics.stage("fetch", t.elapsed().as_secs_f64());
        let Fetched { bytes, etag, version_id } = fetched.inspect_err(|e| self.count_s3_error(e))?;
        self.metrics.source_bytes.inc_by(bytes.len() as u64);
        source.size = Some(bytes.len() as u64);
        source.etag = etag.or(source.etag.take());
        source.version_id = version_id.or(source.version_id.take());

        let Rendered { result: r, outputs } = self.render(bytes, preset.clone()).await?;
        timings.pipeline = r.timings;
        for (stage, ms) in r.timings.stages() {
            self.metrics.stage(stage, ms / 1000.0);
        }
        source.format = Some(r.source.format);
        source.width = Some(r.source.width);
        source.height = Some(r.source.height);

        let t = Instant::now();
        let stored = self.store_all(request, &preset, source, outputs).await;
        timings.store_ms = t.elapsed().as_secs_f64() * 1000.0;
        self.metrics.stage("store", t.elapsed().as_secs_f64());
        Ok((stored?, r.placeholder))
    }

    /// Renders on the pool's threads once a CPU slot is free.
    async fn render(&self, bytes: Vec<u8>, preset: imgfleet_shared::Preset) -> Result<Rendered, JobFailure> {
        let stopped = || JobFailure::new(ErrorKind::Storage, "worker is shutting down before decoding started");
        let _slot = tokio::select! {
            biased;
            slot = self.cpu.acquire() => slot.map_err(|_| stopped())?,
            _ = self.stopping.cancelled() => return Err(stopped()),
        };
        let options = RenderOptions { limits: self.catalog.limits, background: self.catalog.background };
        match self.pool.render(bytes, preset, options, self.renderer).await {
            Ok(Ok(rendered)) => Ok(rendered),
            Ok(Err(e)) => Err(JobFailure::new(e.kind(), e)),
            Err(e) => Err(JobFailure::new(ErrorKind::Internal, e)),
        }
    }

    async fn store_all(
        &self,
        request: &Request,
        preset: &imgfleet_shared::Preset,
        source: &EventSource,
        outputs: Vec<Output>,
    ) -> Result<Vec<EventRendition>, JobFailure> {
        let bucket = self.output.bucket.clone().unwrap_or_else(|| source.bucket.clone());
        let prefix = request.options.output_prefix.as_deref().unwrap_or(&self.output.prefix);
        let mut metadata = HashMap::from([
            ("source-key".to_owned(), ascii_safe(&source.key)),
            ("preset".to_owned(), preset.name.clone()),
            (META_PRESET_FINGERPRINT.to_owned(), preset.fingerprint()),
        ]);
        if let Some(etag) = &source.etag {
            metadata.insert(META_SOURCE_ETAG.into(), etag.clone());
        }
        if let Some(sequencer) = &request.object.sequencer {
            metadata.insert(META_SOURCE_SEQUENCER.into(), ascii_safe(sequencer));
        }
        let mut planned = Vec::new();
        let mut bodies = Vec::new();
        for o in outputs {
            let parts = KeyParts {
                prefix,
                source_key: &source.key,
                preset: &preset.name,
                rendition: &o.name,
                ext: o.format.extension(),
            };
            let key = keys::rendition_key(&self.output.key_template, parts)
                .map_err(|e| JobFailure::new(ErrorKind::InvalidMessage, e))?;
            planned.push(EventRendition {
                name: o.name,
                format: o.format,
                bucket: bucket.clone(),
                width: o.width,
                height: o.height,
                bytes: o.data.len() as u64,
                content_type: o.format.content_type().into(),
                url: self.output.public_base_url.as_deref().map(|base| public_url(base, &key, source.etag.as_deref())),
                key,
            });
            bodies.push(o.data);
        }
        let puts = planned.iter().zip(bodies).map(|(r, body)| {
            let options = PutOptions {
                content_type: r.content_type.clone(),
                cache_control: self.output.cache_control.clone(),
                metadata: metadata.clone(),
                sse: self.output.sse.clone(),
            };
            async move { self.store.put(&r.bucket, &r.key, body, &options).await }
                .instrument(tracing::debug_span!("put", key = %r.key))
        });
        for result in futures_util::future::join_all(puts).await {
            result.map_err(|e| {
                self.count_s3_error(&e);
                JobFailure::from(e)
            })?;
        }
        for r in &planned {
            self.metrics.output_bytes.with_label_values(&[r.format.name()]).inc_by(r.bytes);
        }
        Ok(planned)
    }

    pub(crate) fn count_s3_error(&self, e: &StoreError) {
        if let Some(op) = e.operation() {
            self.metrics.aws_errors.with_label_values(&["s3", op]).inc();
        }
    }
}

/// S3 user metadata travels as HTTP headers: keep it printable ASCII.
fn ascii_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).take(512).collect()
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
