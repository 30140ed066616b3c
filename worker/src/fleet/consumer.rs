//! The consumer: long-polls the queue while there is capacity, runs one job task per message with a
//! visibility heartbeat, and acknowledges each message by its outcome. It is the only place that
//! deletes or releases messages.
//!
//! Capacity: at most `concurrency + prefetch` messages are held at once (prefetched ones download
//! while others decode); decoding itself is bounded to `concurrency` by the job context's CPU slots.
//! Shutdown: no new receive starts; running jobs get `grace` to finish; jobs that had not started
//! decoding, and any still running when the grace ends, are made visible again immediately.
//!
//! No receipt handle is ever dropped on the floor. Every place one could be, and why it is not:
//! - A long poll in flight when shutdown begins may already have been answered (SQS marked its
//!   messages in flight): it is never abandoned. It finishes in a task of its own (within the
//!   receive wait, which is capped at the grace period) and whatever it returns is made visible
//!   again at once, batched ([`Queue::release_batch`]); the drain waits for that task.
//! - A receive that returns more messages than it had permits for (no real queue does): the
//!   extra ones are released at once, not dropped.
//! - A message task ends only after its acknowledgement (delete, retry backoff or release) has
//!   been answered, and the drain waits for every task. Deletes go through the batching deleter,
//!   whose reply each task awaits, so no delete is pending in it when the drain ends.
//! - The heartbeat and the acknowledgement are one task's sequential steps: a visibility
//!   extension is awaited before the job's result is looked at, so none can follow the ack.
//! - When the grace ends, running jobs are cut off and their messages released (visibility 0);
//!   a release that fails leaves the message to come back when its visibility ends.
//!
//! The exit comes within the grace period plus one release round trip: docs/operations.md.

use crate::adapters::events::EventSink;
use crate::adapters::queue::{MAX_BATCH, Queue, QueueError, ReceivedMessage};
use crate::adapters::storage::ObjectStore;
use crate::fleet::job::{JobContext, Outcome};
use crate::ops::metrics::{Health, Metrics};
use imgfleet_shared::envelope::{self, Action, Message};
use imgfleet_shared::event::now_ms;
use imgfleet_shared::keys;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// How the consumer polls, paces and drains.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Jobs decoding at once.
    pub concurrency: usize,
    /// Extra messages held so downloads overlap decoding.
    pub prefetch: usize,
    /// Visibility given on receive and renewed by the heartbeat.
    pub visibility: Duration,
    /// Long-poll wait (SQS allows up to 20 s).
    pub wait: Duration,
    /// Time running jobs get to finish after shutdown begins.
    pub grace: Duration,
    /// First retry delay; doubles with each delivery up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Objects under this prefix never trigger processing.
    pub output_prefix: String,
    /// Removals delete the source's renditions (otherwise they are ignored).
    pub follow_deletes: bool,
    /// Dead-letter queue whose depth is sampled into a gauge.
    pub dlq_url: Option<String>,
    /// How often queue depths are sampled.
    pub depth_interval: Duration,
}

impl ConsumerSettings {
    /// How long a message stays hidden before its `attempt`-th retry.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// What to do with a message once its work is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    Delete,
    /// Keep it; visible again after the backoff.
    Retry,
    /// Keep it; visible again at once (shutdown).
    ReleaseNow,
}

/// The consumer loop and everything its message tasks share.
pub struct Consumer<Q, S, E> {
    queue: Arc<Q>,
    jobs: Arc<JobContext<S, E>>,
    settings: ConsumerSettings,
    metrics: Metrics,
    health: Health,
}

impl<Q, S, E> std::fmt::Debug for Consumer<Q, S, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl<Q: Queue, S: ObjectStore, E: EventSink> Consumer<Q, S, E> {
    /// A consumer of `queue` running its jobs in `jobs`.
    pub fn new(queue: Q, jobs: Arc<JobContext<S, E>>, settings: ConsumerSettings, health: Health) -> Self {
        let metrics = jobs.metrics.clone();
        Self { queue: Arc::new(queue), jobs, settings, metrics, health }
    }

    /// Runs until `shutdown` is cancelled, then drains within the grace period: from then on the
    /// jobs' `stopping` token is cancelled, so a job not yet decoding gives its message back.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.settings.concurrency + this.settings.prefetch));
        let tracker = TaskTracker::new();
        let overdue = CancellationToken::new();
        let deleter = Deleter::spawn(this.queue.clone(), this.metrics.clone());
        tracker.spawn(Arc::clone(&this).sample_depths(shutdown.clone()));
        let mut failures = 0u32;
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            };
            let permits = more_permits(&slots, first);
            let mut receive = Box::pin(Arc::clone(&this).receive(permits.len()));
            let received = tokio::select! {
                r = &mut receive => Some(r),
                _ = shutdown.cancelled() => None,
            };
            let Some(received) = received else {
                // The queue may already have handed this poll its messages: finish it, give them back.
                tracker.spawn(Arc::clone(&this).release_late(receive));
                break;
            };
            let messages = match received {
                Ok(m) => m,
                Err(e) => {
                    failures += 1;
                    let pause = this.receive_failed(&e, failures);
                    tokio::select! { _ = shutdown.cancelled() => break, _ = tokio::time::sleep(pause) => continue }
                }
            };
            failures = 0;
            this.health.set_queue_ok(true, &this.metrics);
            this.dispatch(messages, permits, &tracker, &deleter, &overdue).await;
        }
        this.drain(tracker, overdue).await;
    }

    /// Counts a failed receive (the `failures`-th in a row) and says how long to pause.
    fn receive_failed(&self, e: &QueueError, failures: u32) -> Duration {
        self.queue_error(e);
        self.health.set_queue_ok(false, &self.metrics);
        let pause = self.settings.backoff(failures).min(Duration::from_secs(10));
        tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "receive failed");
        pause
    }

    /// Starts a task per received message, each holding one of `permits`; messages beyond the
    /// permits are released at once.
    async fn dispatch(
        self: &Arc<Self>,
        mut messages: Vec<ReceivedMessage>,
        permits: Vec<OwnedSemaphorePermit>,
        tracker: &TaskTracker,
        deleter: &Deleter,
        overdue: &CancellationToken,
    ) {
        if messages.is_empty() {
            self.metrics.empty_receives.inc();
            return;
        }
        self.metrics.messages_received.inc_by(messages.len() as u64);
        let extra = messages.split_off(messages.len().min(permits.len()));
        if !extra.is_empty() {
            tracing::warn!(extra = extra.len(), "the queue returned more messages than asked for: released");
            self.release_all(extra).await;
        }
        for (message, permit) in messages.into_iter().zip(permits) {
            let (this, deleter, overdue) = (Arc::clone(self), deleter.clone(), overdue.clone());
            tracker.spawn(async move {
                this.handle(message, &deleter, overdue).await;
                drop(permit);
            });
        }
    }

    /// Lets running jobs finish within the grace period; then cuts off the rest (their messages
    /// are released).
    async fn drain(&self, tracker: TaskTracker, overdue: CancellationToken) {
        tracing::info!(grace_ms = self.settings.grace.as_millis() as u64, "draining");
        self.health.set_draining(&self.metrics);
        self.jobs.stopping.cancel();
        tracker.close();
        if tokio::time::timeout(self.settings.grace, tracker.wait()).await.is_err() {
            tracing::warn!("grace period over: releasing unfinished messages");
            overdue.cancel();
            tracker.wait().await;
        }
        tracing::info!("drained");
    }

    /// One long poll for up to `max` messages (an owned future, so a drain can let it finish).
    async fn receive(self: Arc<Self>, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.queue.receive(max as i32, self.settings.wait, self.settings.visibility).await
    }

    /// Finishes a long poll that was in flight when shutdown began and releases what it got.
    async fn release_late(self: Arc<Self>, receive: impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>>) {
        match receive.await {
            Ok(messages) if !messages.is_empty() => {
                tracing::info!(messages = messages.len(), "a long poll answered during the drain: released");
                self.metrics.messages_received.inc_by(messages.len() as u64);
                self.release_all(messages).await;
            }
            Ok(_) => {}
            Err(e) => self.queue_error(&e),
        }
    }

    /// Makes messages that no job will work on visible again at once, in batches.
    async fn release_all(&self, messages: Vec<ReceivedMessage>) {
        for batch in messages.chunks(MAX_BATCH) {
            let entries = batch.iter().map(|m| (m.id.clone(), m.receipt.clone())).collect();
            match self.queue.release_batch(entries).await {
                Ok(failed) => {
                    self.metrics.messages_released.inc_by((batch.len() - failed.len()) as u64);
                    for (id, why) in failed {
                        self.metrics.aws_errors.with_label_values(&["sqs", "ChangeMessageVisibilityBatch"]).inc();
                        tracing::warn!(%id, error = %why, "release failed; the message comes back when its visibility ends");
                    }
                }
                Err(e) => {
                    self.queue_error(&e);
                    tracing::warn!(error = %e, "release failed; the messages come back when their visibility ends");
                }
            }
        }
    }

    /// Works on one message with a visibility heartbeat, then acknowledges it.
    async fn handle(&self, message: ReceivedMessage, deleter: &Deleter, overdue: CancellationToken) {
        let span = tracing::info_span!("message", id = %message.id, attempt = message.receive_count);
        async {
            self.metrics.jobs_in_flight.inc();
            self.metrics.message_receive_count.observe(f64::from(message.receive_count));
            let work = self.process(&message);
            tokio::pin!(work);
            let period = (self.settings.visibility / 2).max(Duration::from_millis(500));
            let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let ack = loop {
                tokio::select! {
                    biased;
                    ack = &mut work => break ack,
                    _ = overdue.cancelled() => break Ack::ReleaseNow,
                    _ = heartbeat.tick() => self.extend(&message).await,
                }
            };
            self.acknowledge(&message, ack, deleter).await;
            self.metrics.jobs_in_flight.dec();
        }
        .instrument(span)
        .await;
    }

    async fn extend(&self, message: &ReceivedMessage) {
        let seconds = self.settings.visibility.as_secs().max(1) as u32;
        match self.queue.set_visibility(&message.receipt, seconds).await {
            Ok(()) => self.metrics.visibility_extensions.inc(),
            Err(e) => {
                self.queue_error(&e);
                tracing::warn!(error = %e, "visibility heartbeat failed");
            }
        }
    }

    async fn acknowledge(&self, message: &ReceivedMessage, ack: Ack, deleter: &Deleter) {
        let visible_in = match ack {
            Ack::Delete => {
                match deleter.delete(&message.id, &message.receipt).await {
                    Ok(()) => {
                        self.metrics.messages_deleted.inc();
                        if let Some(sent) = message.sent_at_ms {
                            self.metrics.message_age.observe(now_ms().saturating_sub(sent) as f64 / 1000.0);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "delete failed; the message will be delivered again"),
                }
                return;
            }
            Ack::Retry => self.settings.backoff(message.receive_count),
            Ack::ReleaseNow => Duration::ZERO,
        };
        match self.queue.set_visibility(&message.receipt, visible_in.as_secs() as u32).await {
            Ok(()) => {
                self.metrics.messages_released.inc();
                tracing::info!(visible_in_s = visible_in.as_secs(), "message released");
            }
            Err(e) => {
                self.queue_error(&e);
                tracing::warn!(error = %e, "release failed; the message comes back when its visibility ends");
            }
        }
    }

    /// Parses the message and runs its jobs; returns what to do with the message.
    async fn process(&self, message: &ReceivedMessage) -> Ack {
        let requests = match envelope::parse_message(&message.body) {
            Ok(Message::Requests(r)) => r,
            Ok(Message::Test) => {
                tracing::info!("s3:TestEvent acknowledged");
                self.count("ignored", Instant::now());
                return Ack::Delete;
            }
            Err(e) => return self.poison(message, &e).await,
        };
        let mut ack = Ack::Delete;
        for request in &requests {
            let started = Instant::now();
            let wanted = match request.action {
                Action::Created => true,
                Action::Removed => self.settings.follow_deletes,
                Action::Other => false,
            };
            if !wanted || keys::is_output_key(&request.object.key, &self.settings.output_prefix) {
                tracing::info!(event = %request.event_name, key = %request.object.key, "ignored");
                self.count("ignored", started);
                continue;
            }
            let span = tracing::info_span!("job", bucket = %request.object.bucket, key = %request.object.key);
            let outcome = if request.action == Action::Removed {
                self.jobs.remove(request, message.receive_count).instrument(span).await
            } else {
                self.jobs.run(request, message.receive_count).instrument(span).await
            };
            self.count(outcome.label(), started);
            match outcome {
                Outcome::Completed(event) => {
                    tracing::info!(job_id = %event.job_id, ms = started.elapsed().as_millis() as u64, "completed")
                }
                Outcome::Failed(event) => tracing::info!(job_id = %event.job_id, "failed event published"),
                Outcome::Internal(event) => {
                    self.metrics.internal_errors.inc();
                    tracing::error!(job_id = %event.job_id, "internal error: the message is kept for the dead-letter queue");
                    ack = self.keep();
                    break;
                }
                Outcome::Deleted(event) => {
                    tracing::info!(job_id = %event.job_id, deleted = event.deleted.len(), kept = event.kept.len(), "deleted")
                }
                Outcome::Retry { kind, message: why } => {
                    tracing::warn!(%kind, error = %why, "will retry");
                    ack = self.keep();
                    break;
                }
                Outcome::Released => {
                    tracing::info!("shutting down before decoding started: released");
                    ack = Ack::ReleaseNow;
                    break;
                }
            }
        }
        ack
    }

    /// A message no parser understands: a failure event on first delivery, then it is left to the
    /// queue's redrive policy, which moves it to the dead-letter queue after its max receives.
    async fn poison(&self, message: &ReceivedMessage, error: &envelope::ParseError) -> Ack {
        self.metrics.messages_poison.inc();
        tracing::warn!(error = %error, "poison message: left for the dead-letter queue");
        self.jobs.reject_message(&message.id, message.receive_count, error).await;
        self.count("failed", Instant::now());
        Ack::Retry
    }

    /// How a message whose job must run again is kept: after the retry backoff, or, once the
    /// drain has begun, at once (another worker takes it rather than waiting out the backoff).
    fn keep(&self) -> Ack {
        if self.jobs.stopping.is_cancelled() { Ack::ReleaseNow } else { Ack::Retry }
    }

    fn count(&self, outcome: &str, started: Instant) {
        self.metrics.jobs.with_label_values(&[outcome]).inc();
        self.metrics.job_duration.with_label_values(&[outcome]).observe(started.elapsed().as_secs_f64());
    }

    fn queue_error(&self, e: &QueueError) {
        self.metrics.aws_errors.with_label_values(&["sqs", e.operation]).inc();
    }

    /// Samples queue and dead-letter queue depth into gauges until shutdown.
    async fn sample_depths(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.settings.depth_interval);
        loop {
            tokio::select! { _ = shutdown.cancelled() => return, _ = ticker.tick() => {} }
            match self.queue.visible_messages(None).await {
                Ok(n) => self.metrics.queue_messages_visible.set(n),
                Err(e) => self.queue_error(&e),
            }
            if let Some(dlq) = &self.settings.dlq_url {
                match self.queue.visible_messages(Some(dlq)).await {
                    Ok(n) => self.metrics.dlq_messages_visible.set(n),
                    Err(e) => self.queue_error(&e),
                }
            }
        }
    }
}

/// `first` and whatever more permits are free at once, up to one receive's worth.
fn more_permits(slots: &Arc<Semaphore>, first: OwnedSemaphorePermit) -> Vec<OwnedSemaphorePermit> {
    let mut permits = vec![first];
    while permits.len() < MAX_BATCH {
        match slots.clone().try_acquire_owned() {
            Ok(p) => permits.push(p),
            Err(_) => break,
        }
    }
    permits
}

type DeleteRequest = (String, String, oneshot::Sender<Result<(), String>>);

/// Collects deletes from all message tasks into `DeleteMessageBatch` calls of up to 10.
#[derive(Clone, Debug)]
struct Deleter {
    tx: mpsc::Sender<DeleteRequest>,
}

impl Deleter {
    /// How long a delete waits for companions before its batch is sent.
    const LINGER: Duration = Duration::from_millis(20);

    fn spawn<Q: Queue>(queue: Arc<Q>, metrics: Metrics) -> Self {
        let (tx, mut rx) = mpsc::channel::<DeleteRequest>(256);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + Self::LINGER;
                while batch.len() < MAX_BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(r)) => batch.push(r),
                        _ => break,
                    }
                }
                let entries = batch.iter().map(|(id, receipt, _)| (id.clone(), receipt.clone())).collect();
                match queue.delete_batch(entries).await {
                    Ok(failed) => {
                        for (id, _, reply) in batch {
                            let failure = failed.iter().find(|(f, _)| *f == id).map(|(_, why)| why.clone());
                            if failure.is_some() {
                                metrics.aws_errors.with_label_values(&["sqs", "DeleteMessageBatch"]).inc();
                            }
                            let _ = reply.send(failure.map_or(Ok(()), Err));
                        }
                    }
                    Err(e) => {
                        metrics.aws_errors.with_label_values(&["sqs", e.operation]).inc();
                        for (_, _, reply) in batch {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    async fn delete(&self, id: &str, receipt: &str) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((id.to_owned(), receipt.to_owned(), reply)).await.map_err(|_| "deleter stopped".to_owned())?;
        answer.await.map_err(|_| "deleter stopped".to_owned())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::events::PublishError;
    use crate::adapters::local::{DirStore, JsonlSink, LocalQueue};
    use crate::adapters::storage::{Deleted, Fetched, Head, ListPage, ListQuery, PutOptions, StoreError};
    use crate::fleet::job::{OutputSettings, Renderer};
    use crate::pipeline::{RenderError, RenderOptions, Rendered};
    use imgfleet_shared::ErrorKind;
    use imgfleet_shared::envelope::{ObjectRef, s3_put_notification};
    use imgfleet_shared::event::{Event, EventType};
    use imgfleet_shared::{Preset, PresetCatalog};

    const BUCKET: &str = "uploads";

    fn settings() -> ConsumerSettings {
        ConsumerSettings {
            concurrency: 1,
            prefetch: 1,
            visibility: Duration::from_secs(30),
            wait: Duration::from_secs(1),
            grace: Duration::from_secs(5),
            retry_base: Duration::ZERO,
            retry_max: Duration::ZERO,
            output_prefix: "renditions/".into(),
            follow_deletes: true,
            dlq_url: None,
            depth_interval: Duration::from_secs(3600),
        }
    }

    /// Jobs on a folder store and a JSON-lines event file, rendering with `renderer`.
    fn jobs(dir: &std::path::Path, renderer: Renderer) -> Arc<JobContext<DirStore, JsonlSink>> {
        let events = JsonlSink::create(&dir.join("events.jsonl"), true).unwrap();
        context(DirStore::new(dir.join("s3")), events, renderer)
    }

    /// Jobs on `store` and `events`, one CPU slot, rendering with `renderer`.
    fn context<S, E>(store: S, events: E, renderer: Renderer) -> Arc<JobContext<S, E>> {
        Arc::new(JobContext {
            store,
            events,
            catalog: Arc::new(PresetCatalog::default()),
            output: OutputSettings {
                bucket: None,
                prefix: "renditions/".into(),
                key_template: imgfleet_shared::config::Config::default().key_template,
                cache_control: "max-age=60".into(),
                sse: None,
                public_base_url: None,
            },
            worker_id: "test".into(),
            cpu: Arc::new(Semaphore::new(1)),
            pool: crate::fleet::pool::RenderPool::new(1),
            metrics: Metrics::new(),
            stopping: CancellationToken::new(),
            renderer,
        })
    }

    /// Uploads `body` as `key` and returns the S3 notification the bucket would send for it.
    fn upload(jobs: &JobContext<DirStore, JsonlSink>, key: &str, body: &[u8]) -> String {
        jobs.store.upload_notified(BUCKET, key, body).unwrap()
    }

    fn events(dir: &std::path::Path) -> Vec<Event> {
        std::fs::read_to_string(dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an event per line"))
            .collect()
    }

    fn consumer<Q: Queue>(queue: Q, jobs: &Arc<JobContext<DirStore, JsonlSink>>) -> Consumer<Q, DirStore, JsonlSink> {
        Consumer::new(queue, Arc::clone(jobs), settings(), Health::default())
    }

    /// Waits until `done` holds, up to 10 s of real time (tokio's clock may be paused and
    /// running ahead).
    async fn until(mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "condition not reached in 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The local queue with two misbehaviours a test can switch on: its first long poll takes its
    /// messages as soon as it starts (the server marks them in flight) and holds its answer until
    /// the test opens `gate` (a SIGTERM that arrives while SQS's answer is on its way, made
    /// deterministic); and it hands out `extra` more messages than it is asked for.
    /// It also notes when each delivery was made (tokio's clock).
    struct TestQueue {
        inner: Arc<LocalQueue>,
        gated: std::sync::atomic::AtomicBool,
        extra: i32,
        started: tokio::sync::Notify,
        gate: tokio::sync::Notify,
        delivered: std::sync::Mutex<Vec<tokio::time::Instant>>,
    }

    impl TestQueue {
        fn new(inner: &Arc<LocalQueue>, gated: bool, extra: i32) -> Self {
            let (started, gate, delivered) = Default::default();
            Self { inner: Arc::clone(inner), gated: gated.into(), extra, started, gate, delivered }
        }

        /// The times between one delivery and the next.
        fn gaps(&self) -> Vec<Duration> {
            self.delivered.lock().unwrap().windows(2).map(|w| w[1] - w[0]).collect()
        }

        fn deliveries(&self) -> usize {
            self.delivered.lock().unwrap().len()
        }
    }

    impl Queue for TestQueue {
        async fn receive(
            &self,
            max: i32,
            wait: Duration,
            visibility: Duration,
        ) -> Result<Vec<ReceivedMessage>, QueueError> {
            if !self.gated.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let got = self.inner.receive(max + self.extra, wait, visibility).await?;
                let now = tokio::time::Instant::now();
                self.delivered.lock().unwrap().extend(got.iter().map(|_| now));
                return Ok(got);
            }
            let got = self.inner.receive(max + self.extra, Duration::ZERO, visibility).await?;
            self.started.notify_one();
            self.gate.notified().await;
            Ok(got)
        }

        async fn delete_batch(&self, entries: Vec<(String, String)>) -> Result<Vec<(String, String)>, QueueError> {
            self.inner.delete_batch(entries).await
        }

        async fn set_visibility(&self, receipt: &str, seconds: u32) -> Result<(), QueueError> {
            self.inner.set_visibility(receipt, seconds).await
        }

        async fn visible_messages(&self, url: Option<&str>) -> Result<i64, QueueError> {
            self.inner.visible_messages(url).await
        }

        async fn send_batch(&self, bodies: Vec<String>) -> Result<Vec<(String, String)>, QueueError> {
            self.inner.send_batch(bodies).await
        }
    }

    #[tokio::test]
    async fn a_long_poll_answered_during_the_drain_gives_its_messages_back_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path(), crate::pipeline::render);
        let local = Arc::new(LocalQueue::new());
        for i in 0..3 {
            local.send(upload(&jobs, &format!("photos/{i}.jpg"), b"not an image"));
        }
        let queue = Arc::new(TestQueue::new(&local, true, 0));
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(consumer(Arc::clone(&queue), &jobs).run(shutdown.clone()));
        queue.started.notified().await;
        assert_eq!(local.counts(), (1, 2), "the poll holds two messages (concurrency 1 + prefetch 1)");
        shutdown.cancel();
        // The consumer has left its receive loop and begun the drain; only then does the answer come.
        until(|| jobs.stopping.is_cancelled()).await;
        queue.gate.notify_one();
        tokio::time::timeout(Duration::from_secs(10), run).await.expect("drains").unwrap();

        assert_eq!(local.counts(), (3, 0), "every message the poll took is visible again");
        assert_eq!(jobs.metrics.messages_released.get(), 2);
        assert_eq!(jobs.metrics.messages_received.get(), 2);
        assert!(events(dir.path()).is_empty(), "no job ran on them");
    }

    #[tokio::test]
    async fn messages_beyond_the_permits_are_released_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path(), crate::pipeline::render);
        let local = Arc::new(LocalQueue::new());
        for i in 0..4 {
            local.send(upload(&jobs, &format!("photos/{i}.txt"), b"not an image"));
        }
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(consumer(TestQueue::new(&local, false, 2), &jobs).run(shutdown.clone()));
        until(|| local.is_idle()).await;
        shutdown.cancel();
        run.await.unwrap();
        assert!(jobs.metrics.messages_released.get() >= 2, "the extra messages were given back");
        let events = events(dir.path());
        let mut keys: Vec<&str> = events.iter().map(|e| e.source.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["photos/0.txt", "photos/1.txt", "photos/2.txt", "photos/3.txt"],
            "each message worked on once"
        );
    }

    fn resize_bug(_: &[u8], _: &Preset, _: &RenderOptions) -> Result<Rendered, RenderError> {
        Err(crate::pipeline::resize::ResizeError::new("Size of the crop box is out of the image boundaries").into())
    }

    #[tokio::test]
    async fn an_internal_error_is_published_once_and_its_message_kept_for_the_dead_letter_queue() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path(), resize_bug);
        let queue = Arc::new(LocalQueue::new());
        queue.send(upload(&jobs, "photos/a.jpg", b"any bytes"));
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(consumer(Arc::clone(&queue), &jobs).run(shutdown.clone()));
        // Retried at once (no backoff in these settings): three deliveries, then stop.
        until(|| jobs.metrics.internal_errors.get() >= 3).await;
        shutdown.cancel();
        run.await.unwrap();

        let events = events(dir.path());
        assert_eq!(events.len(), 1, "one failure event, on the first delivery only: {events:?}");
        let error = events[0].error.as_ref().expect("a failure event");
        assert_eq!((events[0].kind, error.kind), (EventType::Failed, ErrorKind::Internal));
        assert!(error.message.contains("crop box"), "{}", error.message);
        assert_eq!(jobs.metrics.messages_deleted.get(), 0, "the message is never deleted");
        assert_eq!(queue.counts(), (1, 0), "the message is kept, visible again after the drain");
        assert!(jobs.metrics.jobs.with_label_values(&["internal"]).get() >= 3);
    }

    /// A queue whose batch delete refuses one receipt, as SQS does for an expired handle.
    struct PartlyFailingQueue;

    impl Queue for PartlyFailingQueue {
        async fn receive(&self, _: i32, _: Duration, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
            Ok(vec![])
        }

        async fn delete_batch(&self, entries: Vec<(String, String)>) -> Result<Vec<(String, String)>, QueueError> {
            Ok(entries
                .into_iter()
                .filter(|(_, r)| r == "expired")
                .map(|(id, _)| (id, "ReceiptHandleIsInvalid".into()))
                .collect())
        }

        async fn set_visibility(&self, _: &str, _: u32) -> Result<(), QueueError> {
            Ok(())
        }

        async fn visible_messages(&self, _: Option<&str>) -> Result<i64, QueueError> {
            Ok(0)
        }

        async fn send_batch(&self, _: Vec<String>) -> Result<Vec<(String, String)>, QueueError> {
            Ok(vec![])
        }
    }

    #[tokio::test]
    async fn partial_batch_delete_failures_reach_only_their_message() {
        let metrics = Metrics::new();
        let deleter = Deleter::spawn(Arc::new(PartlyFailingQueue), metrics.clone());
        let (ok, failed, also_ok) = tokio::join!(
            deleter.delete("m1", "fine"),
            deleter.delete("m2", "expired"),
            deleter.delete("m3", "fine-too")
        );
        assert_eq!(ok, Ok(()));
        assert_eq!(also_ok, Ok(()));
        assert!(failed.unwrap_err().contains("ReceiptHandleIsInvalid"));
        assert_eq!(metrics.aws_errors.with_label_values(&["sqs", "DeleteMessageBatch"]).get(), 1);
    }

    #[test]
    fn retry_backoff_doubles_with_each_delivery_up_to_the_cap() {
        let settings = ConsumerSettings {
            concurrency: 1,
            prefetch: 1,
            visibility: Duration::from_secs(30),
            wait: Duration::from_secs(20),
            grace: Duration::from_secs(25),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
            output_prefix: "renditions/".into(),
            follow_deletes: true,
            dlq_url: None,
            depth_interval: Duration::from_secs(30),
        };
        let secs: Vec<u64> = (1..=6).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60]);
        assert_eq!(settings.backoff(u32::MAX).as_secs(), 60);
    }

    /// Sources in memory; `fail_gets` makes every fetch a transient S3 failure (503). Nothing
    /// blocks, so with tokio's clock paused the consumer runs deterministically.
    #[derive(Default)]
    struct MemoryStore {
        objects: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
        fail_gets: bool,
    }

    impl ObjectStore for MemoryStore {
        async fn get(&self, bucket: &str, key: &str, _: u64) -> Result<Fetched, StoreError> {
            if self.fail_gets {
                let message = "503 SlowDown".into();
                let (bucket, key) = (bucket.into(), key.into());
                return Err(StoreError::Failed { operation: "GetObject", bucket, key, message, transient: true });
            }
            let bytes = self.objects.lock().unwrap().get(key).cloned();
            let not_found = || StoreError::NotFound { bucket: bucket.into(), key: key.into() };
            Ok(Fetched { bytes: bytes.ok_or_else(not_found)?, etag: Some("e1".into()), version_id: None })
        }

        async fn put(&self, _: &str, key: &str, body: Vec<u8>, _: &PutOptions) -> Result<(), StoreError> {
            self.objects.lock().unwrap().insert(key.into(), body);
            Ok(())
        }

        async fn head(&self, _: &str, _: &str) -> Result<Option<Head>, StoreError> {
            Ok(None)
        }

        async fn delete(&self, _: &str, _: &str, _: Option<&str>) -> Result<Deleted, StoreError> {
            Ok(Deleted::Missing)
        }

        async fn list(&self, _: &str, _: &ListQuery<'_>) -> Result<ListPage, StoreError> {
            Ok(ListPage::default())
        }
    }

    /// Events kept in memory.
    #[derive(Default)]
    struct MemorySink(std::sync::Mutex<Vec<Event>>);

    impl EventSink for MemorySink {
        async fn publish(&self, event: &Event) -> Result<(), PublishError> {
            self.0.lock().unwrap().push(event.clone());
            Ok(())
        }
    }

    fn published(jobs: &JobContext<MemoryStore, MemorySink>) -> Vec<Event> {
        jobs.events.0.lock().unwrap().clone()
    }

    /// The notification of an upload of `key` (its bytes are whatever the store holds).
    fn notification(key: &str) -> String {
        let object = ObjectRef { bucket: BUCKET.into(), key: key.into(), size: Some(100), ..Default::default() };
        s3_put_notification(BUCKET, &object, "2026-01-01T00:00:00.000Z")
    }

    /// Settings whose retries wait 10 s, doubling, at most 25 s.
    fn paced() -> ConsumerSettings {
        ConsumerSettings { retry_base: Duration::from_secs(10), retry_max: Duration::from_secs(25), ..settings() }
    }

    fn started<S: ObjectStore, E: EventSink>(
        queue: &Arc<TestQueue>,
        jobs: &Arc<JobContext<S, E>>,
        settings: ConsumerSettings,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let consumer = Consumer::new(Arc::clone(queue), Arc::clone(jobs), settings, Health::default());
        (shutdown.clone(), tokio::spawn(consumer.run(shutdown)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_completed_job_s_message_is_deleted_once_its_event_is_published() {
        let jobs = context(MemoryStore::default(), MemorySink::default(), crate::pipeline::render);
        let photo = crate::commands::demo::sample_jpeg(64, 48, 7, 1);
        jobs.store.objects.lock().unwrap().insert("photos/a.jpg".into(), photo);
        let local = Arc::new(LocalQueue::new());
        local.send(notification("photos/a.jpg"));
        let queue = Arc::new(TestQueue::new(&local, false, 0));
        let (shutdown, run) = started(&queue, &jobs, paced());
        until(|| jobs.metrics.messages_deleted.get() == 1).await;
        shutdown.cancel();
        run.await.unwrap();

        let events = published(&jobs);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventType::Completed);
        let stored = jobs.store.objects.lock().unwrap().len();
        assert_eq!(stored, 1 + events[0].renditions.len(), "the source and every rendition");
        assert_eq!(local.counts(), (0, 0), "the message is gone");
        assert_eq!((queue.deliveries(), jobs.metrics.messages_released.get()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retried_job_s_message_comes_back_after_a_backoff_that_doubles_up_to_its_cap() {
        let store = MemoryStore { fail_gets: true, ..Default::default() };
        let jobs = context(store, MemorySink::default(), crate::pipeline::render);
        let local = Arc::new(LocalQueue::new());
        local.send(notification("photos/a.jpg"));
        let queue = Arc::new(TestQueue::new(&local, false, 0));
        let (shutdown, run) = started(&queue, &jobs, paced());
        until(|| queue.deliveries() == 4).await;
        shutdown.cancel();
        run.await.unwrap();

        // Made visible again after 10, 20, then 25 s (the cap); the local queue looks every 100 ms.
        let gaps = queue.gaps();
        for (gap, want) in gaps.iter().zip([10, 20, 25]) {
            let want = Duration::from_secs(want);
            assert!(*gap >= want && *gap <= want + Duration::from_millis(100), "{gaps:?}");
        }
        assert!(published(&jobs).is_empty(), "a retry publishes nothing");
        assert_eq!(jobs.metrics.messages_deleted.get(), 0);
        assert_eq!(jobs.metrics.jobs.with_label_values(&["retried"]).get(), 4);
        let (visible, in_flight) = local.counts();
        assert_eq!(visible + in_flight, 1, "the message is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_waiting_for_a_cpu_slot_at_shutdown_releases_its_message_at_once() {
        let jobs = context(MemoryStore::default(), MemorySink::default(), crate::pipeline::render);
        jobs.store.objects.lock().unwrap().insert("photos/a.jpg".into(), b"any bytes".to_vec());
        // Every CPU slot is taken, so the job fetches its source and then waits.
        let busy = Arc::clone(&jobs.cpu).acquire_owned().await.unwrap();
        let local = Arc::new(LocalQueue::new());
        local.send(notification("photos/a.jpg"));
        let queue = Arc::new(TestQueue::new(&local, false, 0));
        let (shutdown, run) = started(&queue, &jobs, paced());
        until(|| jobs.metrics.source_bytes.get() > 0).await;
        let stopping = tokio::time::Instant::now();
        shutdown.cancel();
        run.await.unwrap();

        assert!(stopping.elapsed() < Duration::from_secs(1), "no wait for the grace period");
        assert_eq!(local.counts(), (1, 0), "visible again at once, for another worker");
        assert_eq!(jobs.metrics.jobs.with_label_values(&["released"]).get(), 1);
        // Released by its job; the consumer's second long poll, in flight at shutdown, may take it
        // again as it finishes, and releases it too.
        assert!(jobs.metrics.messages_released.get() >= 1);
        assert_eq!(jobs.metrics.messages_deleted.get(), 0);
        assert!(published(&jobs).is_empty(), "nothing failed, so nothing is published");
        drop(busy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poison_message_is_reported_once_and_kept_for_the_dead_letter_queue() {
        let jobs = context(MemoryStore::default(), MemorySink::default(), crate::pipeline::render);
        let local = Arc::new(LocalQueue::new());
        local.send("{\"not\": \"a message imgfleet understands\"}".into());
        let queue = Arc::new(TestQueue::new(&local, false, 0));
        let (shutdown, run) = started(&queue, &jobs, paced());
        until(|| queue.deliveries() == 3).await;
        shutdown.cancel();
        run.await.unwrap();

        let events = published(&jobs);
        assert_eq!(events.len(), 1, "one failure event, on the first delivery: {events:?}");
        let error = events[0].error.as_ref().expect("a failure event");
        assert_eq!((events[0].kind, error.kind), (EventType::Failed, ErrorKind::InvalidMessage));
        assert_eq!(events[0].job_id, "message-local-1");
        assert_eq!(jobs.metrics.messages_poison.get(), 3);
        assert_eq!(jobs.metrics.messages_deleted.get(), 0, "left for the redrive policy");
        let gaps = queue.gaps();
        assert!(gaps[0] >= Duration::from_secs(10) && gaps[1] >= Duration::from_secs(20), "{gaps:?}");
        let (visible, in_flight) = local.counts();
        assert_eq!(visible + in_flight, 1, "the message is kept");
    }

    #[tokio::test]
    async fn an_upload_expired_by_a_lifecycle_rule_loses_its_renditions() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path(), crate::pipeline::render);
        let queue = Arc::new(LocalQueue::new());
        let photo = crate::commands::demo::sample_jpeg(64, 48, 7, 1);
        queue.send(upload(&jobs, "photos/old.jpg", &photo));
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(consumer(Arc::clone(&queue), &jobs).run(shutdown.clone()));
        until(|| events(dir.path()).len() == 1).await;
        let made = events(dir.path())[0].renditions.len();
        assert!(made > 0);

        // The lifecycle rule removes the source; S3 notifies the expiration, not a delete.
        std::fs::remove_file(jobs.store.path(BUCKET, "photos/old.jpg")).unwrap();
        let object = ObjectRef { bucket: BUCKET.into(), key: "photos/old.jpg".into(), ..Default::default() };
        let expired = "LifecycleExpiration:Delete";
        queue.send(imgfleet_shared::envelope::s3_notification(BUCKET, &object, expired, "2026-01-02T00:00:00.000Z"));
        until(|| events(dir.path()).len() == 2).await;
        shutdown.cancel();
        run.await.unwrap();
        let removal = &events(dir.path())[1];
        assert_eq!((removal.kind, removal.deleted.len()), (EventType::Deleted, made), "{removal:?}");
        assert!(removal.deleted.iter().all(|r| !jobs.store.path(BUCKET, &r.key).exists()));
    }
}
