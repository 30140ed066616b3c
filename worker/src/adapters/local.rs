//! Local adapters for `imgfleet demo`: an in-process queue with SQS semantics (visibility,
//! receive counts, long polling), a folder-backed object store and a JSON-lines event file.
//! Explicit only: `imgfleet run` never falls back to these.

use crate::adapters::events::{EventSink, PublishError};
use crate::adapters::queue::{Queue, QueueError, ReceivedMessage};
use crate::adapters::storage::{
    Deleted, Fetched, Head, ListPage, ListQuery, ListedObject, ObjectStore, PutOptions, StoreError,
};
use imgfleet_shared::envelope::{ObjectRef, s3_put_notification};
use imgfleet_shared::event::Event;
use imgfleet_shared::event::now_ms;
use imgfleet_shared::keys::clean_source_key;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    body: String,
    receive_count: u32,
    sent_at_ms: u64,
}

#[derive(Debug, Default)]
struct QueueState {
    ready: VecDeque<Stored>,
    in_flight: HashMap<String, (Stored, Instant)>,
    next: u64,
}

/// An in-memory queue that behaves like SQS for one process.
#[derive(Debug, Default)]
pub struct LocalQueue {
    state: Mutex<QueueState>,
    notify: Notify,
}

impl LocalQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Enqueues a message body.
    pub fn send(&self, body: String) {
        let mut s = self.state.lock().expect("queue lock");
        s.next += 1;
        let id = format!("local-{}", s.next);
        s.ready.push_back(Stored { id, body, receive_count: 0, sent_at_ms: now_ms() });
        drop(s);
        self.notify.notify_waiters();
    }

    /// Messages (visible, in flight).
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().expect("queue lock");
        (s.ready.len(), s.in_flight.len())
    }

    /// True when nothing is waiting or in flight.
    pub fn is_idle(&self) -> bool {
        let s = self.state.lock().expect("queue lock");
        s.ready.is_empty() && s.in_flight.is_empty()
    }

    fn take(&self, max: usize, visibility: Duration) -> Vec<ReceivedMessage> {
        let mut s = self.state.lock().expect("queue lock");
        let now = Instant::now();
        let expired: Vec<String> =
            s.in_flight.iter().filter(|(_, (_, until))| *until <= now).map(|(r, _)| r.clone()).collect();
        for receipt in expired {
            if let Some((m, _)) = s.in_flight.remove(&receipt) {
                s.ready.push_back(m);
            }
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(mut m) = s.ready.pop_front() else { break };
            m.receive_count += 1;
            s.next += 1;
            let receipt = format!("{}#{}", m.id, s.next);
            out.push(ReceivedMessage {
                id: m.id.clone(),
                receipt: receipt.clone(),
                body: m.body.clone(),
                receive_count: m.receive_count,
                sent_at_ms: Some(m.sent_at_ms),
            });
            s.in_flight.insert(receipt, (m, now + visibility));
        }
        out
    }
}

impl Queue for LocalQueue {
    async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            let got = self.take(max.max(1) as usize, visibility);
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            // Re-check at least every 100 ms so expired visibility is noticed.
            let _ = tokio::time::timeout_at(deadline.min(Instant::now() + Duration::from_millis(100)), notified).await;
        }
    }

    async fn delete_batch(&self, entries: Vec<(String, String)>) -> Result<Vec<(String, String)>, QueueError> {
        let mut s = self.state.lock().expect("queue lock");
        Ok(entries
            .into_iter()
            .filter(|(_, receipt)| s.in_flight.remove(receipt).is_none())
            .map(|(id, _)| (id, "ReceiptHandleIsInvalid".to_owned()))
            .collect())
    }

    async fn set_visibility(&self, receipt: &str, seconds: u32) -> Result<(), QueueError> {
        let mut s = self.state.lock().expect("queue lock");
        let Some((m, until)) = s.in_flight.get_mut(receipt) else {
            return Err(QueueError { operation: "ChangeMessageVisibility", message: "ReceiptHandleIsInvalid".into() });
        };
        if seconds == 0 {
            let m = m.clone();
            s.in_flight.remove(receipt);
            s.ready.push_back(m);
            drop(s);
            self.notify.notify_waiters();
        } else {
            *until = Instant::now() + Duration::from_secs(u64::from(seconds));
        }
        Ok(())
    }

    async fn send_batch(&self, bodies: Vec<String>) -> Result<Vec<(String, String)>, QueueError> {
        for body in bodies {
            self.send(body);
        }
        Ok(Vec::new())
    }

    async fn visible_messages(&self, _url: Option<&str>) -> Result<i64, QueueError> {
        Ok(self.state.lock().expect("queue lock").ready.len() as i64)
    }
}

/// Objects as files: `ROOT/<bucket>/<key>`.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file an object lives in (keys are cleaned so they stay under the root).
    pub fn path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(clean_source_key(bucket)).join(clean_source_key(key))
    }

    /// Writes an object and returns its ETag.
    pub fn upload(&self, bucket: &str, key: &str, body: &[u8]) -> std::io::Result<String> {
        let path = self.path(bucket, key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, body)?;
        Ok(etag(body))
    }

    /// Writes an object as an upload does and returns the S3 notification its bucket would send.
    pub fn upload_notified(&self, bucket: &str, key: &str, body: &[u8]) -> std::io::Result<String> {
        let object = ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            size: Some(body.len() as u64),
            etag: Some(self.upload(bucket, key, body)?),
            ..Default::default()
        };
        Ok(s3_put_notification(bucket, &object, "2026-01-01T00:00:00.000Z"))
    }
}

/// Every file under `root`, as keys (`/`-separated paths relative to it).
fn files_under(root: &Path) -> std::io::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                keys.push(relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/"));
            }
        }
    }
    Ok(keys)
}

fn etag(body: &[u8]) -> String {
    Sha256::digest(body)[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl ObjectStore for DirStore {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Fetched, StoreError> {
        let path = self.path(bucket, key);
        let failed = |e: std::io::Error| StoreError::Failed {
            operation: "GetObject",
            bucket: bucket.into(),
            key: key.into(),
            message: e.to_string(),
            transient: true,
        };
        let size = match tokio::fs::metadata(&path).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { bucket: bucket.into(), key: key.into() });
            }
            Err(e) => return Err(failed(e)),
        };
        if size > max_bytes {
            return Err(StoreError::TooLarge { bucket: bucket.into(), key: key.into(), size, limit: max_bytes });
        }
        let bytes = tokio::fs::read(&path).await.map_err(failed)?;
        Ok(Fetched { etag: Some(etag(&bytes)), bytes, version_id: None })
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, _options: &PutOptions) -> Result<(), StoreError> {
        let path = self.path(bucket, key);
        let failed = |e: std::io::Error| StoreError::Failed {
            operation: "PutObject",
            bucket: bucket.into(),
            key: key.into(),
            message: e.to_string(),
            transient: true,
        };
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(failed)?;
        }
        tokio::fs::write(&path, body).await.map_err(failed)
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<Head>, StoreError> {
        match tokio::fs::read(self.path(bucket, key)).await {
            Ok(body) => Ok(Some(Head { etag: Some(etag(&body)), size: body.len() as u64, metadata: HashMap::new() })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Failed {
                operation: "HeadObject",
                bucket: bucket.into(),
                key: key.into(),
                message: e.to_string(),
                transient: true,
            }),
        }
    }

    async fn delete(&self, bucket: &str, key: &str, if_match: Option<&str>) -> Result<Deleted, StoreError> {
        let Some(head) = self.head(bucket, key).await? else { return Ok(Deleted::Missing) };
        if if_match.is_some_and(|m| head.etag.as_deref() != Some(m)) {
            return Ok(Deleted::Changed);
        }
        match tokio::fs::remove_file(self.path(bucket, key)).await {
            Ok(()) => Ok(Deleted::Deleted),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Deleted::Missing),
            Err(e) => Err(StoreError::Failed {
                operation: "DeleteObject",
                bucket: bucket.into(),
                key: key.into(),
                message: e.to_string(),
                transient: true,
            }),
        }
    }

    async fn list(&self, bucket: &str, query: &ListQuery<'_>) -> Result<ListPage, StoreError> {
        let ListQuery { prefix, start_after, page, max_keys } = *query;
        let root = self.root.join(clean_source_key(bucket));
        let failed = |message: String| StoreError::Failed {
            operation: "ListObjectsV2",
            bucket: bucket.into(),
            key: prefix.into(),
            message,
            transient: true,
        };
        let mut keys = tokio::task::spawn_blocking(move || files_under(&root))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        keys.sort();
        // The page token is the last key of the previous page.
        let after = page.or(start_after).unwrap_or("");
        keys.retain(|k| k.starts_with(prefix) && k.as_str() > after);
        let more = keys.len() > max_keys.max(1) as usize;
        keys.truncate(max_keys.max(1) as usize);
        let mut objects = Vec::with_capacity(keys.len());
        for key in keys {
            let path = self.path(bucket, &key);
            let body = tokio::fs::read(&path).await.map_err(|e| failed(e.to_string()))?;
            let modified = tokio::fs::metadata(&path).await.ok().and_then(|m| m.modified().ok());
            objects.push(ListedObject { size: body.len() as u64, etag: Some(etag(&body)), modified, key });
        }
        let next = if more { objects.last().map(|o| o.key.clone()) } else { None };
        Ok(ListPage { objects, next })
    }
}

/// Appends each event as one JSON line to a file, and prints a one-line summary.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    quiet: bool,
}

impl JsonlSink {
    pub fn create(path: &Path, quiet: bool) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { path: path.to_owned(), file: Mutex::new(file), quiet })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl EventSink for JsonlSink {
    async fn publish(&self, event: &Event) -> Result<(), PublishError> {
        let line = event.to_json();
        let mut f = self.file.lock().map_err(|_| PublishError("event file lock poisoned".into()))?;
        writeln!(f, "{line}").map_err(|e| PublishError(e.to_string()))?;
        drop(f);
        if !self.quiet {
            match &event.error {
                None => eprintln!(
                    "  completed {:<40} {}x{} -> {} renditions",
                    event.source.key,
                    event.source.width.unwrap_or(0),
                    event.source.height.unwrap_or(0),
                    event.renditions.len()
                ),
                Some(e) => eprintln!("  failed    {:<40} {}: {}", event.source.key, e.kind, e.message),
            }
        }
        Ok(())
    }
}
