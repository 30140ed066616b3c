//! Completion and failure events, published through Redis for the systems that enqueue work.
//!
//! Every event is one JSON object with `"v": 1`. Events are delivered at least once: the same
//! source object version always carries the same `job_id`, so a consumer recognises a duplicate.

use crate::ImageFormat;
use crate::outcome::{ErrorInfo, StageTimings};
use serde::{Deserialize, Serialize};

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
}

impl Event {
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
        let e = Event {
            v: EVENT_VERSION,
            kind: EventType::Failed,
            job_id: "j1".into(),
            source: EventSource { bucket: "b".into(), key: "uploads/a.jpg".into(), ..Default::default() },
            preset: None,
            renditions: vec![],
            placeholder: None,
            timings: None,
            attempt: 2,
            worker_id: "w".into(),
            timestamp_ms: 1,
            error: Some(ErrorInfo { kind: ErrorKind::Unsupported, message: "GIF".into() }),
        };
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["type"], "rendition.failed");
        assert_eq!(v["v"], 1);
        assert_eq!(v["error"]["kind"], "unsupported");
        assert_eq!(v["source"]["key"], "uploads/a.jpg");
        assert!(v["source"].get("etag").is_none());
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
