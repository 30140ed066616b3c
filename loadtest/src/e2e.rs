//! `imgfleet-loadtest e2e`: uploads objects to a real bucket (moto locally, or AWS) whose
//! notifications feed the fleet, and times each upload's completion event on the Redis stream.
//!
//! Order of a run: read the images into memory → take the stream's current end (before any upload,
//! so no event of this run can be missed) → start reading events → upload `count` objects under
//! the run's prefix, cycling through the images, at a fixed rate or all at once with bounded
//! concurrency → stop when every upload has its event (plus a short linger for duplicates), or
//! `timeout` after the last upload returned → settle the [`Ledger`]. Every wait is bounded: each
//! PutObject, each XREAD, the run as a whole.

use crate::inputs::{self, Image};
use crate::ledger::{Ledger, Seen, Tally, Upload};
use crate::setup::Clients;
use crate::stats::Summary;
use crate::stream::{Entry, StreamReader};
use aws_sdk_s3::primitives::ByteStream;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long one PutObject may take (the SDK's own retries included).
const PUT_TIMEOUT: Duration = Duration::from_secs(60);
/// Consecutive Redis errors after which the reader gives up.
const MAX_READ_ERRORS: u32 = 30;
/// Extra time the whole run may take beyond uploads + timeout + linger.
const RUN_SLACK: Duration = Duration::from_secs(60);
/// The longest schedule of uploads a run accepts.
const MAX_UPLOAD_SPAN: Duration = Duration::from_secs(86_400);
/// Errors kept verbatim in the report (the rest are only counted).
const KEEP_ERRORS: usize = 5;

/// How uploads are spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Uploads per second, started on a fixed schedule.
    Rate(f64),
    /// All at once, `concurrency` in flight.
    Burst,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct E2eArgs {
    pub images: PathBuf,
    pub glob: String,
    pub count: usize,
    pub pace: Pace,
    /// PutObjects in flight at most.
    pub concurrency: usize,
    /// An upload with no event this long after it returned is lost.
    pub timeout: Duration,
    /// How long to keep reading after the last expected event, to catch duplicates.
    pub linger: Duration,
    pub bucket: String,
    pub prefix: String,
    pub redis_url: String,
    pub stream: String,
}

/// How the uploads went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadStats {
    pub ok: usize,
    pub failed: usize,
    /// The first few errors, verbatim.
    pub errors: Vec<String>,
    pub bytes: u64,
    /// First PutObject sent → last returned.
    pub seconds: f64,
    pub per_s: f64,
    /// PutObject round trips.
    pub put_ms: Summary,
}

/// How reading the stream went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamStats {
    /// The ID reading started after.
    pub start_id: String,
    /// Entries of other runs (or buckets) read and ignored.
    pub ignored: usize,
    /// Entries whose `event` field is missing or not a valid event.
    pub unreadable: usize,
    pub redis_errors: usize,
    pub errors: Vec<String>,
}

/// Everything a run measured; [`crate::report`] turns it into the table, JSON and chart.
#[derive(Debug, Clone)]
pub struct E2eRun {
    pub tally: Tally,
    pub uploads: UploadStats,
    pub stream: StreamStats,
    /// Start of the run on the wall clock, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    pub image_files: usize,
}

/// One planned upload.
#[derive(Debug, Clone)]
struct Planned {
    key: String,
    image: usize,
}

/// What an upload task reports.
#[derive(Debug)]
struct UploadDone {
    index: usize,
    sent_ms: f64,
    done_ms: f64,
    bytes: u64,
    result: Result<(), String>,
}

/// What the reader task reports.
#[derive(Debug)]
enum ReaderMsg {
    Entries(f64, Vec<Entry>),
    Error(String),
}

/// The object keys of a run: `<prefix><index>-<image file name>`.
fn plan(prefix: &str, images: &[Image], count: usize) -> Vec<Planned> {
    (0..count)
        .map(|i| {
            let image = i % images.len();
            Planned { key: format!("{prefix}{i:05}-{}", images[image].name), image }
        })
        .collect()
}

/// Milliseconds since `t0`.
fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1000.0
}

/// Runs the load and settles the accounts.
pub async fn run(args: &E2eArgs) -> anyhow::Result<E2eRun> {
    let upload_span = check_args(args)?;
    let Setup { images, planned, clients, reader, start_id } = Setup::prepare(args).await?;
    let clock = Clock::start(args, upload_span);
    let (tasks, mut inbox) = start_tasks(args, clients, reader, &images, &planned, clock.t0);
    let mut run = Accounts::new(args, Arc::clone(&planned));
    run.stream.start_id = start_id;
    run.wait_for_events(args, clock, &mut inbox).await;
    run.stop(tasks, inbox.events).await;
    Ok(run.settle(args.timeout, clock.started_at_ms, images.len()))
}

/// Checking the arguments; returns how long the schedule of uploads takes (zero for a burst).
fn check_args(args: &E2eArgs) -> anyhow::Result<Duration> {
    anyhow::ensure!(args.count >= 1, "--count must be at least 1");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    Ok(match args.pace {
        Pace::Rate(r) => {
            anyhow::ensure!(r.is_finite() && r > 0.0, "--rate must be a positive number of uploads per second");
            Duration::try_from_secs_f64(args.count as f64 / r)
                .ok()
                .filter(|d| *d <= MAX_UPLOAD_SPAN)
                .ok_or_else(|| anyhow::anyhow!("--count / --rate must not take more than {MAX_UPLOAD_SPAN:?}"))?
        }
        Pace::Burst => Duration::ZERO,
    })
}

/// What a run has before its clock starts: the images, the keys, the clients and the stream's current end.
#[derive(Debug)]
struct Setup {
    images: Arc<Vec<Image>>,
    planned: Arc<Vec<Planned>>,
    clients: Clients,
    reader: StreamReader,
    /// The ID reading starts after.
    start_id: String,
}

impl Setup {
    /// Setting up: reads the images, plans the keys, makes the clients and takes the stream's current end.
    async fn prepare(args: &E2eArgs) -> anyhow::Result<Self> {
        let images = Arc::new(inputs::load(&args.images, &args.glob)?);
        let planned = Arc::new(plan(&args.prefix, &images, args.count));
        let clients = Clients::from_env().await;
        let reader = StreamReader::connect(&args.redis_url, &args.stream).await?;
        let start_id = reader.position().to_owned();
        Ok(Self { images, planned, clients, reader, start_id })
    }
}

/// When a run started (on the monotonic and on the wall clock) and when it stops whatever happens.
#[derive(Debug, Clone, Copy)]
struct Clock {
    t0: Instant,
    /// On the wall clock, in milliseconds since the Unix epoch.
    started_at_ms: u64,
    hard_deadline: Instant,
}

impl Clock {
    /// Starting the clock: now, and the deadline after the uploads, the timeout, the linger and some slack.
    fn start(args: &E2eArgs, upload_span: Duration) -> Self {
        let t0 = Instant::now();
        let started_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let hard_deadline = t0 + upload_span + args.timeout + args.linger + RUN_SLACK;
        Self { t0, started_at_ms, hard_deadline }
    }
}

/// The uploader and the stream reader, running.
#[derive(Debug)]
struct Tasks {
    uploader: JoinHandle<()>,
    reader: JoinHandle<()>,
}

/// What the uploader and the reader report on.
#[derive(Debug)]
struct Inbox {
    uploads: mpsc::UnboundedReceiver<UploadDone>,
    events: mpsc::UnboundedReceiver<ReaderMsg>,
}

/// Uploading and reading: spawns the uploader and the stream reader.
fn start_tasks(
    args: &E2eArgs,
    clients: Clients,
    reader: StreamReader,
    images: &Arc<Vec<Image>>,
    planned: &Arc<Vec<Planned>>,
    t0: Instant,
) -> (Tasks, Inbox) {
    let (up_tx, uploads) = mpsc::unbounded_channel();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let uploader = tokio::spawn(upload_all(clients, args.clone(), Arc::clone(images), Arc::clone(planned), t0, up_tx));
    let reader = tokio::spawn(read_events(reader, t0, ev_tx));
    (Tasks { uploader, reader }, Inbox { uploads, events })
}

/// The running accounts of a run: uploads as they return, events as they are read, and the bars.
struct Accounts {
    planned: Arc<Vec<Planned>>,
    ledger: Ledger,
    uploads: UploadStats,
    stream: StreamStats,
    put_ms: Vec<f64>,
    first_sent_ms: f64,
    last_done_ms: f64,
    bars: Bars,
}

impl Accounts {
    fn new(args: &E2eArgs, planned: Arc<Vec<Planned>>) -> Self {
        Self {
            ledger: Ledger::new(&args.bucket, planned.iter().map(|p| p.key.clone())),
            planned,
            uploads: UploadStats::default(),
            stream: StreamStats::default(),
            put_ms: Vec::new(),
            first_sent_ms: f64::INFINITY,
            last_done_ms: 0.0,
            bars: Bars::new(args.count as u64),
        }
    }

    fn uploaded(&mut self, done: UploadDone) {
        self.first_sent_ms = self.first_sent_ms.min(done.sent_ms);
        self.last_done_ms = self.last_done_ms.max(done.done_ms);
        let key = self.planned[done.index].key.clone();
        match done.result {
            Ok(()) => {
                self.uploads.ok += 1;
                self.uploads.bytes += done.bytes;
                self.put_ms.push(done.done_ms - done.sent_ms);
                self.ledger.upload(Upload {
                    key,
                    index: done.index,
                    sent_ms: done.sent_ms,
                    done_ms: done.done_ms,
                    bytes: done.bytes,
                });
            }
            Err(e) => {
                self.uploads.failed += 1;
                if self.uploads.errors.len() < KEEP_ERRORS {
                    self.bars.note(&format!("upload {key} failed: {e}"));
                    self.uploads.errors.push(e);
                }
            }
        }
        self.bars.uploads.inc(1);
    }

    fn read(&mut self, read_ms: f64, run_start_epoch_ms: f64, entries: Vec<Entry>) {
        for entry in entries {
            match entry {
                Ok(event) => {
                    self.ledger.event(&event.source.bucket, Seen::from_event(&event, read_ms, run_start_epoch_ms));
                }
                Err(_) => self.stream.unreadable += 1,
            }
        }
    }

    fn reader_error(&mut self, e: String) {
        self.stream.redis_errors += 1;
        if self.stream.errors.len() < KEEP_ERRORS {
            self.bars.note(&format!("reading the event stream: {e}"));
            self.stream.errors.push(e);
        }
    }

    /// Moves the events bar; true when every upload so far has its event.
    fn show_answered(&self) -> bool {
        let answered = self.ledger.answered();
        self.bars.events.set_position(answered as u64);
        answered == self.ledger.uploaded()
    }

    /// Waiting for events: takes in uploads and events until every upload has its event (then lingers),
    /// `timeout` has passed since the last upload returned, the reader has stopped, or the hard deadline.
    async fn wait_for_events(&mut self, args: &E2eArgs, clock: Clock, inbox: &mut Inbox) {
        let (mut uploads_done, mut reader_alive) = (false, true);
        let mut answered_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let run_start_epoch_ms = clock.started_at_ms as f64;
        loop {
            tokio::select! {
                msg = inbox.uploads.recv(), if !uploads_done => match msg {
                    Some(done) => self.uploaded(done),
                    None => uploads_done = true,
                },
                msg = inbox.events.recv(), if reader_alive => match msg {
                    Some(ReaderMsg::Entries(read_ms, entries)) => self.read(read_ms, run_start_epoch_ms, entries),
                    Some(ReaderMsg::Error(e)) => self.reader_error(e),
                    None => reader_alive = false,
                },
                _ = tick.tick() => {}
            }
            let all_answered = self.show_answered();
            if uploads_done {
                if all_answered {
                    if answered_since.get_or_insert_with(Instant::now).elapsed() >= args.linger {
                        break;
                    }
                } else if ms(clock.t0) > self.last_done_ms + args.timeout.as_secs_f64() * 1000.0 || !reader_alive {
                    break;
                }
            }
            if Instant::now() > clock.hard_deadline {
                self.bars.note("the run reached its hard deadline: stopping");
                break;
            }
        }
    }

    /// Stopping: clears the bars, closes the event channel, aborts the uploader and waits for the reader.
    async fn stop(&mut self, tasks: Tasks, events: mpsc::UnboundedReceiver<ReaderMsg>) {
        self.bars.finish();
        // Closing the channel stops the reader within one BLOCK; the uploader is done or past its deadline.
        drop(events);
        tasks.uploader.abort();
        if tokio::time::timeout(crate::stream::BLOCK * 3, tasks.reader).await.is_err() {
            self.stream.errors.push("the reader did not stop in time".into());
        }
    }

    /// Collecting the results: upload totals and rates, and the ledger settled into a tally.
    fn settle(mut self, timeout: Duration, started_at_ms: u64, image_files: usize) -> E2eRun {
        self.stream.ignored = self.ledger.ignored;
        if self.first_sent_ms.is_finite() {
            self.uploads.seconds = (self.last_done_ms - self.first_sent_ms).max(0.0) / 1000.0;
            let attempted = (self.uploads.ok + self.uploads.failed) as f64;
            self.uploads.per_s = if self.uploads.seconds > 0.0 { attempted / self.uploads.seconds } else { 0.0 };
        }
        self.uploads.put_ms = Summary::of(self.put_ms);
        E2eRun {
            tally: self.ledger.settle(timeout.as_secs_f64() * 1000.0),
            uploads: self.uploads,
            stream: self.stream,
            started_at_ms,
            image_files,
        }
    }
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").field("uploads", &self.uploads).field("stream", &self.stream).finish_non_exhaustive()
    }
}

/// Starts every upload on schedule, at most `concurrency` at once, and reports each as it returns.
async fn upload_all(
    clients: Clients,
    args: E2eArgs,
    images: Arc<Vec<Image>>,
    planned: Arc<Vec<Planned>>,
    t0: Instant,
    tx: mpsc::UnboundedSender<UploadDone>,
) {
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = JoinSet::new();
    for (index, p) in planned.iter().enumerate() {
        if let Pace::Rate(rate) = args.pace {
            tokio::time::sleep_until(t0 + Duration::try_from_secs_f64(index as f64 / rate).unwrap_or(MAX_UPLOAD_SPAN))
                .await;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        let image = &images[p.image];
        let request = clients
            .s3
            .put_object()
            .bucket(&args.bucket)
            .key(&p.key)
            .content_type(inputs::content_type(&image.name))
            .body(ByteStream::from(image.bytes.clone()));
        let (tx, bytes) = (tx.clone(), image.bytes.len() as u64);
        tasks.spawn(async move {
            let sent_ms = ms(t0);
            let result = match tokio::time::timeout(PUT_TIMEOUT, request.send()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(crate::setup::aws_error(e)),
                Err(_) => Err(format!("PutObject took more than {PUT_TIMEOUT:?}")),
            };
            let done_ms = ms(t0);
            drop(permit);
            let _ = tx.send(UploadDone { index, sent_ms, done_ms, bytes, result });
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Reads the stream until the receiver is dropped or Redis fails [`MAX_READ_ERRORS`] times in a row.
async fn read_events(mut reader: StreamReader, t0: Instant, tx: mpsc::UnboundedSender<ReaderMsg>) {
    let mut errors = 0;
    while !tx.is_closed() {
        match reader.read().await {
            Ok(entries) => {
                errors = 0;
                if !entries.is_empty() && tx.send(ReaderMsg::Entries(ms(t0), entries)).is_err() {
                    return;
                }
            }
            Err(e) => {
                errors += 1;
                let _ = tx.send(ReaderMsg::Error(format!("{e:#}")));
                if errors >= MAX_READ_ERRORS {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(e) = reader.reconnect().await {
                    let _ = tx.send(ReaderMsg::Error(format!("{e:#}")));
                }
            }
        }
    }
}

/// The two progress bars: uploads returned, and uploads answered by an event.
struct Bars {
    multi: MultiProgress,
    uploads: ProgressBar,
    events: ProgressBar,
}

impl Bars {
    fn new(count: u64) -> Self {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>8} {bar:40} {pos}/{len} {per_sec} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = |name: &'static str| {
            let b = multi.add(ProgressBar::new(count));
            b.set_style(style.clone());
            b.set_prefix(name);
            b
        };
        let (uploads, events) = (bar("uploads"), bar("events"));
        Self { multi, uploads, events }
    }

    /// Prints a line above the bars.
    fn note(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    fn finish(&self) {
        self.uploads.finish_and_clear();
        self.events.finish_and_clear();
    }
}

impl std::fmt::Debug for Bars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bars").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cycle_through_the_images_under_the_prefix() {
        let image = |name: &str| Image { name: name.into(), bytes: bytes::Bytes::new() };
        let p = plan("uploads/loadtest/r1/", &[image("a.jpg"), image("b.png")], 3);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["uploads/loadtest/r1/00000-a.jpg", "uploads/loadtest/r1/00001-b.png", "uploads/loadtest/r1/00002-a.jpg"]
        );
        assert_eq!(p[2].image, 0);
    }
}
