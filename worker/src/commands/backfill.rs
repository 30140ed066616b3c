//! Backfill: list a prefix and enqueue a direct job for every source whose renditions are missing
//! or out of date, without downloading anything.
//!
//! A source is **up to date** when every key its preset writes exists and each carries the
//! preset's current fingerprint and the source's current ETag in its metadata (one HEAD per key).
//! Otherwise it is **missing** (some key absent) or **stale** (made by another version of the
//! preset, or from an earlier upload of the key). Objects under the output prefix, empty ones and
//! ones over the size limit are skipped. Whether an object is really an image is decided by the
//! worker from its content, as for live uploads.
//!
//! The listing is in key order and each page is handled in order, so the last key handled is a
//! resume point: everything up to it has been enqueued or found up to date. `start_after` takes it
//! back. Sends are paced to `rate` messages a second so a backfill never starves live uploads.

use crate::adapters::queue::{MAX_BATCH, Queue, QueueError};
use crate::adapters::storage::{Head, ListQuery, ListedObject, ObjectStore, StoreError};
use crate::fleet::job::{META_PRESET_FINGERPRINT, META_SOURCE_ETAG};
use futures_util::StreamExt as _;
use imgfleet_shared::Preset;
use imgfleet_shared::keys::{self, KeyTemplate};
use serde::Serialize;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// HEAD requests in flight while checking a page.
const CHECKS_IN_FLIGHT: usize = 16;

/// What to backfill and how.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub bucket: String,
    pub prefix: String,
    /// Sent in each job's `preset`; `None` leaves the worker's default (which `preset` must be).
    pub preset_name: Option<String>,
    pub preset: Preset,
    /// Only objects last modified at or after this time.
    pub since: Option<SystemTime>,
    /// Only keys ending in one of these extensions (lower case, no dot); empty means every key.
    pub extensions: Vec<String>,
    pub dry_run: bool,
    /// Messages per second.
    pub rate: f64,
    /// Resume after this key (exclusive).
    pub start_after: Option<String>,
    /// Stop after this many listed objects (then resume from `last_key`).
    pub limit: Option<u64>,
    /// Where renditions are: `None` means the source bucket.
    pub output_bucket: Option<String>,
    pub output_prefix: String,
    pub key_template: KeyTemplate,
    pub max_source_bytes: u64,
    /// Objects per listing page (S3 allows up to 1000).
    pub page_size: i32,
}

/// Counts at the end (or at any point, for progress).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackfillSummary {
    pub listed: u64,
    /// Outside the filters: output keys, other extensions, older than `since`, empty, too large, or a
    /// key too long for any rendition key.
    pub skipped: u64,
    pub up_to_date: u64,
    pub missing: u64,
    pub stale: u64,
    /// Jobs sent (0 on a dry run).
    pub enqueued: u64,
    /// The last key handled, in listing order: pass it as `start_after` to resume.
    pub last_key: Option<String>,
    /// False when stopped early (limit or interruption).
    pub complete: bool,
}

/// What a source needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    UpToDate,
    Missing,
    Stale,
}

/// Paces sends to a rate.
#[derive(Debug)]
struct Pacer {
    per_message: Duration,
    next: Instant,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Self { per_message: Duration::from_secs_f64(1.0 / rate.max(0.001)), next: Instant::now() }
    }

    /// When `n` more messages may go, if asked at `now`; books their share of time.
    fn reserve(&mut self, n: usize, now: Instant) -> Instant {
        let at = self.next.max(now);
        self.next = at + self.per_message * n as u32;
        at
    }

    /// Waits until `n` more messages may go.
    async fn admit(&mut self, n: usize) {
        let at = self.reserve(n, Instant::now());
        tokio::time::sleep_until(at).await;
    }
}

/// Why a backfill stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackfillError {
    #[error("the rate must be above 0 messages a second")]
    Rate,
    /// Listing the sources failed.
    #[error("{0}")]
    List(StoreError),
    #[error("reading rendition metadata: {0}")]
    Head(StoreError),
    #[error("{0}")]
    Send(QueueError),
    #[error("SendMessageBatch refused {count} job(s): {reason}")]
    Refused { count: usize, reason: String },
}

/// A command-line value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadArgument(String);

/// Runs a backfill over `store`, sending jobs to `queue`; `progress` sees the counts after each
/// batch. Cancelling `stop` ends it after the batch in hand, with `complete` false and a resume key.
pub async fn run<S: ObjectStore, Q: Queue>(
    store: &S,
    queue: &Q,
    request: &BackfillRequest,
    stop: &CancellationToken,
    mut progress: impl FnMut(&BackfillSummary),
) -> Result<BackfillSummary, BackfillError> {
    if request.rate.is_nan() || request.rate <= 0.0 {
        return Err(BackfillError::Rate);
    }
    let mut sender = Sender { queue, request, pacer: Pacer::new(request.rate), batch: Vec::new() };
    let mut summary = BackfillSummary::default();
    let mut page: Option<String> = None;
    loop {
        let query = ListQuery {
            prefix: &request.prefix,
            start_after: request.start_after.as_deref(),
            page: page.as_deref(),
            max_keys: request.page_size,
        };
        let listed = store.list(&request.bucket, &query).await.map_err(BackfillError::List)?;
        let mut objects = listed.objects;
        if let Some(limit) = request.limit {
            objects.truncate(limit.saturating_sub(summary.listed) as usize);
        }
        let stopped = handle_page(store, &mut sender, objects, &mut summary, stop, &mut progress).await?;
        let at_limit = request.limit.is_some_and(|l| summary.listed >= l);
        page = listed.next;
        if stopped || at_limit || page.is_none() {
            summary.complete = !stopped && !at_limit;
            return Ok(summary);
        }
    }
}

/// Checks one page of objects (HEADs in parallel, handled in key order) and sends the jobs the
/// missing and stale ones need; true when `stop` ended it early.
async fn handle_page<S: ObjectStore, Q: Queue>(
    store: &S,
    sender: &mut Sender<'_, Q>,
    objects: Vec<ListedObject>,
    summary: &mut BackfillSummary,
    stop: &CancellationToken,
    progress: &mut impl FnMut(&BackfillSummary),
) -> Result<bool, BackfillError> {
    let request = sender.request;
    let fingerprint = request.preset.fingerprint();
    let checks = futures_util::stream::iter(objects)
        .map(|o| async {
            let need = if wanted(request, &o) { check(store, request, &fingerprint, &o).await? } else { None };
            Ok::<_, BackfillError>((o, need))
        })
        .buffered(CHECKS_IN_FLIGHT);
    tokio::pin!(checks);
    let mut stopped = false;
    while let Some(checked) = checks.next().await {
        let (object, need) = checked?;
        summary.listed += 1;
        match need {
            None => summary.skipped += 1,
            Some(Need::UpToDate) => summary.up_to_date += 1,
            Some(Need::Missing) => summary.missing += 1,
            Some(Need::Stale) => summary.stale += 1,
        }
        let key = object.key.clone();
        if matches!(need, Some(Need::Missing | Need::Stale)) {
            sender.batch.push(object);
        }
        if sender.batch.len() >= sender.batch_size() {
            sender.send(summary).await?;
            progress(summary);
        }
        // Every object up to this one is handled once any pending batch is sent, which happens
        // before this function returns.
        summary.last_key = Some(key);
        if stop.is_cancelled() {
            stopped = true;
            break;
        }
    }
    sender.send(summary).await?;
    progress(summary);
    Ok(stopped)
}

/// Whether a listed object is a candidate at all.
fn wanted(request: &BackfillRequest, o: &ListedObject) -> bool {
    if keys::is_output_key(&o.key, &request.output_prefix) || o.key.ends_with('/') {
        return false;
    }
    if o.size == 0 || o.size > request.max_source_bytes {
        return false;
    }
    if let (Some(since), Some(modified)) = (request.since, o.modified)
        && modified < since
    {
        return false;
    }
    if request.extensions.is_empty() {
        return true;
    }
    let name = o.key.rsplit('/').next().unwrap_or("");
    name.rsplit_once('.').is_some_and(|(_, ext)| request.extensions.iter().any(|e| e.eq_ignore_ascii_case(ext)))
}

/// HEADs every key the preset writes for `o`.
/// `None` when no rendition key can be made for it (too long): the worker would refuse it, so it is skipped.
async fn check<S: ObjectStore>(
    store: &S,
    request: &BackfillRequest,
    fingerprint: &str,
    o: &ListedObject,
) -> Result<Option<Need>, BackfillError> {
    let bucket = request.output_bucket.as_deref().unwrap_or(&request.bucket);
    let Ok(keys) = request.key_template.preset_keys(&request.output_prefix, &o.key, &request.preset) else {
        return Ok(None);
    };
    let heads = futures_util::future::join_all(keys.iter().map(|k| store.head(bucket, k))).await;
    let mut need = Need::UpToDate;
    for head in heads {
        match head.map_err(BackfillError::Head)? {
            None => return Ok(Some(Need::Missing)),
            Some(Head { metadata, .. }) => {
                let current = metadata.get(META_PRESET_FINGERPRINT).is_some_and(|f| f == fingerprint)
                    && (o.etag.is_none() || metadata.get(META_SOURCE_ETAG) == o.etag.as_ref());
                if !current {
                    need = Need::Stale;
                }
            }
        }
    }
    Ok(Some(need))
}

/// Collects the sources that need a job and sends their jobs in paced batches.
struct Sender<'a, Q> {
    queue: &'a Q,
    request: &'a BackfillRequest,
    pacer: Pacer,
    batch: Vec<ListedObject>,
}

impl<Q: Queue> Sender<'_, Q> {
    /// Jobs per `SendMessageBatch`: up to SQS's limit, fewer when the rate is below it.
    fn batch_size(&self) -> usize {
        (self.request.rate.floor() as usize).clamp(1, MAX_BATCH)
    }

    /// Sends the batch as one `SendMessageBatch` (paced), unless this is a dry run.
    async fn send(&mut self, summary: &mut BackfillSummary) -> Result<(), BackfillError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if !self.request.dry_run {
            self.pacer.admit(self.batch.len()).await;
            let bodies = self.batch.iter().map(|o| job_message(self.request, o)).collect();
            let refused = self.queue.send_batch(bodies).await.map_err(BackfillError::Send)?;
            if let Some((_, reason)) = refused.first() {
                return Err(BackfillError::Refused { count: refused.len(), reason: reason.clone() });
            }
            summary.enqueued += self.batch.len() as u64;
        }
        self.batch.clear();
        Ok(())
    }
}

/// The direct job message that renders `o` (with its size and ETag, and the preset when named).
fn job_message(request: &BackfillRequest, o: &ListedObject) -> String {
    let mut job = serde_json::json!({"v": 1, "bucket": request.bucket, "key": o.key, "size": o.size});
    if let Some(etag) = &o.etag {
        job["etag"] = etag.clone().into();
    }
    if let Some(preset) = &request.preset_name {
        job["preset"] = preset.clone().into();
    }
    job.to_string()
}

/// Parses `2026-01-31` or an RFC 3339 time (`2026-01-31T12:00:00Z`).
pub fn parse_since(text: &str) -> Result<SystemTime, BadArgument> {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    let t = DateTime::from_str(&full, DateTimeFormat::DateTime)
        .map_err(|_| BadArgument(format!("--since {text:?} is not a date like 2026-01-31 or 2026-01-31T12:00:00Z")))?;
    SystemTime::try_from(t).map_err(|_| BadArgument(format!("--since {text:?} is out of range")))
}

/// Parses `50` or `50/s`.
pub fn parse_rate(text: &str) -> Result<f64, BadArgument> {
    let n = text.trim().trim_end_matches("/s").trim();
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => {
            Err(BadArgument(format!("--rate {text:?} is not a positive number of messages a second, like 50 or 50/s")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_rates_parse() {
        let day = parse_since("2026-01-31").unwrap();
        let later = parse_since("2026-01-31T12:00:00Z").unwrap();
        assert_eq!(later.duration_since(day).unwrap(), Duration::from_secs(12 * 3600));
        assert!(parse_since("31/01/2026").is_err());
        assert_eq!(parse_rate("50/s").unwrap(), 50.0);
        assert_eq!(parse_rate("2.5").unwrap(), 2.5);
        for bad in ["0", "-1", "fast", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pacer_keeps_to_its_rate() {
        let mut pacer = Pacer::new(20.0);
        let start = Instant::now();
        let times: Vec<Duration> = (0..10).map(|_| pacer.reserve(10, start) - start).collect();
        // 100 messages at 20/s in batches of 10: one batch every half second from the start.
        assert_eq!(times[1], Duration::from_millis(500));
        assert_eq!(times[9], Duration::from_millis(4500));
        // Idle time is not banked: after a pause the next batch goes at once, then the pace resumes.
        let later = start + Duration::from_secs(60);
        assert_eq!(pacer.reserve(10, later), later);
        assert_eq!(pacer.reserve(10, later) - later, Duration::from_millis(500));
    }

    fn request(page_size: i32) -> BackfillRequest {
        BackfillRequest {
            bucket: "b".into(),
            prefix: "legacy/".into(),
            preset_name: None,
            preset: imgfleet_shared::PresetCatalog::default().default_preset().clone(),
            since: None,
            extensions: vec![],
            dry_run: false,
            rate: 1000.0,
            start_after: None,
            limit: None,
            output_bucket: None,
            output_prefix: "renditions/".into(),
            key_template: KeyTemplate::default(),
            max_source_bytes: 1 << 20,
            page_size,
        }
    }

    #[tokio::test]
    async fn pages_of_a_local_bucket_become_one_job_per_source_and_resume_where_they_stopped() {
        use crate::adapters::local::{DirStore, LocalQueue};
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path());
        for i in 0..25 {
            store.upload("b", &format!("legacy/{i:02}.jpg"), b"any bytes").unwrap();
        }
        store.upload("b", "other/x.jpg", b"outside the prefix").unwrap();
        store.upload("b", "legacy/empty.jpg", b"").unwrap();
        let queue = LocalQueue::new();
        let stop = CancellationToken::new();

        // Pages of 10, stopped after 12 objects: a resume key, and jobs for those 12.
        let first = run(&store, &queue, &BackfillRequest { limit: Some(12), ..request(10) }, &stop, |_| {}).await;
        let first = first.unwrap();
        assert_eq!((first.listed, first.missing, first.enqueued, first.complete), (12, 12, 12, false));
        assert_eq!(first.last_key.as_deref(), Some("legacy/11.jpg"));
        let resumed = BackfillRequest { start_after: first.last_key.clone(), ..request(10) };
        let rest = run(&store, &queue, &resumed, &stop, |_| {}).await.unwrap();
        assert_eq!((rest.listed, rest.skipped, rest.enqueued, rest.complete), (14, 1, 13, true), "{rest:?}");

        let mut keys = Vec::new();
        while let Ok(got) = queue.receive(10, Duration::ZERO, Duration::from_secs(30)).await {
            if got.is_empty() {
                break;
            }
            keys.extend(got.iter().map(|m| serde_json::from_str::<serde_json::Value>(&m.body).unwrap()["key"].clone()));
        }
        let want: Vec<serde_json::Value> = (0..25).map(|i| format!("legacy/{i:02}.jpg").into()).collect();
        assert_eq!(keys, want, "one job per source, in key order, none twice");
    }

    #[tokio::test]
    async fn a_refused_send_stops_the_backfill_with_its_reason() {
        struct Refusing;
        impl Queue for Refusing {
            async fn receive(
                &self,
                _: i32,
                _: Duration,
                _: Duration,
            ) -> Result<Vec<crate::adapters::queue::ReceivedMessage>, QueueError> {
                Ok(vec![])
            }
            async fn delete_batch(&self, _: Vec<(String, String)>) -> Result<Vec<(String, String)>, QueueError> {
                Ok(vec![])
            }
            async fn set_visibility(&self, _: &str, _: u32) -> Result<(), QueueError> {
                Ok(())
            }
            async fn visible_messages(&self, _: Option<&str>) -> Result<i64, QueueError> {
                Ok(0)
            }
            async fn send_batch(&self, bodies: Vec<String>) -> Result<Vec<(String, String)>, QueueError> {
                Ok((0..bodies.len()).map(|i| (i.to_string(), "KmsAccessDenied".to_owned())).collect())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = crate::adapters::local::DirStore::new(dir.path());
        store.upload("b", "legacy/a.jpg", b"any bytes").unwrap();
        let err = run(&store, &Refusing, &request(10), &CancellationToken::new(), |_| {}).await.unwrap_err();
        assert_eq!(err.to_string(), "SendMessageBatch refused 1 job(s): KmsAccessDenied");
    }
}
