//! EventBridge events (see [EventBridge events](super#eventbridge-events)).

use serde::Deserialize;
use serde_json::Value;

use super::wire::{BucketWire, clean_etag, from_value, non_empty, required};
use super::{Action, JobOptions, Message, ObjectRef, Origin, ParseError, Request};

/// The EventBridge `source` of S3 events.
const EVENTBRIDGE_S3_SOURCE: &str = "aws.s3";

/// The envelope fields checked before the detail is read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventBridgeHeaderWire {
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    source: Option<String>,
}

/// An `aws.s3` event's body; `request-id`, `reason` and the like are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventBridgeS3Wire {
    detail: EventBridgeDetailWire,
}

/// `detail` of an `aws.s3` event.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventBridgeDetailWire {
    bucket: BucketWire,
    object: EventBridgeObjectWire,
}

/// `detail.object` of an `aws.s3` event.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventBridgeObjectWire {
    key: Option<String>,
    size: Option<u64>,
    #[serde(alias = "eTag")]
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
    sequencer: Option<String>,
}

impl Action {
    /// Reads an EventBridge `detail-type`.
    fn from_eventbridge_detail_type(detail_type: &str) -> Self {
        match detail_type {
            "Object Created" => Self::Created,
            "Object Deleted" => Self::Removed,
            _ => Self::Other,
        }
    }
}

/// Parses an EventBridge event from `aws.s3` into one request.
pub(super) fn parse_eventbridge(value: &Value, origin: Origin) -> Result<Message, ParseError> {
    let header: EventBridgeHeaderWire = from_value(value, "EventBridge event")?;
    let source = required(header.source, "source")?;
    if source != EVENTBRIDGE_S3_SOURCE {
        return Err(ParseError::ForeignEventSource(source));
    }
    let detail_type = required(header.detail_type, "detail-type")?;
    let event: EventBridgeS3Wire = from_value(value, "EventBridge S3 event")?;
    Ok(Message::Requests(vec![Request {
        action: Action::from_eventbridge_detail_type(&detail_type),
        event_name: detail_type,
        origin,
        object: eventbridge_object_ref(event.detail)?,
        options: JobOptions::default(),
    }]))
}

/// The object of an EventBridge detail; its key is literal.
fn eventbridge_object_ref(detail: EventBridgeDetailWire) -> Result<ObjectRef, ParseError> {
    let object = detail.object;
    Ok(ObjectRef {
        bucket: required(detail.bucket.name, "detail.bucket.name")?,
        key: required(object.key, "detail.object.key")?,
        size: object.size,
        etag: clean_etag(object.etag),
        version_id: non_empty(object.version_id),
        sequencer: non_empty(object.sequencer),
    })
}
