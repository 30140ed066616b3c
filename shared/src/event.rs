//! Completion and failure events, published through Redis for the systems that enqueue work.
//!
//! Every event is one JSON object with `"v": 1`. Events are delivered at least once: the same
//! source object version always carries the same `job_id`, so a consumer recognises a duplicate.
//! Fields added later are optional, so a v1 reader that ignores unknown fields keeps working.

use crate::ImageFormat;
use crate::outcome::{ErrorInfo, StageTimings};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The event schema version written in `v`.
pub const EVENT_VERSION: u32 = 1;

/// Default Redis stream (and pub/sub channel) name.
pub const DEFAULT_STREAM: &str = "imgfleet:events";

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "rendition.completed")]
    Completed,
    #[serde(rename = "rendition.failed")]
    Failed,
    /// The source was removed and its renditions deleted (or found already gone, or kept because
    /// they belong to a newer upload: see `kept` and `reason`).
    #[serde(rename = "rendition.deleted")]
    Deleted,
}

/// The source object an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSource {
    pub bucket: String,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub format: Option<ImageFormat>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub height: Option<u32>,
    /// Frames in the source once it is decoded (1 for a still image); an animated GIF or WebP
    /// is rendered from its first frame.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub frames: Option<u32>,
    /// Present, and true, when the source is animated.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub animated: bool,
}

/// One stored rendition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRendition {
    pub name: String,
    pub format: ImageFormat,
    pub bucket: String,
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub content_type: String,
    /// Public URL, when the worker has `IMGFLEET_PUBLIC_BASE_URL`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub url: Option<String>,
}

/// An object named by bucket and key (a deleted or kept rendition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    pub bucket: String,
    pub key: String,
}

/// Milliseconds since the Unix epoch: the time base of [`Event::timestamp_ms`].
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The public URL of a stored rendition: `base` joined with the key, each key segment
/// percent-encoded. `version` (the source's ETag) goes in a `v` query parameter, so a replaced
/// photo gets a new URL and caches with long lifetimes never serve the old one.
#[must_use]
pub fn public_url(base: &str, key: &str, version: Option<&str>) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    let path: Vec<String> =
        key.split('/').map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()).collect();
    let mut url = format!("{}/{}", base.trim_end_matches('/'), path.join("/"));
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        let v: String = v.chars().filter(char::is_ascii_alphanumeric).take(16).collect();
        url.push_str("?v=");
        url.push_str(&v);
    }
    url
}

/// Timings of a whole job: the pipeline stages plus fetch, store and the total, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct JobTimings {
    pub fetch_ms: f64,
    #[serde(flatten)]
    pub pipeline: StageTimings,
    pub store_ms: f64,
    pub total_ms: f64,
}

/// A `rendition.completed` or `rendition.failed` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub job_id: String,
    pub source: EventSource,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub renditions: Vec<EventRendition>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub placeholder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timings: Option<JobTimings>,
    /// How many times the queue has delivered this message (SQS `ApproximateReceiveCount`).
    pub attempt: u32,
    pub worker_id: String,
    /// Milliseconds since the Unix epoch when the event was made.
    pub timestamp_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorInfo>,
    /// `rendition.deleted`: the renditions this removal deleted.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub deleted: Vec<StoredObject>,
    /// `rendition.deleted`: renditions left in place because they belong to a newer upload.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub kept: Vec<StoredObject>,
    /// `rendition.deleted`: why nothing or not everything was deleted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// `rendition.completed`: what was wrong with the source but did not stop it (an ignored ICC
    /// profile), one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub warnings: Vec<String>,
    /// `rendition.completed`: the region a non-centre (`attention` or `face`) crop centred on, in the
    /// upright source's pixels: the faces with their headroom when a `face` crop found any, else the
    /// salient region; absent for centred crops and for images with neither.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub focus: Option<crate::FocusBox>,
    /// `rendition.completed`: how many faces the detector found, when the preset has a `face` crop.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub faces: Option<u32>,
}

impl Event {
    /// An event with no renditions, timings or error yet.
    #[must_use]
    pub fn new(kind: EventType, job_id: String, source: EventSource, worker_id: String, timestamp_ms: u64) -> Self {
        Self {
            v: EVENT_VERSION,
            kind,
            job_id,
            source,
            preset: None,
            renditions: vec![],
            placeholder: None,
            timings: None,
            attempt: 0,
            worker_id,
            timestamp_ms,
            error: None,
            deleted: vec![],
            kept: vec![],
            reason: None,
            warnings: vec![],
            focus: None,
            faces: None,
        }
    }

    /// Serialises to the JSON carried in the stream's `event` field.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialise: no maps with non-string keys")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn failure_event_has_the_documented_shape() {
        let source = EventSource { bucket: "b".into(), key: "uploads/a.jpg".into(), ..Default::default() };
        let mut e = Event::new(EventType::Failed, "j1".into(), source, "w".into(), 1);
        e.attempt = 2;
        e.error = Some(ErrorInfo { kind: ErrorKind::Unsupported, message: "GIF".into() });
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["type"], "rendition.failed");
        assert_eq!(v["v"], 1);
        assert_eq!(v["error"]["kind"], "unsupported");
        assert_eq!(v["source"]["key"], "uploads/a.jpg");
        assert!(v["source"].get("etag").is_none());
        assert!(v.get("deleted").is_none() && v.get("reason").is_none());
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn public_urls_encode_each_segment_and_carry_the_version() {
        assert_eq!(
            public_url("https://img.example.com/", "renditions/u/42/me/thumb.webp", None),
            "https://img.example.com/renditions/u/42/me/thumb.webp"
        );
        assert_eq!(
            public_url("https://cdn.example.com/a", "renditions/my photo é+?#/thumb.jpg", Some("9b2cf535f27731c9")),
            "https://cdn.example.com/a/renditions/my%20photo%20%C3%A9%2B%3F%23/thumb.jpg?v=9b2cf535f27731c9"
        );
        assert!(public_url("https://c", "k", Some("\"-3&x")).ends_with("/k?v=3x"));
    }
}
