//! `imgfleet run`: wires configuration to the real adapters (SQS, S3, Redis), the metrics endpoint
//! and the consumer, and runs until shutdown.

use crate::consumer::{Consumer, ConsumerSettings};
use crate::events::{EventSink, RedisSink};
use crate::job::{JobContext, OutputSettings};
use crate::metrics::{self, Health, Metrics};
use crate::queue::{Queue, SqsQueue};
use crate::storage::{ObjectStore, S3Store};
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
    let Some(path) = &config.presets else { return Ok(PresetCatalog::default()) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError::Presets(format!("cannot read {}: {e}", path.display())))?;
    PresetCatalog::from_toml(&text).map_err(|e| StartError::Presets(format!("{}: {e}", path.display())))
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

/// Starts the worker on SQS, S3 and Redis as configured.
pub async fn start(config: &Config, sdk: &aws_config::SdkConfig) -> Result<RunningWorker, StartError> {
    start_paced(config, sdk, consumer_settings(config, Duration::from_secs(5))).await
}

/// [`start`] with explicit consumer settings (retry pacing, visibility…).
pub async fn start_paced(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    settings: ConsumerSettings,
) -> Result<RunningWorker, StartError> {
    start_with_store(config, sdk, settings, S3Store::new(s3_client(sdk))).await
}

/// Starts the worker on SQS and Redis with a given object store (tests wrap S3 to slow it down).
pub async fn start_with_store<S: ObjectStore>(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    settings: ConsumerSettings,
    store: S,
) -> Result<RunningWorker, StartError> {
    let queue_url = config.queue_url.clone().ok_or(StartError::NoQueue)?;
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), queue_url);
    let events = RedisSink::connect(&config.redis_url, config.events_stream.clone(), config.events_maxlen)
        .await
        .map_err(|e| StartError::Redis(e.to_string()))?;
    start_with(config, settings, queue, store, events).await
}

/// Starts the worker on the given adapters (the real ones, or the local ones of `imgfleet demo`).
pub async fn start_with<Q: Queue, S: ObjectStore, E: EventSink>(
    config: &Config,
    settings: ConsumerSettings,
    queue: Q,
    store: S,
    events: E,
) -> Result<RunningWorker, StartError> {
    let catalog = Arc::new(load_presets(config)?);
    let metrics = Metrics::new();
    let health = Health::default();
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|source| StartError::Metrics { addr: config.metrics_addr, source })?;
    let metrics_addr =
        listener.local_addr().map_err(|source| StartError::Metrics { addr: config.metrics_addr, source })?;
    let shutdown = CancellationToken::new();
    let stopping = CancellationToken::new();
    let jobs = Arc::new(JobContext {
        store,
        events,
        catalog,
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
        pool: crate::pool::RenderPool::new(settings.concurrency),
        metrics: metrics.clone(),
        stopping: stopping.clone(),
        renderer: crate::pipeline::render,
    });
    tracing::info!(
        worker_id = %jobs.worker_id,
        concurrency = settings.concurrency,
        prefetch = settings.prefetch,
        metrics = %metrics_addr,
        "imgfleet worker starting"
    );
    let consumer = Consumer::new(queue, jobs, settings, health.clone(), stopping);
    let protection = match (&config.ecs_agent_uri, config.ecs_task_protection) {
        (Some(uri), true) => {
            let stop = CancellationToken::new();
            Some((tokio::spawn(crate::protection::run(uri.clone(), metrics.clone(), stop.clone())), stop))
        }
        _ => None,
    };
    let served = CancellationToken::new();
    let server = tokio::spawn(metrics::serve(listener, metrics.clone(), health, served.clone().cancelled_owned()));
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        consumer.run(token).await;
        if let Some((task, stop)) = protection {
            stop.cancel();
            let _ = task.await;
        }
        served.cancel();
        let _ = server.await;
    });
    Ok(RunningWorker { metrics_addr, metrics, shutdown, task })
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
