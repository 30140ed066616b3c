//! What a run leaves behind: the table on the terminal, `report.json` and `chart.svg` in the
//! output folder, plus the progress-bar and table helpers the subcommands share.

use crate::chart::{self, Chart};
use crate::e2e::{E2eArgs, E2eRun, Pace, StreamStats, UploadStats};
use crate::ledger::{Lost, Sample};
use crate::stats::Summary;
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn bar(len: u64, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} {bar:40} {pos}/{len} images {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(what);
    bar
}

/// Two aligned columns.
pub fn rows(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("  {k:<width$}  {v}\n")).collect()
}

/// The table's last line: what the three latency rows measure.
const LATENCY_NOTE: &str = "  (latency: PutObject returned → event read; by stamp: → the event's timestamp_ms; worker job: its timings.total_ms)\n";

/// One latency cell of the table: p50, p95, p99 and max in milliseconds, or `no samples`.
fn percentiles(s: &Summary) -> String {
    match s.count {
        0 => "no samples".to_owned(),
        n => format!("p50 {:.0}  p95 {:.0}  p99 {:.0}  max {:.0}  (n={n})", s.p50, s.p95, s.p99, s.max),
    }
}

/// `report.json` of an end-to-end run.
#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    pub run_id: String,
    pub started_at_ms: u64,
    pub bucket: String,
    pub prefix: String,
    pub stream: String,
    pub images: PathBuf,
    pub image_files: usize,
    /// `rate` or `burst`.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    pub concurrency: usize,
    pub count: usize,
    pub timeout_s: f64,
    pub uploads: UploadStats,
    /// Completed events per second, first upload sent → last event read.
    pub throughput_per_s: f64,
    pub span_s: f64,
    pub completed: usize,
    pub failed: usize,
    pub failures: BTreeMap<String, usize>,
    /// Uploads with no event within the timeout: must be 0.
    pub lost: usize,
    pub lost_jobs: Vec<Lost>,
    pub duplicates: usize,
    pub duplicate_keys: usize,
    /// PutObject returned → event read, over completed jobs.
    pub latency_ms: Summary,
    /// PutObject returned → event read, over completed and failed jobs.
    pub latency_all_ms: Summary,
    /// PutObject returned → the event's `timestamp_ms` (the worker's clock), completed jobs.
    pub stamp_latency_ms: Summary,
    /// The workers' `timings.total_ms` of completed jobs (fetch → store).
    pub job_ms: Summary,
    pub stream_stats: StreamStats,
    pub samples: Vec<Sample>,
}

impl E2eReport {
    pub fn new(run_id: &str, args: &E2eArgs, run: E2eRun) -> Self {
        let t = run.tally;
        let completed = || t.samples.iter().filter(|s| s.error_kind.is_none());
        Self {
            run_id: run_id.to_owned(),
            started_at_ms: run.started_at_ms,
            bucket: args.bucket.clone(),
            prefix: args.prefix.clone(),
            stream: args.stream.clone(),
            images: args.images.clone(),
            image_files: run.image_files,
            mode: match args.pace {
                Pace::Rate(_) => "rate",
                Pace::Burst => "burst",
            },
            rate_per_s: match args.pace {
                Pace::Rate(r) => Some(r),
                Pace::Burst => None,
            },
            concurrency: args.concurrency,
            count: args.count,
            timeout_s: args.timeout.as_secs_f64(),
            uploads: run.uploads,
            throughput_per_s: t.throughput(),
            span_s: t.span_ms / 1000.0,
            completed: t.completed,
            failed: t.failed,
            failures: t.failures.clone(),
            lost: t.lost.len(),
            lost_jobs: t.lost.clone(),
            duplicates: t.duplicates,
            duplicate_keys: t.duplicate_keys,
            latency_ms: Summary::of(completed().map(|s| s.latency_ms)),
            latency_all_ms: Summary::of(t.samples.iter().map(|s| s.latency_ms)),
            stamp_latency_ms: Summary::of(completed().map(|s| s.stamp_latency_ms)),
            job_ms: Summary::of(completed().filter_map(|s| s.job_ms)),
            stream_stats: run.stream,
            samples: t.samples.clone(),
        }
    }

    /// Lost jobs or failed uploads make the run fail.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.uploads.failed == 0 && self.uploads.ok == self.count
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut table = self.outcome_rows();
        table.extend(self.latency_rows());
        table.push(("failures", self.failures_cell()));
        table.extend(self.stream_row());
        self.heading() + &rows(&table) + LATENCY_NOTE
    }

    /// The table's heading line: the run, its pace, the bucket and the stream.
    fn heading(&self) -> String {
        let pace = match self.rate_per_s {
            Some(r) => format!("at {r} uploads/s, up to {} in flight", self.concurrency),
            None => format!("burst, {} in flight", self.concurrency),
        };
        format!(
            "imgfleet e2e run {}: {} uploads of {} image file(s) ({pace}) to s3://{}/{}, events from Redis stream {}\n",
            self.run_id, self.count, self.image_files, self.bucket, self.prefix, self.stream
        )
    }

    /// The table's outcome rows: uploads, events, lost jobs and throughput.
    fn outcome_rows(&self) -> Vec<(&'static str, String)> {
        let u = &self.uploads;
        vec![
            (
                "uploads",
                format!(
                    "{} ok, {} failed in {:.2} s ({:.1}/s, {:.1} MB); PutObject p50 {:.0} ms, p99 {:.0} ms",
                    u.ok,
                    u.failed,
                    u.seconds,
                    u.per_s,
                    u.bytes as f64 / 1e6,
                    u.put_ms.p50,
                    u.put_ms.p99
                ),
            ),
            (
                "events",
                format!(
                    "{} completed, {} failed; {} duplicate(s) on {} key(s)",
                    self.completed, self.failed, self.duplicates, self.duplicate_keys
                ),
            ),
            (
                "lost",
                format!(
                    "{}{}",
                    self.lost,
                    if self.lost == 0 { String::new() } else { format!("  <-- no event within {} s", self.timeout_s) }
                ),
            ),
            (
                "throughput",
                format!("{:.2} completed/s (first upload → last event: {:.2} s)", self.throughput_per_s, self.span_s),
            ),
        ]
    }

    /// The table's latency rows: upload → event read, → the event's stamp, and the workers' job time.
    fn latency_rows(&self) -> [(&'static str, String); 3] {
        [
            ("latency ms", percentiles(&self.latency_ms)),
            ("  by stamp", percentiles(&self.stamp_latency_ms)),
            ("worker job ms", percentiles(&self.job_ms)),
        ]
    }

    /// The table's failures cell: each failure kind with its count, or `none`.
    fn failures_cell(&self) -> String {
        match self.failures.is_empty() {
            true => "none".to_owned(),
            false => self.failures.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        }
    }

    /// The table's stream row, only when the reader ignored, could not read or failed on something.
    fn stream_row(&self) -> Option<(&'static str, String)> {
        let s = &self.stream_stats;
        (s.ignored + s.unreadable + s.redis_errors > 0).then(|| {
            (
                "stream",
                format!(
                    "{} ignored (other runs), {} unreadable, {} Redis error(s)",
                    s.ignored, s.unreadable, s.redis_errors
                ),
            )
        })
    }

    /// Writes `report.json` and `chart.svg` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = dir.join("report.json");
        let text = serde_json::to_string_pretty(self).context("cannot serialise the report")?;
        std::fs::write(&json, text + "\n").with_context(|| format!("cannot write {}", json.display()))?;
        let svg = dir.join("chart.svg");
        let chart = Chart {
            title: format!("imgfleet e2e {}: upload → event latency", self.run_id),
            subtitle: format!(
                "{} uploads ({}), {} completed, {} failed, {} lost · {} · {:.2} completed/s",
                self.count,
                self.rate_per_s.map_or_else(|| "burst".to_owned(), |r| format!("{r}/s")),
                self.completed,
                self.failed,
                self.lost,
                match self.latency_ms.count {
                    0 => "no completed jobs".to_owned(),
                    _ => format!(
                        "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms",
                        self.latency_ms.p50, self.latency_ms.p95, self.latency_ms.p99
                    ),
                },
                self.throughput_per_s
            ),
            samples: &self.samples,
            lost: &self.lost_jobs,
        };
        std::fs::write(&svg, chart::svg(&chart)).with_context(|| format!("cannot write {}", svg.display()))?;
        Ok((json, svg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Ledger, Seen, Upload};
    use std::time::Duration;

    #[test]
    fn report_from_a_synthetic_run() {
        let mut ledger = Ledger::new("b", (0..3).map(|i| format!("p/{i}")));
        for i in 0..3 {
            ledger.upload(Upload { key: format!("p/{i}"), index: i, sent_ms: 0.0, done_ms: 10.0, bytes: 5 });
        }
        let seen = |i: usize, ms: f64| Seen {
            key: format!("p/{i}"),
            read_ms: ms,
            stamp_ms: ms,
            completed: true,
            error_kind: None,
            job_ms: Some(5.0),
        };
        ledger.event("b", seen(0, 110.0));
        ledger.event("b", seen(1, 210.0));
        let args = E2eArgs {
            images: "imgs".into(),
            glob: "*".into(),
            count: 3,
            pace: Pace::Burst,
            concurrency: 4,
            timeout: Duration::from_secs(1),
            linger: Duration::ZERO,
            bucket: "b".into(),
            prefix: "p/".into(),
            redis_url: String::new(),
            stream: "s".into(),
        };
        let run = E2eRun {
            tally: ledger.settle(1000.0),
            uploads: UploadStats { ok: 3, ..UploadStats::default() },
            stream: StreamStats::default(),
            started_at_ms: 0,
            image_files: 1,
        };
        let report = E2eReport::new("r1", &args, run);
        assert_eq!((report.completed, report.lost), (2, 1));
        assert!(!report.ok());
        assert_eq!(report.latency_ms.p50, 150.0);
        assert!(report.table().contains("no event within 1 s"));
        let dir = tempfile::tempdir().unwrap();
        let (json, svg) = report.write(dir.path()).unwrap();
        let back: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        assert_eq!(back["lost"], 1);
        assert_eq!(back["lost_jobs"][0]["key"], "p/2");
        assert!(std::fs::read_to_string(svg).unwrap().contains("Latency histogram"));
    }
}
