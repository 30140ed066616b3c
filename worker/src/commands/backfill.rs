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

use crate::adapters::storage::{Head, ObjectStore, S3Store};
use crate::fleet::job::{META_PRESET_FINGERPRINT, META_SOURCE_ETAG};
use anyhow::{Context as _, anyhow};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
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
    pub queue_url: String,
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

/// One listed object.
#[derive(Debug, Clone)]
struct Listed {
    key: String,
    size: u64,
    etag: Option<String>,
    modified: Option<SystemTime>,
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

/// Runs a backfill; `progress` sees the counts after each batch. Cancelling `stop` ends it after
/// the batch in hand, with `complete` false and a resume key.
pub async fn run(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    request: &BackfillRequest,
    stop: &CancellationToken,
    mut progress: impl FnMut(&BackfillSummary),
) -> anyhow::Result<BackfillSummary> {
    if request.rate.is_nan() || request.rate <= 0.0 {
        return Err(anyhow!("the rate must be above 0 messages a second"));
    }
    let store = S3Store::new(s3.clone());
    let fingerprint = request.preset.fingerprint();
    let batch_size = (request.rate.floor() as usize).clamp(1, 10);
    let mut pacer = Pacer::new(request.rate);
    let mut summary = BackfillSummary::default();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&request.bucket)
            .prefix(&request.prefix)
            .set_start_after(request.start_after.clone().filter(|_| token.is_none()))
            .set_continuation_token(token.clone())
            .max_keys(request.page_size)
            // Keys may hold characters XML cannot carry; S3 then needs URL encoding.
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "ListObjectsV2 s3://{}/{}: {}",
                    request.bucket,
                    request.prefix,
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })?;
        let mut objects: Vec<Listed> = page
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: imgfleet_shared::envelope::decode_s3_key(o.key()?).ok()?,
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: o.e_tag().map(|t| t.trim_matches('"').to_owned()),
                    modified: o.last_modified().and_then(|t| SystemTime::try_from(*t).ok()),
                })
            })
            .collect();
        if let Some(limit) = request.limit {
            objects.truncate(limit.saturating_sub(summary.listed) as usize);
        }
        let checks = futures_util::stream::iter(objects)
            .map(|o| async {
                let need = if wanted(request, &o) { check(&store, request, &fingerprint, &o).await? } else { None };
                anyhow::Ok((o, need))
            })
            .buffered(CHECKS_IN_FLIGHT);
        tokio::pin!(checks);
        let mut batch: Vec<Listed> = Vec::new();
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
                batch.push(object);
            }
            if batch.len() >= batch_size {
                send(sqs, request, &mut pacer, &mut batch, &mut summary).await?;
                progress(&summary);
            }
            // Every object up to this one is handled once any pending batch is sent, which happens
            // before this function returns.
            summary.last_key = Some(key);
            if stop.is_cancelled() {
                stopped = true;
                break;
            }
        }
        send(sqs, request, &mut pacer, &mut batch, &mut summary).await?;
        progress(&summary);
        let at_limit = request.limit.is_some_and(|l| summary.listed >= l);
        token = page.next_continuation_token().map(str::to_owned);
        if stopped || at_limit || token.is_none() {
            summary.complete = !stopped && !at_limit;
            return Ok(summary);
        }
    }
}

/// Whether a listed object is a candidate at all.
fn wanted(request: &BackfillRequest, o: &Listed) -> bool {
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
async fn check(
    store: &S3Store,
    request: &BackfillRequest,
    fingerprint: &str,
    o: &Listed,
) -> anyhow::Result<Option<Need>> {
    let bucket = request.output_bucket.as_deref().unwrap_or(&request.bucket);
    let Ok(keys) = request.key_template.preset_keys(&request.output_prefix, &o.key, &request.preset) else {
        return Ok(None);
    };
    let heads = futures_util::future::join_all(keys.iter().map(|k| store.head(bucket, k))).await;
    let mut need = Need::UpToDate;
    for head in heads {
        match head.context("reading rendition metadata")? {
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

/// Sends `batch` as one `SendMessageBatch` (paced), unless this is a dry run.
async fn send(
    sqs: &aws_sdk_sqs::Client,
    request: &BackfillRequest,
    pacer: &mut Pacer,
    batch: &mut Vec<Listed>,
    summary: &mut BackfillSummary,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    if !request.dry_run {
        pacer.admit(batch.len()).await;
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let mut job = serde_json::json!({"v": 1, "bucket": request.bucket, "key": o.key, "size": o.size});
                if let Some(etag) = &o.etag {
                    job["etag"] = etag.clone().into();
                }
                if let Some(preset) = &request.preset_name {
                    job["preset"] = preset.clone().into();
                }
                SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(job.to_string()).build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = sqs
            .send_message_batch()
            .queue_url(&request.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| anyhow!("SendMessageBatch: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        if let Some(failed) = out.failed().first() {
            return Err(anyhow!("SendMessageBatch refused {} job(s): {}", out.failed().len(), failed.code()));
        }
        summary.enqueued += batch.len() as u64;
    }
    batch.clear();
    Ok(())
}

/// Parses `2026-01-31` or an RFC 3339 time (`2026-01-31T12:00:00Z`).
pub fn parse_since(text: &str) -> anyhow::Result<SystemTime> {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    let t = DateTime::from_str(&full, DateTimeFormat::DateTime)
        .map_err(|_| anyhow!("--since {text:?} is not a date like 2026-01-31 or 2026-01-31T12:00:00Z"))?;
    SystemTime::try_from(t).map_err(|_| anyhow!("--since {text:?} is out of range"))
}

/// Parses `50` or `50/s`.
pub fn parse_rate(text: &str) -> anyhow::Result<f64> {
    let n = text.trim().trim_end_matches("/s").trim();
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(anyhow!("--rate {text:?} is not a positive number of messages a second, like 50 or 50/s")),
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
}
