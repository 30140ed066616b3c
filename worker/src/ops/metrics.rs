//! Every Prometheus metric the worker exports, defined in one place with its help text, and the
//! HTTP endpoint that serves them with the health checks.
//!
//! Only the consumer and the job runner (the edges) record into these.

use prometheus::core::Collector;
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Prefix of every metric name.
pub const NAMESPACE: &str = "imgfleet";

/// Declares [`Metrics`]: each field's doc comment is also its help text, so a metric is named,
/// typed and described in one place.
macro_rules! metrics {
    ($( $(#[doc = $doc:literal])+ $field:ident: $ty:ty = $name:literal $([$($label:literal),*])? $(, $buckets:expr)?; )*) => {
        /// The worker's metrics. Cloning shares the same series.
        #[derive(Clone, Debug)]
        pub struct Metrics {
            registry: Registry,
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl Metrics {
            /// Creates and registers every metric in a fresh registry (no labelled series yet).
            fn declare() -> Self {
                let registry = Registry::new();
                Self {
                    $( $field: register(
                        &registry,
                        <$ty as Make>::make(
                            $name,
                            &help(&[$($doc),+]),
                            &[$($($label),*)?],
                            None$(.or(Some(&($buckets)[..])))?,
                        ),
                    ), )*
                    registry,
                }
            }

            /// Every family the worker declares, labelled or not, with the `imgfleet_` prefix.
            fn described(&self) -> Vec<String> {
                let collectors: &[&dyn Collector] = &[$( &self.$field ),*];
                collectors.iter().flat_map(|c| c.desc()).map(|d| d.fq_name.clone()).collect()
            }
        }
    };
}

const SECONDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

metrics! {
    /// Jobs finished, by outcome: completed, failed (rejected input), deleted (source removed),
    /// retried (kept for later), released (shutdown came before decoding started), internal
    /// (imgfleet's bug; kept for the dead-letter queue), ignored.
    jobs: IntCounterVec = "jobs_total" ["outcome"];
    /// Wall time of a job from receive to acknowledgement, by outcome.
    job_duration: HistogramVec = "job_duration_seconds" ["outcome"], SECONDS;
    /// Time spent in each stage (fetch, sniff, decode, orient, resize, encode, store, publish).
    stage_duration: HistogramVec = "stage_duration_seconds" ["stage"], SECONDS;
    /// Messages being worked on now.
    jobs_in_flight: IntGauge = "jobs_in_flight";
    /// Messages received from the queue.
    messages_received: IntCounter = "messages_received_total";
    /// Messages deleted after their outcome was stored and published.
    messages_deleted: IntCounter = "messages_deleted_total";
    /// Messages made visible again to be retried later (or on shutdown).
    messages_released: IntCounter = "messages_released_total";
    /// Messages the worker does not understand; left for the dead-letter queue.
    messages_poison: IntCounter = "messages_poison_total";
    /// Long polls that returned no message.
    empty_receives: IntCounter = "empty_receives_total";
    /// Jobs that failed through imgfleet's own bug (kind internal); their messages are kept for
    /// the dead-letter queue.
    internal_errors: IntCounter = "internal_errors_total";
    /// Visibility timeouts extended for messages whose job is still running.
    visibility_extensions: IntCounter = "visibility_extensions_total";
    /// Seconds from the message being sent (SQS SentTimestamp) to its acknowledgement.
    message_age: Histogram = "message_age_seconds",
        &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
    /// How many times each handled message had been delivered (SQS ApproximateReceiveCount).
    message_receive_count: Histogram = "message_receive_count", &[1.0, 2.0, 3.0, 5.0, 10.0];
    /// Bytes of source images downloaded.
    source_bytes: IntCounter = "source_bytes_total";
    /// Bytes of renditions stored, by format.
    output_bytes: IntCounterVec = "output_bytes_total" ["format"];
    /// Renditions deleted because their source was removed.
    renditions_deleted: IntCounter = "renditions_deleted_total";
    /// AWS errors, by service (s3, sqs) and operation.
    aws_errors: IntCounterVec = "aws_errors_total" ["service", "operation"];
    /// S3 calls refused for a reason no retry fixes (access denied, no such bucket, a KMS key
    /// refused, a bad argument), by operation: the deployment needs fixing; the messages stay in
    /// the queue until their redrive.
    storage_config_errors: IntCounterVec = "storage_config_errors_total" ["operation"];
    /// Redis errors, by operation.
    redis_errors: IntCounterVec = "redis_errors_total" ["operation"];
    /// 1 while the worker can reach its queue and is not draining.
    ready: IntGauge = "ready";
    /// 1 once shutdown has begun.
    draining: IntGauge = "draining";
    /// Messages visible in the work queue (sampled ApproximateNumberOfMessages).
    queue_messages_visible: IntGauge = "queue_messages_visible";
    /// Messages visible in the dead-letter queue (sampled ApproximateNumberOfMessages).
    dlq_messages_visible: IntGauge = "dlq_messages_visible";
}

/// The S3 operations the worker calls.
pub const STORAGE_OPERATIONS: [&str; 4] = ["GetObject", "PutObject", "HeadObject", "DeleteObject"];

/// A help text from a field's doc lines.
fn help(doc: &[&str]) -> String {
    doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

fn register<T: Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

/// How each kind of metric is made from a name, help text, labels and buckets.
trait Make: Sized {
    fn make(name: &str, help: &str, labels: &[&str], buckets: Option<&[f64]>) -> Self;
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

fn hopts(name: &str, help: &str, buckets: Option<&[f64]>) -> HistogramOpts {
    HistogramOpts::new(name, help).namespace(NAMESPACE).buckets(buckets.unwrap_or(SECONDS).to_vec())
}

impl Make for IntCounter {
    fn make(name: &str, help: &str, _: &[&str], _: Option<&[f64]>) -> Self {
        Self::with_opts(opts(name, help)).expect("valid metric")
    }
}

impl Make for IntGauge {
    fn make(name: &str, help: &str, _: &[&str], _: Option<&[f64]>) -> Self {
        Self::with_opts(opts(name, help)).expect("valid metric")
    }
}

impl Make for IntCounterVec {
    fn make(name: &str, help: &str, labels: &[&str], _: Option<&[f64]>) -> Self {
        Self::new(opts(name, help), labels).expect("valid metric")
    }
}

impl Make for Histogram {
    fn make(name: &str, help: &str, _: &[&str], buckets: Option<&[f64]>) -> Self {
        Self::with_opts(hopts(name, help, buckets)).expect("valid metric")
    }
}

impl Make for HistogramVec {
    fn make(name: &str, help: &str, labels: &[&str], buckets: Option<&[f64]>) -> Self {
        Self::new(hopts(name, help, buckets), labels).expect("valid metric")
    }
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry. Series that alerts watch for an
    /// increase exist from start-up, at 0, so their first event is an increase.
    pub fn new() -> Self {
        let metrics = Self::declare();
        for operation in STORAGE_OPERATIONS {
            metrics.storage_config_errors.with_label_values(&[operation]);
        }
        metrics
    }

    /// The registry, for tests and for names.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Every metric family name registered, with the `imgfleet_` prefix.
    pub fn names(&self) -> Vec<String> {
        // Labelled families only appear once a child exists, so describe collectors instead of gathering.
        let mut names: Vec<String> =
            self.registry.gather().iter().map(|f| f.name().to_owned()).chain(self.described()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Records a stage's duration.
    pub fn stage(&self, stage: &str, seconds: f64) {
        self.stage_duration.with_label_values(&[stage]).observe(seconds);
    }

    /// Starts timing `stage`: the time is recorded when the guard is stopped or dropped.
    pub fn time(&self, stage: &str) -> StageTimer {
        StageTimer { histogram: Some(self.stage_duration.with_label_values(&[stage])), started: Instant::now() }
    }
}

/// Times one stage into `imgfleet_stage_duration_seconds` ([`Metrics::time`]); an early return
/// (a `?`) records too.
#[derive(Debug)]
#[must_use = "the stage is timed until the guard is stopped or dropped"]
pub struct StageTimer {
    histogram: Option<Histogram>,
    started: Instant,
}

impl StageTimer {
    /// Records the stage's time and returns it, in milliseconds (as events report stage times).
    pub fn stop(mut self) -> f64 {
        self.record()
    }

    fn record(&mut self) -> f64 {
        let seconds = self.started.elapsed().as_secs_f64();
        if let Some(h) = self.histogram.take() {
            h.observe(seconds);
        }
        seconds * 1000.0
    }
}

impl Drop for StageTimer {
    fn drop(&mut self) {
        self.record();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Health flags shared between the consumer and the HTTP endpoint.
#[derive(Debug, Clone, Default)]
pub struct Health {
    queue_ok: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
}

impl Health {
    pub fn set_queue_ok(&self, ok: bool, metrics: &Metrics) {
        self.queue_ok.store(ok, Ordering::Relaxed);
        metrics.ready.set(i64::from(self.is_ready()));
    }

    pub fn set_draining(&self, metrics: &Metrics) {
        self.draining.store(true, Ordering::Relaxed);
        metrics.draining.set(1);
        metrics.ready.set(0);
    }

    /// Ready: the last queue call succeeded and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.queue_ok.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let m = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let h = health.clone();
                async move {
                    if h.is_ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_and_documented() {
        let m = Metrics::new();
        let names = m.names();
        for expected in [
            "imgfleet_jobs_total",
            "imgfleet_stage_duration_seconds",
            "imgfleet_ready",
            "imgfleet_dlq_messages_visible",
            "imgfleet_internal_errors_total",
        ] {
            assert!(names.contains(&expected.to_owned()), "{expected} missing from {names:?}");
        }
        assert_eq!(names.len(), 23, "{names:?}");
        m.jobs.with_label_values(&["completed"]).inc();
        let text = m.render();
        assert!(text.contains("# HELP imgfleet_jobs_total Jobs finished"));
        assert!(text.contains("imgfleet_jobs_total{outcome=\"completed\"} 1"));
        // Unlabelled, so exported at 0 from start-up: the first internal error is an increase.
        assert!(text.contains("imgfleet_internal_errors_total 0"));
        for operation in STORAGE_OPERATIONS {
            let series = format!("imgfleet_storage_config_errors_total{{operation=\"{operation}\"}} 0");
            assert!(text.contains(&series), "{series} missing");
        }
        // Help texts are the fields' doc comments, joined into one line.
        assert!(text.contains(
            "# HELP imgfleet_internal_errors_total Jobs that failed through imgfleet's own bug (kind internal); \
             their messages are kept for the dead-letter queue."
        ));
    }
}
