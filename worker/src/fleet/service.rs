//! A worker's life: configuration and adapters → the metrics endpoint, the consumer and (on ECS)
//! task protection, running until shutdown begins, then drained and stopped.
//!
//! [`run`] is the one way a worker runs: `imgfleet run` gives it the real adapters
//! ([`Adapters::connect`]: SQS, S3, Redis) and SIGTERM. [`Worker`] is the same wiring as a
//! builder that hands back a [`RunningWorker`] instead of waiting: `imgfleet demo` (local
//! adapters) and the tests (their own consumer settings, a wrapped store) start workers with it.
//!
//! Shutdown, in order: the caller's shutdown future resolves (or [`RunningWorker::shutdown`] is
//! called) → the consumer stops receiving and drains ([`crate::fleet::consumer`]) → once it has
//! drained, task protection is dropped and the metrics endpoint closes → the worker has stopped.

use crate::adapters::events::{EventSink, RedisSink};
use crate::adapters::queue::{Queue, SqsQueue};
use crate::adapters::storage::{ObjectStore, S3Store};
use crate::fleet::consumer::{Consumer, ConsumerSettings};
use crate::fleet::job::{JobContext, OutputSettings};
use crate::fleet::pool::RenderPool;
use crate::ops::metrics::{self, Health, Metrics};
use imgfleet_shared::PresetCatalog;
use imgfleet_shared::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("IMGFLEET_QUEUE_URL is required for `imgfleet run`")]
    NoQueue,
    #[error("IMGFLEET_PRESETS: {0}")]
    Presets(String),
    #[error("IMGFLEET_METRICS_ADDR: cannot listen on {addr}: {source}")]
    Metrics { addr: SocketAddr, source: std::io::Error },
    #[error("IMGFLEET_REDIS_URL: {0}")]
    Redis(String),
}

/// What a worker runs on: a queue, an object store and an event sink.
#[derive(Debug)]
pub struct Adapters<Q, S, E> {
    pub queue: Q,
    pub store: S,
    pub events: E,
}

impl Adapters<SqsQueue, S3Store, RedisSink> {
    /// The real adapters: the configured SQS queue, S3, and Redis (connected now, so a wrong
    /// `IMGFLEET_REDIS_URL` stops the start).
    pub async fn connect(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self, StartError> {
        let queue_url = config.queue_url.clone().ok_or(StartError::NoQueue)?;
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), queue_url);
        let events = RedisSink::connect(&config.redis_url, config.events_stream.clone(), config.events_maxlen)
            .await
            .map_err(|e| StartError::Redis(e.to_string()))?;
        Ok(Self { queue, store: S3Store::new(s3_client(sdk)), events })
    }
}

impl<Q, S, E> Adapters<Q, S, E> {
    /// The same adapters with the store replaced by `wrap(store)` (tests slow S3 down).
    pub fn map_store<T>(self, wrap: impl FnOnce(S) -> T) -> Adapters<Q, T, E> {
        Adapters { queue: self.queue, store: wrap(self.store), events: self.events }
    }
}

/// Runs a worker on `adapters` until `shutdown` resolves, then drains it; returns once it has
/// stopped.
pub async fn run<Q: Queue, S: ObjectStore, E: EventSink>(
    config: &Config,
    adapters: Adapters<Q, S, E>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let worker = Worker::new(config, adapters).start().await?;
    shutdown.await;
    worker.shutdown();
    worker.wait().await;
    Ok(())
}

/// A worker to be started: [`run`]'s wiring, with the consumer settings open to change.
#[derive(Debug)]
pub struct Worker<'a, Q, S, E> {
    config: &'a Config,
    adapters: Adapters<Q, S, E>,
    settings: ConsumerSettings,
}

impl<'a, Q: Queue, S: ObjectStore, E: EventSink> Worker<'a, Q, S, E> {
    /// A worker as `config` says, retrying failed jobs after 5 s, doubling.
    pub fn new(config: &'a Config, adapters: Adapters<Q, S, E>) -> Self {
        Self { config, adapters, settings: consumer_settings(config, Duration::from_secs(5)) }
    }

    /// Replaces the consumer settings (retry pacing, long-poll wait…).
    pub fn settings(mut self, settings: ConsumerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Binds the metrics endpoint and starts the consumer (and task protection when configured).
    pub async fn start(self) -> Result<RunningWorker, StartError> {
        let Self { config, adapters, settings } = self;
        let listener = tokio::net::TcpListener::bind(config.metrics_addr)
            .await
            .map_err(|source| StartError::Metrics { addr: config.metrics_addr, source })?;
        let metrics_addr =
            listener.local_addr().map_err(|source| StartError::Metrics { addr: config.metrics_addr, source })?;
        let metrics = Metrics::new();
        let jobs = Arc::new(job_context(config, &settings, adapters.store, adapters.events, metrics.clone())?);
        tracing::info!(
            worker_id = %jobs.worker_id,
            concurrency = settings.concurrency,
            prefetch = settings.prefetch,
            metrics = %metrics_addr,
            "imgfleet worker starting"
        );
        let health = Health::default();
        let consumer = Consumer::new(adapters.queue, jobs, settings, health.clone());
        let shutdown = CancellationToken::new();
        // Cancelled once the consumer has drained: what outlives the jobs (task protection, the
        // metrics endpoint) stops then.
        let drained = CancellationToken::new();
        let protection = match (&config.ecs_agent_uri, config.ecs_task_protection) {
            (Some(uri), true) => {
                Some(tokio::spawn(crate::ops::protection::run(uri.clone(), metrics.clone(), drained.clone())))
            }
            _ => None,
        };
        let server = tokio::spawn(metrics::serve(listener, metrics.clone(), health, drained.clone().cancelled_owned()));
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            consumer.run(token).await;
            drained.cancel();
            if let Some(task) = protection {
                let _ = task.await;
            }
            let _ = server.await;
        });
        Ok(RunningWorker { metrics_addr, metrics, shutdown, task })
    }
}

/// What every job of a worker shares, from its configuration and adapters.
fn job_context<S, E>(
    config: &Config,
    settings: &ConsumerSettings,
    store: S,
    events: E,
    metrics: Metrics,
) -> Result<JobContext<S, E>, StartError> {
    Ok(JobContext {
        store,
        events,
        catalog: Arc::new(load_presets(config)?),
        output: OutputSettings {
            bucket: config.output_bucket.clone(),
            prefix: config.output_prefix.clone(),
            key_template: config.key_template.clone(),
            cache_control: config.cache_control.clone(),
            sse: config.sse.clone(),
            public_base_url: config.public_base_url.clone(),
        },
        worker_id: worker_id(config),
        cpu: Arc::new(Semaphore::new(settings.concurrency)),
        pool: RenderPool::new(settings.concurrency),
        metrics,
        stopping: CancellationToken::new(),
        renderer: crate::pipeline::render,
    })
}

/// A started worker.
#[derive(Debug)]
pub struct RunningWorker {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (the real port when configured as 0).
    pub metrics_addr: SocketAddr,
    pub metrics: Metrics,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningWorker {
    /// Begins the drain (as SIGTERM does).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the worker has drained and stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Reads the preset file named by the configuration, or the built-in preset.
pub fn load_presets(config: &Config) -> Result<PresetCatalog, StartError> {
    let catalog = PresetCatalog::load(config.presets.as_deref()).map_err(|e| StartError::Presets(e.to_string()))?;
    crate::pipeline::encode::check_catalog(&catalog).map_err(StartError::Presets)?;
    Ok(catalog)
}

/// Loads AWS settings from the default chain (environment, profile, ECS task role…).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// S3 client; path-style addressing when an endpoint is configured (moto, MinIO, LocalStack).
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some()).build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The worker's identity in events: `IMGFLEET_WORKER_ID`, or host name and process id.
pub fn worker_id(config: &Config) -> String {
    config.worker_id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
            .unwrap_or_else(|| "worker".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Consumer settings from the configuration, with retry pacing `retry_base`.
pub fn consumer_settings(config: &Config, retry_base: Duration) -> ConsumerSettings {
    let concurrency = config.concurrency.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    ConsumerSettings {
        concurrency,
        prefetch: concurrency.div_ceil(2),
        visibility: Duration::from_secs(u64::from(config.visibility_timeout_secs)),
        // A long poll in flight at SIGTERM is let finish (its messages are released): capping the
        // wait at the grace keeps the drain within the grace period.
        wait: Duration::from_secs(config.receive_wait_secs.min(config.shutdown_grace_secs).max(1)),
        grace: Duration::from_secs(config.shutdown_grace_secs),
        retry_base,
        retry_max: Duration::from_secs(900),
        output_prefix: config.output_prefix.clone(),
        follow_deletes: config.follow_deletes,
        dlq_url: config.dlq_url.clone(),
        depth_interval: Duration::from_secs(30),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
