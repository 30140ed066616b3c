//! The accounting of an end-to-end run: which uploads got an event, how late, which got none
//! (lost), which got more than one (duplicates), and why jobs failed.
//!
//! Plain data, no I/O: [`crate::e2e`] feeds it uploads as PutObject returns and events as they are
//! read from the stream, in whatever order they arrive, and [`Ledger::settle`] matches them at the
//! end. Times are milliseconds since the start of the run.

use imgfleet_shared::event::{Event, EventType};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One object uploaded by this run.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub key: String,
    /// Position in the run (0-based).
    pub index: usize,
    /// When PutObject was sent.
    pub sent_ms: f64,
    /// When PutObject returned: the upload time latencies are measured from.
    pub done_ms: f64,
    pub bytes: u64,
}

/// One event read from the stream about an object of this run.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub key: String,
    /// When the event was read.
    pub read_ms: f64,
    /// The event's own `timestamp_ms`, moved onto the run's clock (another host's clock on AWS).
    pub stamp_ms: f64,
    pub completed: bool,
    /// `error.kind` of a failure event.
    pub error_kind: Option<String>,
    /// The worker's whole job time (`timings.total_ms`), when the event carries it.
    pub job_ms: Option<f64>,
}

impl Seen {
    /// The parts of an event the ledger needs; `run_start_epoch_ms` is the run's start on the wall clock.
    pub fn from_event(event: &Event, read_ms: f64, run_start_epoch_ms: f64) -> Self {
        Self {
            key: event.source.key.clone(),
            read_ms,
            stamp_ms: event.timestamp_ms as f64 - run_start_epoch_ms,
            completed: event.kind == EventType::Completed,
            error_kind: event.error.as_ref().map(|e| e.kind.to_string()),
            job_ms: event.timings.map(|t| t.total_ms),
        }
    }
}

/// One upload and its first event: a point of the latency chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub index: usize,
    pub key: String,
    /// When PutObject returned.
    pub upload_ms: f64,
    /// Upload returned → event read.
    pub latency_ms: f64,
    /// Upload returned → the event's `timestamp_ms`.
    pub stamp_latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_ms: Option<f64>,
    /// `None` for a completion, the `error.kind` of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
}

/// An upload that got no event within the timeout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lost {
    pub index: usize,
    pub key: String,
    pub upload_ms: f64,
    /// Set when an event did come, but later than the timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_latency_ms: Option<f64>,
}

/// The settled accounts of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub uploaded: usize,
    /// Uploads whose first event is a completion / a failure.
    pub completed: usize,
    pub failed: usize,
    /// First events by `error.kind`.
    pub failures: BTreeMap<String, usize>,
    /// Uploads with no event within the timeout (including late ones).
    pub lost: Vec<Lost>,
    /// Events beyond the first for an upload, and how many uploads had any.
    pub duplicates: usize,
    pub duplicate_keys: usize,
    /// Every upload that got an event, in upload order.
    pub samples: Vec<Sample>,
    /// First PutObject sent → last first-event read, in milliseconds.
    pub span_ms: f64,
}

impl Tally {
    /// Completed events per second between the first upload and the last event.
    pub fn throughput(&self) -> f64 {
        if self.span_ms > 0.0 { self.completed as f64 * 1000.0 / self.span_ms } else { 0.0 }
    }
}

/// Uploads and events of one run, matched by object key.
#[derive(Debug, Default)]
pub struct Ledger {
    bucket: String,
    planned: HashSet<String>,
    uploads: HashMap<String, Upload>,
    events: HashMap<String, Vec<Seen>>,
    /// Events read for objects of other runs (or other buckets): ignored.
    pub ignored: usize,
}

impl Ledger {
    /// A ledger for uploads of `planned` keys to `bucket`.
    pub fn new(bucket: &str, planned: impl IntoIterator<Item = String>) -> Self {
        Self { bucket: bucket.to_owned(), planned: planned.into_iter().collect(), ..Self::default() }
    }

    /// Records a successful upload.
    pub fn upload(&mut self, upload: Upload) {
        self.uploads.insert(upload.key.clone(), upload);
    }

    /// Records an event; returns false (and ignores it) when it is not about this run's objects.
    pub fn event(&mut self, bucket: &str, seen: Seen) -> bool {
        if bucket != self.bucket || !self.planned.contains(&seen.key) {
            self.ignored += 1;
            return false;
        }
        self.events.entry(seen.key.clone()).or_default().push(seen);
        true
    }

    /// Uploads recorded so far.
    pub fn uploaded(&self) -> usize {
        self.uploads.len()
    }

    /// Uploads that have at least one event so far.
    pub fn answered(&self) -> usize {
        self.uploads.keys().filter(|k| self.events.contains_key(*k)).count()
    }

    /// Matches uploads with their events. An upload whose first event came more than `timeout_ms`
    /// after it (or never) is lost; an event for a key whose upload failed is not counted.
    pub fn settle(&self, timeout_ms: f64) -> Tally {
        let mut uploads: Vec<&Upload> = self.uploads.values().collect();
        uploads.sort_by_key(|u| u.index);
        let mut tally = Tally { uploaded: uploads.len(), ..Tally::default() };
        let mut last_event_ms = f64::NEG_INFINITY;
        for upload in &uploads {
            let events = self.events.get(&upload.key).map(Vec::as_slice).unwrap_or_default();
            let Some(first) = events.iter().min_by(|a, b| a.read_ms.total_cmp(&b.read_ms)) else {
                tally.lost.push(Lost {
                    index: upload.index,
                    key: upload.key.clone(),
                    upload_ms: upload.done_ms,
                    late_latency_ms: None,
                });
                continue;
            };
            tally.duplicates += events.len() - 1;
            tally.duplicate_keys += usize::from(events.len() > 1);
            let latency_ms = first.read_ms - upload.done_ms;
            if latency_ms > timeout_ms {
                tally.lost.push(Lost {
                    index: upload.index,
                    key: upload.key.clone(),
                    upload_ms: upload.done_ms,
                    late_latency_ms: Some(latency_ms),
                });
            }
            if first.completed {
                tally.completed += 1;
            } else {
                tally.failed += 1;
                *tally.failures.entry(first.error_kind.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1;
            }
            last_event_ms = last_event_ms.max(first.read_ms);
            tally.samples.push(Sample {
                index: upload.index,
                key: upload.key.clone(),
                upload_ms: upload.done_ms,
                latency_ms,
                stamp_latency_ms: first.stamp_ms - upload.done_ms,
                job_ms: first.job_ms,
                error_kind: if first.completed { None } else { first.error_kind.clone() },
            });
        }
        let first_sent_ms = uploads.iter().map(|u| u.sent_ms).fold(f64::INFINITY, f64::min);
        if first_sent_ms.is_finite() && last_event_ms.is_finite() {
            tally.span_ms = (last_event_ms - first_sent_ms).max(0.0);
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(index: usize, done_ms: f64) -> Upload {
        Upload { key: format!("uploads/lt/{index}.jpg"), index, sent_ms: done_ms - 5.0, done_ms, bytes: 100 }
    }

    fn seen(index: usize, read_ms: f64) -> Seen {
        Seen {
            key: format!("uploads/lt/{index}.jpg"),
            read_ms,
            stamp_ms: read_ms - 1.0,
            completed: true,
            error_kind: None,
            job_ms: Some(50.0),
        }
    }

    fn failure(index: usize, read_ms: f64, kind: &str) -> Seen {
        Seen { completed: false, error_kind: Some(kind.into()), job_ms: None, ..seen(index, read_ms) }
    }

    fn ledger(n: usize) -> Ledger {
        Ledger::new("b", (0..n).map(|i| format!("uploads/lt/{i}.jpg")))
    }

    #[test]
    fn every_upload_answered_once() {
        let mut l = ledger(3);
        // Events may be read before the upload's record arrives.
        assert!(l.event("b", seen(1, 300.0)));
        for i in 0..3 {
            l.upload(upload(i, 100.0 * i as f64 + 10.0));
        }
        assert!(l.event("b", seen(0, 200.0)));
        assert!(l.event("b", seen(2, 400.0)));
        assert_eq!(l.answered(), 3);
        let t = l.settle(10_000.0);
        assert_eq!((t.uploaded, t.completed, t.failed, t.duplicates), (3, 3, 0, 0));
        assert!(t.lost.is_empty());
        let latencies: Vec<f64> = t.samples.iter().map(|s| s.latency_ms).collect();
        assert_eq!(latencies, vec![190.0, 190.0, 190.0]);
        assert_eq!(t.samples[0].stamp_latency_ms, 189.0);
        // First PutObject sent at 5 ms, last event read at 400 ms: 3 completions in 0.395 s.
        assert_eq!(t.span_ms, 395.0);
        assert!((t.throughput() - 3.0 / 0.395).abs() < 1e-9);
    }

    #[test]
    fn lost_duplicates_failures_and_foreign_events() {
        let mut l = ledger(5);
        for i in 0..4 {
            l.upload(upload(i, 0.0));
        }
        // Index 4 was planned but its upload failed: its event does not count anywhere.
        l.event("b", seen(4, 50.0));
        l.event("b", seen(0, 100.0));
        l.event("b", seen(0, 150.0)); // duplicate
        l.event("b", seen(0, 160.0)); // and another
        l.event("b", failure(1, 120.0, "corrupt"));
        l.event("b", seen(2, 9_000.0)); // later than the timeout: lost, though it came
        // Index 3 gets nothing. Events of other runs and buckets are ignored.
        assert!(!l.event("b", Seen { key: "uploads/other/0.jpg".into(), ..seen(0, 10.0) }));
        assert!(!l.event("other-bucket", seen(3, 10.0)));
        assert_eq!(l.ignored, 2);
        assert_eq!(l.answered(), 3);

        let t = l.settle(5_000.0);
        assert_eq!(t.uploaded, 4);
        assert_eq!((t.completed, t.failed), (2, 1));
        assert_eq!(t.failures.get("corrupt"), Some(&1));
        assert_eq!((t.duplicates, t.duplicate_keys), (2, 1));
        let lost: Vec<(usize, Option<f64>)> = t.lost.iter().map(|x| (x.index, x.late_latency_ms)).collect();
        assert_eq!(lost, vec![(2, Some(9_000.0)), (3, None)]);
        assert_eq!(t.samples.len(), 3, "the late event still has a latency");
        assert_eq!(t.samples[1].error_kind.as_deref(), Some("corrupt"));
    }

    #[test]
    fn nothing_uploaded() {
        let t = ledger(2).settle(1_000.0);
        assert_eq!(t, Tally::default());
        assert_eq!(t.throughput(), 0.0);
    }
}
