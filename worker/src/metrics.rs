//! Every Prometheus metric the worker exports, defined in one place with its help text, and the
//! HTTP endpoint that serves them with the health checks.
//!
//! Only the consumer and the job runner (the edges) record into these.

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Prefix of every metric name.
pub const NAMESPACE: &str = "imgfleet";

/// The worker's metrics. Cloning shares the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// Jobs finished, by outcome: completed, failed (rejected input), deleted (source removed),
    /// retried (kept for later), internal (imgfleet's bug; kept for the dead-letter queue), ignored.
    pub jobs: IntCounterVec,
    /// Wall time of a job from receive to acknowledgement, by outcome.
    pub job_duration: HistogramVec,
    /// Time spent in each stage: fetch, sniff, decode, orient, resize, encode, store, publish.
    pub stage_duration: HistogramVec,
    /// Messages being worked on now.
    pub jobs_in_flight: IntGauge,
    /// Messages received from the queue.
    pub messages_received: IntCounter,
    /// Messages deleted after their outcome was stored and published.
    pub messages_deleted: IntCounter,
    /// Messages made visible again so they are retried later (or on shutdown).
    pub messages_released: IntCounter,
    /// Messages the worker does not understand; left for the dead-letter queue.
    pub messages_poison: IntCounter,
    /// Long polls that returned no message.
    pub empty_receives: IntCounter,
    /// Jobs that failed through imgfleet's own bug (error kind `internal`).
    pub internal_errors: IntCounter,
    /// Visibility timeouts extended for messages whose job is still running.
    pub visibility_extensions: IntCounter,
    /// Seconds from the message being sent (SQS SentTimestamp) to its acknowledgement.
    pub message_age: Histogram,
    /// How many times each handled message had been delivered (SQS ApproximateReceiveCount).
    pub message_receive_count: Histogram,
    /// Bytes of source images downloaded.
    pub source_bytes: IntCounter,
    /// Bytes of renditions stored, by format.
    pub output_bytes: IntCounterVec,
    /// Renditions deleted because their source was removed.
    pub renditions_deleted: IntCounter,
    /// AWS errors, by service (s3, sqs) and operation.
    pub aws_errors: IntCounterVec,
    /// Redis errors, by operation.
    pub redis_errors: IntCounterVec,
    /// 1 while the worker can reach its queue and is not draining.
    pub ready: IntGauge,
    /// 1 once shutdown has begun.
    pub draining: IntGauge,
    /// Messages visible in the work queue (sampled ApproximateNumberOfMessages).
    pub queue_messages_visible: IntGauge,
    /// Messages visible in the dead-letter queue (sampled ApproximateNumberOfMessages).
    pub dlq_messages_visible: IntGauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

fn hopts(name: &str, help: &str, buckets: Vec<f64>) -> HistogramOpts {
    HistogramOpts::new(name, help).namespace(NAMESPACE).buckets(buckets)
}

const SECONDS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
            r.register(Box::new(m.clone())).expect("metric names are unique");
            m
        }
        let counter = |n: &str, h: &str| reg(r, IntCounter::with_opts(opts(n, h)).expect("valid metric"));
        let gauge = |n: &str, h: &str| reg(r, IntGauge::with_opts(opts(n, h)).expect("valid metric"));
        let counter_vec =
            |n: &str, h: &str, l: &[&str]| reg(r, IntCounterVec::new(opts(n, h), l).expect("valid metric"));
        Self {
            jobs: counter_vec(
                "jobs_total",
                "Jobs finished, by outcome (completed, failed, deleted, retried, internal, ignored).",
                &["outcome"],
            ),
            job_duration: reg(
                r,
                HistogramVec::new(
                    hopts(
                        "job_duration_seconds",
                        "Wall time of a job from receive to acknowledgement, by outcome.",
                        SECONDS.to_vec(),
                    ),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            stage_duration: reg(
                r,
                HistogramVec::new(
                    hopts(
                        "stage_duration_seconds",
                        "Time spent in each stage (fetch, sniff, decode, orient, resize, encode, store, publish).",
                        SECONDS.to_vec(),
                    ),
                    &["stage"],
                )
                .expect("valid metric"),
            ),
            jobs_in_flight: gauge("jobs_in_flight", "Messages being worked on now."),
            messages_received: counter("messages_received_total", "Messages received from the queue."),
            messages_deleted: counter(
                "messages_deleted_total",
                "Messages deleted after their outcome was stored and published.",
            ),
            messages_released: counter(
                "messages_released_total",
                "Messages made visible again to be retried later (or on shutdown).",
            ),
            messages_poison: counter(
                "messages_poison_total",
                "Messages the worker does not understand; left for the dead-letter queue.",
            ),
            empty_receives: counter("empty_receives_total", "Long polls that returned no message."),
            internal_errors: counter(
                "internal_errors_total",
                "Jobs that failed through imgfleet's own bug (kind internal); their messages are kept for the dead-letter queue.",
            ),
            visibility_extensions: counter(
                "visibility_extensions_total",
                "Visibility timeouts extended for messages whose job is still running.",
            ),
            message_age: reg(
                r,
                Histogram::with_opts(hopts(
                    "message_age_seconds",
                    "Seconds from the message being sent (SQS SentTimestamp) to its acknowledgement.",
                    vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0],
                ))
                .expect("valid metric"),
            ),
            message_receive_count: reg(
                r,
                Histogram::with_opts(hopts(
                    "message_receive_count",
                    "How many times each handled message had been delivered (ApproximateReceiveCount).",
                    vec![1.0, 2.0, 3.0, 5.0, 10.0],
                ))
                .expect("valid metric"),
            ),
            source_bytes: counter("source_bytes_total", "Bytes of source images downloaded."),
            output_bytes: counter_vec("output_bytes_total", "Bytes of renditions stored, by format.", &["format"]),
            renditions_deleted: counter(
                "renditions_deleted_total",
                "Renditions deleted because their source was removed.",
            ),
            aws_errors: counter_vec(
                "aws_errors_total",
                "AWS errors, by service (s3, sqs) and operation.",
                &["service", "operation"],
            ),
            redis_errors: counter_vec("redis_errors_total", "Redis errors, by operation.", &["operation"]),
            ready: gauge("ready", "1 while the worker can reach its queue and is not draining."),
            draining: gauge("draining", "1 once shutdown has begun."),
            queue_messages_visible: gauge(
                "queue_messages_visible",
                "Messages visible in the work queue (sampled ApproximateNumberOfMessages).",
            ),
            dlq_messages_visible: gauge(
                "dlq_messages_visible",
                "Messages visible in the dead-letter queue (sampled ApproximateNumberOfMessages).",
            ),
            registry,
        }
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

    fn described(&self) -> Vec<String> {
        let vecs: [&dyn prometheus::core::Collector; 6] = [
            &self.jobs,
            &self.job_duration,
            &self.stage_duration,
            &self.output_bytes,
            &self.aws_errors,
            &self.redis_errors,
        ];
        vecs.iter().flat_map(|c| c.desc()).map(|d| d.fq_name.clone()).collect()
    }

    /// Records a stage's duration.
    pub fn stage(&self, stage: &str, seconds: f64) {
        self.stage_duration.with_label_values(&[stage]).observe(seconds);
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
        assert_eq!(names.len(), 22, "{names:?}");
        m.jobs.with_label_values(&["completed"]).inc();
        let text = m.render();
        assert!(text.contains("# HELP imgfleet_jobs_total Jobs finished"));
        assert!(text.contains("imgfleet_jobs_total{outcome=\"completed\"} 1"));
        // Unlabelled, so exported at 0 from start-up: the first internal error is an increase.
        assert!(text.contains("imgfleet_internal_errors_total 0"));
    }
}
