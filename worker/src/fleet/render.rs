//! The render job: a request for a source object → fetch → render on the pool's threads → store
//! → publish `rendition.completed` (or `rendition.failed`).

use crate::adapters::events::EventSink;
use crate::adapters::storage::{Fetched, ObjectStore, PutOptions};
use crate::fleet::job::{
    JobContext, JobFailure, META_PRESET_FINGERPRINT, META_SOURCE_ETAG, META_SOURCE_SEQUENCER, Outcome, job_id,
};
use crate::pipeline::{Output, RenderOptions, Rendered};
use imgfleet_shared::envelope::Request;
use imgfleet_shared::event::{Event, EventRendition, EventSource, EventType, JobTimings, now_ms, public_url};
use imgfleet_shared::keys::KeyParts;
use imgfleet_shared::{ErrorKind, Preset};
use std::collections::HashMap;
use std::time::Instant;
use tracing::Instrument as _;

/// What a job that rendered and stored hands to its completed event.
struct Produced {
    renditions: Vec<EventRendition>,
    placeholder: String,
    warnings: Vec<String>,
    focus: Option<imgfleet_shared::FocusBox>,
    faces: Option<u32>,
}

/// A rendition planned for storage, with its body.
struct Planned {
    rendition: EventRendition,
    body: Vec<u8>,
}

impl<S: ObjectStore, E: EventSink> JobContext<S, E> {
    /// Runs the render job for `request` (delivered for the `attempt`-th time) and publishes its
    /// event.
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
            Ok(produced) => {
                event.renditions = produced.renditions;
                event.placeholder = Some(produced.placeholder);
                event.warnings = produced.warnings;
                event.focus = produced.focus;
                event.faces = produced.faces;
                self.publish(event, Outcome::Completed).await
            }
            Err(failure) => self.settle(event, failure, attempt).await,
        }
    }

    /// Fetches, renders and stores; fills in what it learns of the source and the stage times.
    async fn produce(
        &self,
        request: &Request,
        preset_name: &str,
        source: &mut EventSource,
        timings: &mut JobTimings,
    ) -> Result<Produced, JobFailure> {
        let preset = self.catalog.get(preset_name).cloned().ok_or_else(|| {
            JobFailure::new(ErrorKind::UnknownPreset, format!("preset {preset_name:?} is not configured"))
        })?;
        let bytes = self.fetch(request, source, timings).await?;
        let Rendered { result: r, outputs } = self.render(bytes, preset.clone()).await?;
        timings.pipeline = r.timings;
        for (stage, ms) in r.timings.stages() {
            self.metrics.stage(stage, ms / 1000.0);
        }
        source.format = Some(r.source.format);
        source.width = Some(r.source.width);
        source.height = Some(r.source.height);
        source.frames = Some(r.source.frames);
        source.animated = r.source.animated;

        let timer = self.metrics.time("store");
        let stored = self.store_all(request, &preset, source, outputs).await;
        timings.store_ms = timer.stop();
        Ok(Produced {
            renditions: stored?,
            placeholder: r.placeholder,
            warnings: r.warnings,
            focus: r.focus,
            faces: r.faces,
        })
    }

    /// Downloads the source within the byte limit.
    async fn fetch(
        &self,
        request: &Request,
        source: &mut EventSource,
        timings: &mut JobTimings,
    ) -> Result<Vec<u8>, JobFailure> {
        let limits = self.catalog.limits;
        if let Some(size) = request.object.size.filter(|&s| s > limits.max_source_bytes) {
            return Err(JobFailure::new(
                ErrorKind::TooLarge,
                format!("source is {size} bytes: over the limit of {} bytes", limits.max_source_bytes),
            ));
        }
        let timer = self.metrics.time("fetch");
        let fetched = self.store.get(&source.bucket, &source.key, limits.max_source_bytes).await;
        timings.fetch_ms = timer.stop();
        let Fetched { bytes, etag, version_id } = fetched.inspect_err(|e| self.count_s3_error(e))?;
        self.metrics.source_bytes.inc_by(bytes.len() as u64);
        source.size = Some(bytes.len() as u64);
        source.etag = etag.or(source.etag.take());
        source.version_id = version_id.or(source.version_id.take());
        Ok(bytes)
    }

    /// Renders on the pool's threads once a CPU slot is free; gives up if shutdown comes first.
    async fn render(&self, bytes: Vec<u8>, preset: Preset) -> Result<Rendered, JobFailure> {
        let _slot = tokio::select! {
            biased;
            slot = self.cpu.acquire() => slot.map_err(|_| JobFailure::Stopped)?,
            _ = self.stopping.cancelled() => return Err(JobFailure::Stopped),
        };
        let options = RenderOptions { limits: self.catalog.limits, background: self.catalog.background };
        match self.pool.render(bytes, preset, options, self.renderer).await {
            Ok(Ok(rendered)) => Ok(rendered),
            Ok(Err(e)) => Err(JobFailure::new(e.kind(), e)),
            Err(e) => Err(JobFailure::new(ErrorKind::Internal, e)),
        }
    }

    /// Stores every rendition (in parallel); the renditions as the event reports them.
    async fn store_all(
        &self,
        request: &Request,
        preset: &Preset,
        source: &EventSource,
        outputs: Vec<Output>,
    ) -> Result<Vec<EventRendition>, JobFailure> {
        let (renditions, bodies): (Vec<_>, Vec<_>) =
            self.plan_storage(request, preset, source, outputs)?.into_iter().map(|p| (p.rendition, p.body)).unzip();
        let metadata = rendition_metadata(request, preset, source);
        let puts = renditions.iter().zip(bodies).map(|(r, body)| {
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
        for r in &renditions {
            self.metrics.output_bytes.with_label_values(&[r.format.name()]).inc_by(r.bytes);
        }
        Ok(renditions)
    }

    /// Where each rendition goes: bucket, key (from the template) and public URL.
    fn plan_storage(
        &self,
        request: &Request,
        preset: &Preset,
        source: &EventSource,
        outputs: Vec<Output>,
    ) -> Result<Vec<Planned>, JobFailure> {
        let bucket = self.output.bucket.clone().unwrap_or_else(|| source.bucket.clone());
        let prefix = request.options.output_prefix.as_deref().unwrap_or(&self.output.prefix);
        outputs
            .into_iter()
            .map(|o| {
                let parts = KeyParts {
                    prefix,
                    source_key: &source.key,
                    preset: &preset.name,
                    rendition: &o.name,
                    ext: o.format.extension(),
                };
                let key =
                    self.output.key_template.key(parts).map_err(|e| JobFailure::new(ErrorKind::InvalidMessage, e))?;
                let rendition = EventRendition {
                    name: o.name,
                    format: o.format,
                    bucket: bucket.clone(),
                    width: o.width,
                    height: o.height,
                    bytes: o.data.len() as u64,
                    content_type: o.format.content_type().into(),
                    url: self
                        .output
                        .public_base_url
                        .as_deref()
                        .map(|base| public_url(base, &key, source.etag.as_deref())),
                    key,
                };
                Ok(Planned { rendition, body: o.data })
            })
            .collect()
    }
}

/// The user metadata every rendition of a job carries: its source, its preset and the preset's
/// fingerprint (read by `imgfleet backfill`), the source's ETag and its upload's sequencer (read
/// when the source is removed).
fn rendition_metadata(request: &Request, preset: &Preset, source: &EventSource) -> HashMap<String, String> {
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
    metadata
}

/// S3 user metadata travels as HTTP headers: keep it printable ASCII.
fn ascii_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).take(512).collect()
}
