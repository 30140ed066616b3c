//! ECS task scale-in protection: while jobs are in flight the task asks the ECS agent not to be
//! chosen for scale-in (`PUT $ECS_AGENT_URI/task-protection/v1/state`), and gives the protection up
//! once it has been idle for a while and when it stops. Off unless `IMGFLEET_ECS_TASK_PROTECTION`
//! is true and the agent endpoint is known; failures are logged and counted, never fatal.

use crate::ops::metrics::Metrics;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often in-flight work is looked at.
const TICK: Duration = Duration::from_secs(1);
/// Protection asked for at a time; renewed while busy.
const EXPIRES_MINUTES: u64 = 10;
/// Idle time before protection is given up, so a steady trickle of jobs does not flap it.
const IDLE_RELEASE: Duration = Duration::from_secs(5);

/// Holds and releases protection as `metrics.jobs_in_flight` moves, until `stop` (and the drain) ends.
pub async fn run(agent_uri: String, metrics: Metrics, stop: CancellationToken) {
    let mut protected_until: Option<Instant> = None;
    let mut idle_since = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! { _ = stop.cancelled() => break, _ = ticker.tick() => {} }
        let now = Instant::now();
        if metrics.jobs_in_flight.get() > 0 {
            idle_since = now;
            let renew = protected_until.is_none_or(|until| until < now + Duration::from_secs(120));
            if renew && set(&agent_uri, true, &metrics).await {
                protected_until = Some(now + Duration::from_secs(EXPIRES_MINUTES * 60));
            }
        } else if protected_until.is_some()
            && now.duration_since(idle_since) >= IDLE_RELEASE
            && set(&agent_uri, false, &metrics).await
        {
            protected_until = None;
        }
    }
    if protected_until.is_some() {
        set(&agent_uri, false, &metrics).await;
    }
}

/// One state change; true when the agent accepted it.
async fn set(agent_uri: &str, enabled: bool, metrics: &Metrics) -> bool {
    let body = if enabled {
        format!(r#"{{"ProtectionEnabled":true,"ExpiresInMinutes":{EXPIRES_MINUTES}}}"#)
    } else {
        r#"{"ProtectionEnabled":false}"#.to_owned()
    };
    match tokio::time::timeout(Duration::from_secs(5), put(agent_uri, "/task-protection/v1/state", &body)).await {
        Ok(Ok(200..=299)) => {
            tracing::info!(enabled, "ECS task scale-in protection updated");
            true
        }
        outcome => {
            metrics.aws_errors.with_label_values(&["ecs", "UpdateTaskProtection"]).inc();
            tracing::warn!(enabled, ?outcome, "ECS task scale-in protection update failed");
            false
        }
    }
}

/// A minimal HTTP/1.1 PUT to the agent (plain HTTP on the task's link-local address); returns the status.
async fn put(base: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("ECS_AGENT_URI {base:?} is not http://host[:port]/path"),
        )
    };
    let rest = base.strip_prefix("http://").ok_or_else(invalid)?;
    let (authority, base_path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host_port = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    let mut stream = tokio::net::TcpStream::connect(host_port).await?;
    let request = format!(
        "PUT /{}{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        base_path.trim_end_matches('/'),
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(invalid)
}
