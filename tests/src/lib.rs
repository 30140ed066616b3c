//! Harness for the end-to-end tests: loopback clients for moto server (S3 + SQS) and Redis, a
//! fresh bucket + queue + dead-letter queue + bucket notification + event stream per test, and
//! helpers to wait for events and read queue depths.
//!
//! Endpoints come from `IMGFLEET_TEST_AWS_ENDPOINT` (default `http://127.0.0.1:5000`) and
//! `IMGFLEET_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); `scripts/services.sh start`
//! starts both.

pub mod proxy;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use imgfleet_shared::config::Config;
use imgfleet_shared::event::Event;
use imgfleet_worker::adapters::events::RedisSink;
use imgfleet_worker::adapters::queue::SqsQueue;
use imgfleet_worker::adapters::storage::S3Store;
use imgfleet_worker::fleet::consumer::ConsumerSettings;
use imgfleet_worker::fleet::service::{Adapters, RunningWorker, Worker};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The real adapters (SQS, S3, Redis) for `config` over `sdk`, as `imgfleet run` connects them.
pub async fn adapters(config: &Config, sdk: &aws_config::SdkConfig) -> Adapters<SqsQueue, S3Store, RedisSink> {
    Adapters::connect(config, sdk).await.expect("the worker's adapters connect")
}

/// A worker on the real adapters, started as `imgfleet run` starts one.
pub async fn start_worker(config: &Config, sdk: &aws_config::SdkConfig) -> RunningWorker {
    Worker::new(config, adapters(config, sdk).await).start().await.expect("the worker starts")
}

/// [`start_worker`] with its own consumer settings (retry pacing, visibility…).
pub async fn start_worker_with(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    settings: ConsumerSettings,
) -> RunningWorker {
    Worker::new(config, adapters(config, sdk).await).settings(settings).start().await.expect("the worker starts")
}

/// Prefix whose uploads notify the queue.
pub const UPLOADS: &str = "uploads/";

/// Loopback clients.
#[derive(Debug, Clone)]
pub struct Env {
    pub sdk: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub endpoint: String,
    pub redis_url: String,
}

/// One test's own resources.
#[derive(Debug, Clone)]
pub struct Setup {
    pub name: String,
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub stream: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("t-{name}-{}-{n}-{nanos:x}", std::process::id()).to_lowercase()
}

impl Env {
    /// Connects to the test services; panics with a hint when they are not running.
    pub async fn new() -> Self {
        let endpoint = std::env::var("IMGFLEET_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5000".into());
        let redis_url = std::env::var("IMGFLEET_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let sdk = sdk_config(&endpoint).await;
        let s3 = imgfleet_worker::fleet::service::s3_client(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        if s3.list_buckets().send().await.is_err() {
            panic!("moto server is not answering at {endpoint}: run `scripts/services.sh start` (or scripts/test.sh)");
        }
        Self { sdk, s3, sqs, endpoint, redis_url }
    }

    /// A bucket whose `uploads/` notifications feed a fresh queue with a dead-letter queue after
    /// `max_receives`, and a fresh event stream name (made by the load test's `setup`).
    pub async fn setup(&self, name: &str, max_receives: u32, visibility_secs: u32) -> Setup {
        let base = unique(name);
        let bucket = base.chars().take(63).collect::<String>();
        let clients =
            imgfleet_loadtest::setup::Clients { sdk: self.sdk.clone(), s3: self.s3.clone(), sqs: self.sqs.clone() };
        let args = imgfleet_loadtest::setup::SetupArgs {
            bucket: bucket.clone(),
            queue: base.clone(),
            prefix: UPLOADS.into(),
            max_receives,
            visibility_secs,
        };
        let created = imgfleet_loadtest::setup::run(&clients, &args).await.expect("bucket, queues and notification");
        Setup {
            name: base.clone(),
            bucket,
            queue_url: created.queue_url,
            dlq_url: created.dlq_url,
            stream: format!("imgfleet:test:{base}"),
        }
    }

    /// The worker configuration for `setup`, with metrics on a free loopback port.
    pub fn config(&self, setup: &Setup) -> Config {
        Config {
            queue_url: Some(setup.queue_url.clone()),
            dlq_url: Some(setup.dlq_url.clone()),
            redis_url: self.redis_url.clone(),
            events_stream: setup.stream.clone(),
            metrics_addr: ([127, 0, 0, 1], 0).into(),
            concurrency: Some(2),
            shutdown_grace_secs: 25,
            // Short polls, so a test's idle worker drains at once (a poll in flight is let finish).
            receive_wait_secs: 2,
            visibility_timeout_secs: 30,
            worker_id: Some(format!("{}-worker", setup.name)),
            ..Config::default()
        }
    }

    pub async fn upload(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("image/jpeg")
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("upload");
    }

    /// Whether `key` exists in `bucket`.
    pub async fn exists(&self, bucket: &str, key: &str) -> bool {
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => false,
            Err(e) => panic!("HeadObject {key}: {e:?}"),
        }
    }

    pub async fn send(&self, queue_url: &str, body: &str) {
        self.sqs.send_message().queue_url(queue_url).message_body(body).send().await.expect("send message");
    }

    /// (visible, in flight) messages. moto works out the two counts one after the other, so a
    /// message whose visibility timeout ends in between is in neither; of two reads in a row, the
    /// one with more messages is returned (a message deleted for good shows in both).
    pub async fn queue_counts(&self, url: &str) -> (i64, i64) {
        let (a, b) = (self.read_queue_counts(url).await, self.read_queue_counts(url).await);
        if a.0 + a.1 > b.0 + b.1 { a } else { b }
    }

    async fn read_queue_counts(&self, url: &str) -> (i64, i64) {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let get = |n: QueueAttributeName| attrs.get(&n).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Waits until the queue holds no message, visible or in flight.
    pub async fn wait_queue_empty(&self, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let counts = self.queue_counts(url).await;
            if counts == (0, 0) {
                return;
            }
            assert!(Instant::now() < deadline, "queue not empty after {timeout:?}: {counts:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every event on `stream`, oldest first.
    pub async fn events(&self, stream: &str) -> Vec<Event> {
        read_events(&self.redis_url, stream).await
    }

    /// Waits until `done` holds for the stream's events; returns them.
    pub async fn wait_events(&self, stream: &str, timeout: Duration, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events(stream).await;
            if done(&events) {
                return events;
            }
            assert!(Instant::now() < deadline, "events not as expected after {timeout:?}: {events:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Polls `check` every 100 ms until it holds; fails the test with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `imgfleet` command line (`exe`: this package's `CARGO_BIN_EXE_imgfleet-e2e-worker`) set up
/// for `setup`: its queue, event stream and Redis, AWS through `endpoint`, metrics on a free port.
pub fn imgfleet_command(exe: &str, env: &Env, setup: &Setup, endpoint: &str) -> std::process::Command {
    let mut command = std::process::Command::new(exe);
    command
        .env("IMGFLEET_QUEUE_URL", &setup.queue_url)
        .env("IMGFLEET_REDIS_URL", &env.redis_url)
        .env("IMGFLEET_EVENTS_STREAM", &setup.stream)
        .env("IMGFLEET_METRICS_ADDR", "127.0.0.1:0")
        .env("IMGFLEET_RECEIVE_WAIT_SECS", "2")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("RUST_LOG", "warn");
    command
}

/// The tests' AWS configuration for `endpoint` (moto, or a fault proxy in front of it).
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "imgfleet-tests");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await
}

/// An S3 notification body for one record, as S3 sends it: with a sequencer (moto omits it), or
/// none when `sequencer` is empty.
pub fn s3_record(bucket: &str, key: &str, event_name: &str, sequencer: &str) -> String {
    let object = imgfleet_shared::envelope::ObjectRef {
        bucket: bucket.into(),
        key: key.into(),
        sequencer: Some(sequencer.to_owned()).filter(|s| !s.is_empty()),
        ..Default::default()
    };
    imgfleet_shared::envelope::s3_notification(bucket, &object, event_name, "2026-11-30T00:00:00.000Z")
}

/// Every message on `queue_url`, received and deleted.
pub async fn drain(env: &Env, queue_url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let out = env.sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).send().await.unwrap();
        if out.messages().is_empty() {
            return bodies;
        }
        for m in out.messages() {
            bodies.push(m.body().unwrap_or_default().to_owned());
            env.sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Reads a whole stream with XRANGE.
pub async fn read_events(redis_url: &str, stream: &str) -> Vec<Event> {
    let client = redis::Client::open(redis_url).expect("redis url");
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return vec![] };
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(&mut conn).await.unwrap_or_default();
    entries
        .into_iter()
        .flat_map(|(_, fields)| fields)
        .filter(|(f, _)| f == "event")
        .map(|(_, json)| serde_json::from_str(&json).expect("events are valid JSON"))
        .collect()
}

/// A browser-style `multipart/form-data` POST of `fields` then `file` to an `http://host:port/path`
/// URL (an S3 POST upload): (status, body).
pub async fn http_post_form(url: &str, fields: &[(String, String)], file: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let boundary = "----imgfleet-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"upload\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// `GET path` on a local HTTP server: (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).await.unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// [`http_get`] for a server that may not be listening yet (one still starting).
pub async fn try_http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// A loopback port free at the time of asking, for a server the test starts as a process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// The value of `series` (name and labels, as exported) in a Prometheus text exposition. Panics
/// when the series is not there, so a renamed metric or label fails the test instead of reading
/// as 0.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{series} is not among the metrics:\n{text}"))
}

/// A process a test started (a worker binary); killed when dropped, so a test that fails midway
/// leaves nothing behind polling its queue.
#[derive(Debug)]
pub struct ChildGuard {
    child: std::process::Child,
}

impl ChildGuard {
    /// Starts `command`.
    pub fn spawn(command: &mut std::process::Command) -> Self {
        Self { child: command.spawn().expect("the process starts") }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `KILL`…) as `kill -<signal>` would.
    pub fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} {}", self.child.id());
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("the process can be waited for")
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("the process can be waited for")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Redis server of the test's own, on a free port, that the test may stop and restart.
#[derive(Debug)]
pub struct OwnRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let mut r = Self { port: free_port(), child: None };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("own redis-server did not start on port {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A sample photo JPEG.
pub fn photo(w: u32, h: u32) -> Vec<u8> {
    imgfleet_worker::commands::demo::sample_jpeg(w, h, w ^ h, 1)
}

/// A stand-in for the ECS agent's task-protection endpoint: records every request, answers 200.
#[derive(Debug, Clone)]
pub struct FakeEcsAgent {
    pub uri: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeEcsAgent {
    pub async fn start() -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let uri = format!("http://{}/api/task-1", listener.local_addr().expect("addr"));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                // Read the head and the (small) body.
                while let Ok(n) = sock.read(&mut buf[got..]).await {
                    if n == 0 {
                        break;
                    }
                    got += n;
                    let text = String::from_utf8_lossy(&buf[..got]).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            seen.lock().expect("lock").push(format!("{} {body}", head.lines().next().unwrap_or("")));
                            break;
                        }
                    }
                }
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").await;
            }
        });
        Self { uri, requests }
    }

    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

/// An animated GIF of `frames` full-screen frames cycling through four colours.
pub fn animated_gif(w: u16, h: u16, frames: usize) -> Vec<u8> {
    let palette = [200u8, 30, 30, 30, 200, 30, 30, 30, 200, 220, 220, 40];
    let mut out = Vec::new();
    {
        let mut e = gif::Encoder::new(&mut out, w, h, &palette).expect("GIF header");
        for i in 0..frames {
            let buffer = (0..usize::from(w) * usize::from(h)).map(|p| ((p / 16 + i) % 4) as u8).collect();
            let frame =
                gif::Frame { width: w, height: h, buffer: std::borrow::Cow::Owned(buffer), ..gif::Frame::default() };
            e.write_frame(&frame).expect("GIF frame");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_series_is_a_failure_not_zero() {
        let text = "# TYPE imgfleet_ready gauge\nimgfleet_ready 1\nimgfleet_jobs_total{outcome=\"completed\"} 3\n";
        assert_eq!(metric(text, "imgfleet_ready"), 1.0);
        assert_eq!(metric(text, "imgfleet_jobs_total{outcome=\"completed\"}"), 3.0);
        let renamed = std::panic::catch_unwind(|| metric(text, "imgfleet_jobs_total{outcome=\"retried\"}"));
        assert!(renamed.is_err(), "a series that is not exported must fail");
        assert!(std::panic::catch_unwind(|| metric(text, "imgfleet_read")).is_err(), "a prefix is not a series");
    }

    #[test]
    fn a_dropped_child_guard_kills_its_process() {
        let guard = ChildGuard::spawn(std::process::Command::new("sleep").arg("60"));
        let pid = guard.id().to_string();
        let alive = || std::process::Command::new("kill").args(["-0", &pid]).status().unwrap().success();
        assert!(alive());
        drop(guard);
        assert!(!alive(), "process {pid} outlived its guard");
    }
}
