//! Events: publish a completion or failure [`Event`]. The Redis implementation appends to a stream
//! (consumer groups never miss one) and publishes on a channel of the same name (live listeners),
//! in one MULTI/EXEC. The JSON-lines file sink of `imgfleet demo` lives in [`crate::adapters::local`].

use imgfleet_shared::event::Event;
use redis::aio::ConnectionManager;
use std::future::Future;
use std::time::Duration;

/// Publishing failed; the job is kept and retried, so no event is lost.
#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing the event failed: {0}")]
pub struct PublishError(pub String);

/// Where events go.
pub trait EventSink: Send + Sync + 'static {
    fn publish(&self, event: &Event) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// Redis stream + pub/sub channel.
#[derive(Clone)]
pub struct RedisSink {
    connection: ConnectionManager,
    stream: String,
    maxlen: u64,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink").field("stream", &self.stream).field("maxlen", &self.maxlen).finish()
    }
}

/// How long one publish may take before it counts as failed (Redis down or unreachable).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

impl RedisSink {
    /// Connects lazily-reconnecting: if Redis goes away, later publishes fail until it is back.
    pub async fn connect(url: &str, stream: impl Into<String>, maxlen: u64) -> Result<Self, PublishError> {
        let client = redis::Client::open(url).map_err(|e| PublishError(format!("invalid Redis URL: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(PUBLISH_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connection =
            tokio::time::timeout(Duration::from_secs(10), ConnectionManager::new_with_config(client, config))
                .await
                .map_err(|_| PublishError("timed out connecting to Redis".into()))?
                .map_err(|e| PublishError(e.to_string()))?;
        Ok(Self { connection, stream: stream.into(), maxlen })
    }
}

impl EventSink for RedisSink {
    async fn publish(&self, event: &Event) -> Result<(), PublishError> {
        let json = event.to_json();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.maxlen)
            .arg("*")
            .arg("event")
            .arg(&json)
            .ignore()
            .cmd("PUBLISH")
            .arg(&self.stream)
            .arg(&json)
            .ignore();
        let mut connection = self.connection.clone();
        match tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(&mut connection)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PublishError(e.to_string())),
            Err(_) => Err(PublishError("timed out".into())),
        }
    }
}
