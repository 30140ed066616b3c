//! S3 event notifications and `s3:TestEvent`, and the S3 key encoding
//! (see [S3 event notifications](super#s3-event-notifications) and
//! [Test events](super#test-events)).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::Value;

use super::wire::{BucketWire, clean_etag, from_value, non_empty, required};
use super::{Action, JobOptions, Message, ObjectRef, Origin, ParseError, Request, preview};

/// The `Event` of the message S3 sends when a notification is configured.
const S3_TEST_EVENT: &str = "s3:TestEvent";

/// Decodes an S3 event notification key: `+` becomes a space, then `%XX`
/// escapes become bytes, which must form UTF-8.
///
/// `incoming%2Fmy+photo+%C3%A9%2B%C3%BC%26x.jpg` → `incoming/my photo é+ü&x.jpg`.
///
/// # Errors
///
/// [`ParseError::BadKeyEncoding`] if a `%` is not followed by two hex digits,
/// or the decoded bytes are not UTF-8.
pub fn decode_s3_key(encoded: &str) -> Result<String, ParseError> {
    let bad = |reason| ParseError::BadKeyEncoding { key: encoded.to_owned(), reason };
    if !has_only_complete_escapes(encoded) {
        return Err(bad("a `%` is not followed by two hex digits"));
    }
    let spaced = encoded.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| bad("the decoded bytes are not valid UTF-8"))
}

/// Whether every `%` in `text` starts a `%XX` escape.
fn has_only_complete_escapes(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &byte)| byte == b'%')
        .all(|(at, _)| bytes.get(at + 1..at + 3).is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)))
}

/// `{"Records":[..]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct S3NotificationWire {
    #[serde(rename = "Records")]
    records: Vec<S3RecordWire>,
}

/// One element of `Records`; other fields (`awsRegion`, `eventTime`, ..) are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct S3RecordWire {
    #[serde(rename = "eventVersion")]
    event_version: Option<String>,
    #[serde(rename = "eventSource")]
    event_source: Option<String>,
    #[serde(rename = "eventName")]
    event_name: Option<String>,
    s3: S3EntityWire,
}

/// A record's `s3`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct S3EntityWire {
    bucket: BucketWire,
    object: S3ObjectWire,
}

/// A record's `s3.object`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct S3ObjectWire {
    key: Option<String>,
    size: Option<u64>,
    #[serde(rename = "eTag")]
    etag: Option<String>,
    #[serde(rename = "versionId")]
    version_id: Option<String>,
    sequencer: Option<String>,
}

impl Action {
    /// Reads an S3 notification `eventName` (without its `s3:` prefix).
    fn from_s3_event_name(event_name: &str) -> Self {
        match event_name.split(':').next() {
            Some("ObjectCreated") => Self::Created,
            // An upload that expired by a lifecycle rule is gone as surely as a deleted one, and
            // EventBridge reports it as "Object Deleted": both forms remove its renditions.
            Some("ObjectRemoved" | "LifecycleExpiration") => Self::Removed,
            _ => Self::Other,
        }
    }
}

/// Parses an S3 event notification: every record must be usable.
pub(super) fn parse_s3_notification(value: &Value, origin: Origin) -> Result<Message, ParseError> {
    let notification: S3NotificationWire = from_value(value, "S3 event notification")?;
    if notification.records.is_empty() {
        return Err(ParseError::EmptyRecords);
    }
    notification
        .records
        .into_iter()
        .enumerate()
        .map(|(index, record)| s3_record_request(index, record, origin))
        .collect::<Result<Vec<_>, _>>()
        .map(Message::Requests)
}

/// Turns one S3 notification record into a request.
fn s3_record_request(index: usize, record: S3RecordWire, origin: Origin) -> Result<Request, ParseError> {
    check_s3_event_source(index, record.event_source)?;
    check_s3_event_version(record.event_version)?;
    let event_name = required(record.event_name, "Records[].eventName")?;
    let event_name = match event_name.strip_prefix("s3:") {
        Some(bare) => bare.to_owned(),
        None => event_name,
    };
    Ok(Request {
        action: Action::from_s3_event_name(&event_name),
        event_name,
        origin,
        object: s3_object_ref(record.s3)?,
        options: JobOptions::default(),
    })
}

/// Accepts an absent `eventSource`, `aws:s3`, or any other `*:s3`.
fn check_s3_event_source(index: usize, event_source: Option<String>) -> Result<(), ParseError> {
    match non_empty(event_source) {
        Some(source) if !source.ends_with(":s3") => Err(ParseError::ForeignRecord { index, event_source: source }),
        _ => Ok(()),
    }
}

/// Accepts an absent `eventVersion`, or any `2.x`.
fn check_s3_event_version(event_version: Option<String>) -> Result<(), ParseError> {
    match non_empty(event_version) {
        Some(version) if version.split('.').next() != Some("2") => Err(ParseError::UnsupportedEventVersion(version)),
        _ => Ok(()),
    }
}

/// The object of an S3 notification record, with its key decoded.
fn s3_object_ref(entity: S3EntityWire) -> Result<ObjectRef, ParseError> {
    let object = entity.object;
    let encoded_key = required(object.key, "Records[].s3.object.key")?;
    Ok(ObjectRef {
        bucket: required(entity.bucket.name, "Records[].s3.bucket.name")?,
        key: decode_s3_key(&encoded_key)?,
        size: object.size,
        etag: clean_etag(object.etag),
        version_id: non_empty(object.version_id),
        sequencer: non_empty(object.sequencer),
    })
}

/// Orders two S3 event sequencers for the same key: the greater one is the later event.
/// Sequencers may differ in length; the shorter is right-padded with zeros before the
/// (case-insensitive) comparison, as S3's documentation prescribes.
#[must_use]
pub fn compare_sequencers(a: &str, b: &str) -> std::cmp::Ordering {
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{:0<width$}", s.to_ascii_uppercase());
    pad(a).cmp(&pad(b))
}

/// Encodes a key the way S3 does in event notifications: UTF-8 percent-encoding with `+` for a
/// space. The inverse of [`decode_s3_key`].
#[must_use]
pub fn encode_s3_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'*').remove(b' ');
    percent_encoding::utf8_percent_encode(key, KEEP).to_string().replace(' ', "+")
}

/// The body S3 sends to SQS for one `ObjectCreated:Put` (used by `imgfleet demo` and the load test).
#[must_use]
pub fn s3_put_notification(bucket: &str, object: &ObjectRef, event_time: &str) -> String {
    s3_notification(bucket, object, "ObjectCreated:Put", event_time)
}

/// The body S3 sends to SQS for one event on `object` (its sequencer included when it has one).
#[must_use]
pub fn s3_notification(bucket: &str, object: &ObjectRef, event_name: &str, event_time: &str) -> String {
    let mut body = serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": event_time,
            "eventName": event_name,
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": {"key": encode_s3_key(&object.key), "size": object.size, "eTag": object.etag}
            }
        }]
    });
    if let Some(sequencer) = &object.sequencer {
        body["Records"][0]["s3"]["object"]["sequencer"] = sequencer.clone().into();
    }
    body.to_string()
}

// ---------------------------------------------------------------------------
// Test events

/// `{"Event":"s3:TestEvent",..}`; `Service`, `Time`, `Bucket` and ids are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TestEventWire {
    #[serde(rename = "Event")]
    event: Option<String>,
}

/// Accepts `s3:TestEvent`, and no other `Event`.
pub(super) fn parse_test_event(value: &Value) -> Result<Message, ParseError> {
    let test: TestEventWire = from_value(value, "s3:TestEvent")?;
    match required(test.event, "Event")? {
        event if event == S3_TEST_EVENT => Ok(Message::Test),
        event => Err(ParseError::UnknownShape { hint: format!("Event {} is not s3:TestEvent", preview(&event)) }),
    }
}
