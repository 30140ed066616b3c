//! Faults: Redis down, jobs longer than the visibility timeout, SIGTERM while jobs run, readiness
//! while draining, S3 failing and slow, SQS unreachable, a worker killed with SIGKILL mid-job.
//! Nothing may be lost.

use imgfleet_shared::event::{Event, EventType};
use imgfleet_tests::proxy::{Fault, FaultProxy, Service};
use imgfleet_tests::*;
use imgfleet_worker::adapters::storage::{
    Deleted, Fetched, Head, ListPage, ListQuery, ObjectStore, PutOptions, S3Store, StoreError,
};
use imgfleet_worker::fleet::service::{RunningWorker, Worker};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

fn completed_keys(events: &[Event]) -> HashSet<String> {
    events.iter().filter(|e| e.kind == EventType::Completed).map(|e| e.source.key.clone()).collect()
}

/// S3 whose reads take `delay` longer: a job that outlives its visibility timeout.
struct SlowStore {
    inner: S3Store,
    delay: Duration,
}

impl ObjectStore for SlowStore {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Fetched, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.get(bucket, key, max_bytes).await
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, options: &PutOptions) -> Result<(), StoreError> {
        self.inner.put(bucket, key, body, options).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<Head>, StoreError> {
        self.inner.head(bucket, key).await
    }

    async fn delete(&self, bucket: &str, key: &str, if_match: Option<&str>) -> Result<Deleted, StoreError> {
        self.inner.delete(bucket, key, if_match).await
    }

    async fn list(&self, bucket: &str, query: &ListQuery<'_>) -> Result<ListPage, StoreError> {
        self.inner.list(bucket, query).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_loses_nothing() {
    let env = Env::new().await;
    let setup = env.setup("redisdown", 10, 30).await;
    let mut redis = OwnRedis::start();
    let mut config = env.config(&setup);
    config.redis_url = redis.url();
    let settings = imgfleet_worker::fleet::service::consumer_settings(&config, Duration::from_millis(500));
    let worker = start_worker_with(&config, &env.sdk, settings).await;
    // The s3:TestEvent needs no Redis; let it go first.
    env.wait_queue_empty(&setup.queue_url, WAIT).await;

    redis.stop();
    let keys: Vec<String> = (0..3).map(|i| format!("uploads/outage/{i}.jpg")).collect();
    for k in &keys {
        env.upload(&setup.bucket, k, photo(400, 300)).await;
    }
    // While Redis is down, jobs run but no message may be deleted: the worker deletes none (only
    // the s3:TestEvent before the outage), and all three stay in the queue. (moto's two counts are
    // read at different instants, so one message changing state may be counted twice: hence at
    // least three, with the worker's own delete count as the exact check.)
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        let (visible, in_flight) = env.queue_counts(&setup.queue_url).await;
        assert!(visible + in_flight >= 3, "a message left the queue while Redis was down: {visible} + {in_flight}");
        let deleted = metric(&http_get(worker.metrics_addr, "/metrics").await.1, "imgfleet_messages_deleted_total");
        assert!(deleted <= 1.0, "{deleted} messages deleted while Redis was down");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let metrics = http_get(worker.metrics_addr, "/metrics").await.1;
    assert!(metric(&metrics, "imgfleet_redis_errors_total{operation=\"publish\"}") >= 3.0, "{metrics}");
    assert!(metric(&metrics, "imgfleet_messages_deleted_total") <= 1.0);
    assert!(metric(&metrics, "imgfleet_jobs_total{outcome=\"retried\"}") >= 3.0);

    redis.restart();
    let events = read_until(&redis.url(), &setup.stream, |e| completed_keys(e).len() == 3).await;
    assert_eq!(completed_keys(&events), keys.iter().cloned().collect::<HashSet<_>>());
    assert!(events.iter().all(|e| e.attempt >= 2), "completed only on a later delivery");
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    worker.shutdown();
    worker.wait().await;
}

async fn read_until(url: &str, stream: &str, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = read_events(url, stream).await;
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "events after {WAIT:?}: {events:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_a_slow_job_from_being_redelivered() {
    let env = Env::new().await;
    let setup = env.setup("heartbeat", 5, 3).await;
    let mut config = env.config(&setup);
    config.concurrency = Some(1);
    let mut settings = imgfleet_worker::fleet::service::consumer_settings(&config, Duration::from_secs(1));
    settings.visibility = Duration::from_secs(3);
    let adapters =
        adapters(&config, &env.sdk).await.map_store(|inner| SlowStore { inner, delay: Duration::from_secs(8) });
    let worker = Worker::new(&config, adapters).settings(settings).start().await.unwrap();
    let key = "uploads/slow.jpg";
    env.upload(&setup.bucket, key, photo(300, 200)).await;

    let events = env.wait_events(&setup.stream, WAIT, |e| completed_keys(e).contains(key)).await;
    let mine: Vec<_> = events.iter().filter(|e| e.source.key == key).collect();
    assert_eq!(mine.len(), 1, "processed once: {mine:#?}");
    assert_eq!(mine[0].attempt, 1, "never redelivered while running");
    assert!(mine[0].timings.unwrap().fetch_ms >= 8000.0, "the job outlived its visibility timeout more than twice");
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    let metrics = http_get(worker.metrics_addr, "/metrics").await.1;
    assert!(metric(&metrics, "imgfleet_visibility_extensions_total") >= 4.0, "{metrics}");
    assert_eq!(
        metric(&metrics, "imgfleet_message_receive_count_count"),
        2.0,
        "test event + the upload, each received once"
    );
    worker.shutdown();
    worker.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_false_while_draining() {
    let env = Env::new().await;
    let setup = env.setup("readyz", 5, 30).await;
    let config = env.config(&setup);
    let settings = imgfleet_worker::fleet::service::consumer_settings(&config, Duration::from_secs(1));
    let adapters =
        adapters(&config, &env.sdk).await.map_store(|inner| SlowStore { inner, delay: Duration::from_secs(4) });
    let worker = Worker::new(&config, adapters).settings(settings).start().await.unwrap();
    eventually(WAIT, "never ready", || async { http_get(worker.metrics_addr, "/readyz").await.0 == 200 }).await;
    assert_eq!(http_get(worker.metrics_addr, "/healthz").await.0, 200);
    env.upload(&setup.bucket, "uploads/drain.jpg", photo(300, 200)).await;
    let started =
        || async { metric(&http_get(worker.metrics_addr, "/metrics").await.1, "imgfleet_jobs_in_flight") >= 1.0 };
    eventually(WAIT, "job never started", started).await;
    worker.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = http_get(worker.metrics_addr, "/readyz").await;
    assert_eq!(status, 503, "not ready while draining");
    let metrics = http_get(worker.metrics_addr, "/metrics").await.1;
    assert_eq!(metric(&metrics, "imgfleet_draining"), 1.0);
    assert_eq!(http_get(worker.metrics_addr, "/healthz").await.0, 200, "still alive while draining");
    worker.wait().await;
    let events = env.events(&setup.stream).await;
    assert!(completed_keys(&events).contains("uploads/drain.jpg"), "the running job finished during the drain");
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_jobs_and_loses_nothing() {
    let env = Env::new().await;
    let setup = env.setup("sigterm", 5, 30).await;
    let keys: Vec<String> = (0..8).map(|i| format!("uploads/term/{i}.jpg")).collect();
    let big = photo(3200, 2400);
    for k in &keys {
        env.upload(&setup.bucket, k, big.clone()).await;
    }
    let mut child = ChildGuard::spawn(
        imgfleet_command(env!("CARGO_BIN_EXE_imgfleet-e2e-worker"), &env, &setup, &env.endpoint)
            .arg("run")
            .env("IMGFLEET_CONCURRENCY", "1")
            .env("IMGFLEET_SHUTDOWN_GRACE_SECS", "20"),
    );
    // Stop it once the first upload is done, while others are queued or running.
    env.wait_events(&setup.stream, WAIT, |e| !completed_keys(e).is_empty()).await;
    child.signal("TERM");
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait() {
            break s;
        }
        assert!(stopped.elapsed() < Duration::from_secs(25), "worker did not exit within the grace period");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let done_by_first = completed_keys(&env.events(&setup.stream).await);
    assert!(done_by_first.len() < keys.len(), "stopped before everything was done ({done_by_first:?})");
    // Unstarted messages were released at once: visible again, nothing stuck in flight.
    let (visible, in_flight) = env.queue_counts(&setup.queue_url).await;
    assert_eq!(in_flight, 0, "no message left hidden after exit");
    assert_eq!(visible as usize, keys.len() - done_by_first.len());

    // A second worker finishes the rest: nothing was lost.
    let worker = start_worker(&env.config(&setup), &env.sdk).await;
    let events = env.wait_events(&setup.stream, WAIT, |e| completed_keys(e).len() == keys.len()).await;
    assert_eq!(completed_keys(&events), keys.iter().cloned().collect::<HashSet<_>>());
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    worker.shutdown();
    worker.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_task_holds_ecs_scale_in_protection() {
    let env = Env::new().await;
    let setup = env.setup("protect", 5, 30).await;
    let agent = FakeEcsAgent::start().await;
    let mut config = env.config(&setup);
    config.ecs_task_protection = true;
    config.ecs_agent_uri = Some(agent.uri.clone());
    let settings = imgfleet_worker::fleet::service::consumer_settings(&config, Duration::from_secs(1));
    let adapters =
        adapters(&config, &env.sdk).await.map_store(|inner| SlowStore { inner, delay: Duration::from_secs(3) });
    let worker = Worker::new(&config, adapters).settings(settings).start().await.unwrap();
    env.upload(&setup.bucket, "uploads/protected.jpg", photo(300, 200)).await;
    env.wait_events(&setup.stream, WAIT, |e| completed_keys(e).contains("uploads/protected.jpg")).await;
    let enabled = agent.seen();
    assert!(
        enabled
            .iter()
            .any(|r| r.starts_with("PUT /api/task-1/task-protection/v1/state ")
                && r.contains(r#""ProtectionEnabled":true"#)),
        "{enabled:?}"
    );
    // Given up once idle.
    let released = || async { agent.seen().last().is_some_and(|r| r.contains(r#""ProtectionEnabled":false"#)) };
    eventually(Duration::from_secs(20), "protection never released", released).await;
    worker.shutdown();
    worker.wait().await;
}

/// A worker whose S3 and SQS calls go through a fault proxy (retries paced from 1 s, long polls of
/// `wait`), once the s3:TestEvent is out of the way.
async fn behind_proxy(env: &Env, name: &str, wait: Duration) -> (Setup, FaultProxy, RunningWorker) {
    let setup = env.setup(name, 10, 30).await;
    let proxy = FaultProxy::start(&env.endpoint).await;
    let sdk = sdk_config(&proxy.url()).await;
    let config = env.config(&setup);
    let mut settings = imgfleet_worker::fleet::service::consumer_settings(&config, Duration::from_secs(1));
    settings.wait = wait;
    let worker = start_worker_with(&config, &sdk, settings).await;
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    (setup, proxy, worker)
}

/// S3 failing (503 on every request) and then slow: jobs are retried with backoff, none is lost,
/// and the worker does not hammer S3 while it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_and_slowness_are_retried_without_a_hot_loop() {
    let env = Env::new().await;
    let (setup, proxy, worker) = behind_proxy(&env, "s3faults", Duration::from_secs(20)).await;

    proxy.set(Service::S3, Fault::Error(503));
    let outage = Instant::now();
    let keys: Vec<String> = (0..4).map(|i| format!("uploads/s3down/{i}.jpg")).collect();
    for k in &keys {
        env.upload(&setup.bucket, k, photo(320, 240)).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let failing = proxy.count(Service::S3, outage);
    proxy.set(Service::S3, Fault::Delay(Duration::from_millis(400)));
    let events = env.wait_events(&setup.stream, WAIT, |e| completed_keys(e).len() == keys.len()).await;
    proxy.set(Service::S3, Fault::Pass);
    assert_eq!(completed_keys(&events), keys.iter().cloned().collect::<HashSet<_>>());
    assert!(events.iter().all(|e| e.kind == EventType::Completed && e.attempt >= 2), "{events:#?}");
    // 4 jobs for 8 s: the SDK's 3 attempts per call, then the message's backoff (1 s, 2 s, 4 s).
    eprintln!("s3 outage: {failing} S3 requests in 8 s for 4 jobs");
    assert!(failing >= 4, "the jobs tried S3: {failing}");
    assert!(failing <= 4 * 3 * 5, "{failing} S3 requests in 8 s of outage: a hot loop");
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    let metrics = http_get(worker.metrics_addr, "/metrics").await.1;
    assert!(metric(&metrics, "imgfleet_aws_errors_total{operation=\"GetObject\",service=\"s3\"}") >= 4.0, "{metrics}");
    assert!(metric(&metrics, "imgfleet_jobs_total{outcome=\"retried\"}") >= 4.0);
    // 503s pass on their own: transient (kind storage), not a configuration error.
    assert_eq!(metric(&metrics, "imgfleet_storage_config_errors_total{operation=\"GetObject\"}"), 0.0);
    worker.shutdown();
    worker.wait().await;
}

/// An S3 refusal no retry fixes (the configured output bucket does not exist: `NoSuchBucket`) is
/// kind `storage_config`: counted as such, no event, and the message kept for its redrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_refusal_is_a_configuration_error_and_its_message_is_kept() {
    let env = Env::new().await;
    let setup = env.setup("s3config", 10, 30).await;
    let mut config = env.config(&setup);
    config.output_bucket = Some(format!("imgfleet-no-such-bucket-{}", std::process::id()));
    let settings = imgfleet_worker::fleet::service::consumer_settings(&config, Duration::from_millis(500));
    let worker = start_worker_with(&config, &env.sdk, settings).await;
    let key = "uploads/config/me.jpg";
    env.upload(&setup.bucket, key, photo(200, 150)).await;
    let refused = "imgfleet_storage_config_errors_total{operation=\"PutObject\"}";
    let twice = || async { metric(&http_get(worker.metrics_addr, "/metrics").await.1, refused) >= 2.0 };
    eventually(WAIT, "PutObject into a missing bucket was not counted as a configuration error", twice).await;
    let metrics = worker.metrics.clone();
    worker.shutdown();
    worker.wait().await;

    let text = metrics.render();
    assert!(metric(&text, "imgfleet_jobs_total{outcome=\"retried\"}") >= 2.0, "{text}");
    assert!(metric(&text, "imgfleet_aws_errors_total{operation=\"PutObject\",service=\"s3\"}") >= 2.0);
    assert!(metric(&text, "imgfleet_messages_deleted_total") <= 1.0, "only the s3:TestEvent is deleted");
    let (visible, in_flight) = env.queue_counts(&setup.queue_url).await;
    assert!(visible + in_flight >= 1, "the upload's message is kept");
    let events = read_events(&env.redis_url, &setup.stream).await;
    assert!(events.is_empty(), "a job kept for a retry publishes nothing: {events:?}");
}

/// SQS unreachable for 30 s: the worker stays up, reports not ready, and recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_outage_makes_the_worker_unready_until_it_recovers() {
    let env = Env::new().await;
    let (setup, proxy, worker) = behind_proxy(&env, "sqsdown", Duration::from_secs(2)).await;
    assert_eq!(http_get(worker.metrics_addr, "/readyz").await.0, 200);

    proxy.set(Service::Sqs, Fault::Drop);
    let down = Instant::now();
    let key = "uploads/sqsdown/late.jpg";
    env.upload(&setup.bucket, key, photo(320, 240)).await;
    let mut unready_at = None;
    while down.elapsed() < Duration::from_secs(30) {
        assert_eq!(http_get(worker.metrics_addr, "/healthz").await.0, 200, "the worker stays up");
        if unready_at.is_none() && http_get(worker.metrics_addr, "/readyz").await.0 == 503 {
            unready_at = Some(down.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let unready_at = unready_at.expect("/readyz turned false during the outage");
    assert!(unready_at < Duration::from_secs(20), "noticed after {unready_at:?}");
    let during = proxy.count(Service::Sqs, down);
    assert!(during < 200, "{during} SQS requests in 30 s of outage: a hot loop");

    proxy.set(Service::Sqs, Fault::Pass);
    let back = Instant::now();
    env.wait_events(&setup.stream, WAIT, |e| completed_keys(e).contains(key)).await;
    let ready = || async { http_get(worker.metrics_addr, "/readyz").await.0 == 200 };
    eventually(Duration::from_secs(20), "/readyz still false after the outage", ready).await;
    eprintln!("sqs outage: unready after {unready_at:?}, {during} SQS requests, recovered in {:?}", back.elapsed());
    worker.shutdown();
    worker.wait().await;
}

/// `kill -9` mid-job: the message comes back after its visibility timeout and another worker
/// completes it; the effect is the same keys and one job id, and a duplicate is recognisable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_completes_elsewhere_exactly_once() {
    let env = Env::new().await;
    let setup = env.setup("kill9", 10, 10).await;
    let proxy = FaultProxy::start(&env.endpoint).await;
    proxy.set(Service::S3, Fault::Delay(Duration::from_secs(3)));
    let key = "uploads/kill9/me.jpg";
    let mut child = ChildGuard::spawn(
        imgfleet_command(env!("CARGO_BIN_EXE_imgfleet-e2e-worker"), &env, &setup, &proxy.url())
            .arg("run")
            .env("IMGFLEET_VISIBILITY_TIMEOUT_SECS", "10"),
    );
    env.upload(&setup.bucket, key, photo(800, 600)).await;
    // Kill it while it is fetching the source (S3 answers after 3 s).
    let fetching = || async {
        proxy.seen().iter().any(|s| s.service == Service::S3 && s.method == "GET" && s.path.contains("kill9"))
    };
    eventually(WAIT, "the worker never fetched the upload", fetching).await;
    child.signal("KILL");
    child.wait();
    let killed_at = Instant::now();
    assert!(read_events(&env.redis_url, &setup.stream).await.is_empty(), "nothing was published before the kill");

    let worker = start_worker(&env.config(&setup), &env.sdk).await;
    let events = env.wait_events(&setup.stream, WAIT, |e| completed_keys(e).contains(key)).await;
    let first = events.iter().find(|e| e.source.key == key).unwrap().clone();
    assert!(first.attempt >= 2, "delivered again after the visibility timeout: attempt {}", first.attempt);
    assert!(killed_at.elapsed() >= Duration::from_secs(3), "not before the timeout ran out");
    assert_eq!(
        first.job_id,
        imgfleet_worker::fleet::job::job_id(&setup.bucket, key, first.source.etag.as_deref()),
        "the job id is the object version's"
    );

    // The same notification delivered once more: the same job id and the same keys, so a consumer
    // drops it.
    env.send(&setup.queue_url, &s3_record(&setup.bucket, key, "ObjectCreated:Put", "")).await;
    let events =
        env.wait_events(&setup.stream, WAIT, |e| e.iter().filter(|ev| ev.source.key == key).count() == 2).await;
    let second = events.iter().filter(|e| e.source.key == key).nth(1).unwrap();
    assert_eq!(second.job_id, first.job_id);
    let keys = |e: &Event| e.renditions.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(second), keys(&first));
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    worker.shutdown();
    worker.wait().await;
}
