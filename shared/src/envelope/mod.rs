//! SQS message body → what it asks for.
//!
//! Every worker reads one queue, and several producers write to it.
//! [`parse_message`] tells their shapes apart by their top-level fields and
//! turns each into a [`Message`]:
//!
//! | Shape                  | Recognised by             | Becomes                                      | Quirks |
//! |------------------------|---------------------------|----------------------------------------------|--------|
//! | S3 event notification  | `Records`                 | [`Message::Requests`], [`Origin::S3`]         | [encoded keys, `s3:` prefix](#s3-event-notifications) |
//! | SNS envelope           | `Type` + `Message`        | the wrapped message, [`Origin::Sns`]          | [JSON inside a string](#sns-envelopes) |
//! | EventBridge event      | `detail-type`             | [`Message::Requests`], [`Origin::EventBridge`] | [literal keys, kebab-case](#eventbridge-events) |
//! | `s3:TestEvent`         | `Event`                   | [`Message::Test`]                             | [optional ids](#test-events) |
//! | direct job             | `v`                       | [`Message::Requests`], [`Origin::Direct`]     | [versioned, literal keys](#direct-jobs) |
//!
//! Anything else is a [`ParseError`]. Its `Display` is self-contained (it
//! names the shape and the field at fault), because the caller logs it as the
//! reason a message was set aside as poison; no variant has a `source()`.
//! Parsing never panics on input.
//!
//! # S3 event notifications
//!
//! `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{..}}]}`.
//! One message may hold several records; all must parse, and there must be at
//! least one.
//!
//! - **Keys are form-URL-encoded**: `+` is a space and `%XX` a byte, in that
//!   order, and the bytes must be UTF-8 ([`decode_s3_key`]). moto encodes `/`
//!   as `%2F` and spaces as `+`; LocalStack leaves `/` alone and writes spaces
//!   as `%20`. Both decode the same way.
//! - **`eventName`** is `ObjectCreated:Put` from AWS but `s3:ObjectCreated:Put`
//!   from some producers (MinIO, Ceph); the `s3:` prefix is dropped.
//!   `ObjectCreated:*` is [`Action::Created`]; `ObjectRemoved:*` and
//!   `LifecycleExpiration:*` (`Delete`, `DeleteMarkerCreated`: an upload a
//!   lifecycle rule expired, which EventBridge reports as `Object Deleted`) are
//!   [`Action::Removed`]; anything else (restores, tagging, lifecycle
//!   transitions) is [`Action::Other`].
//! - **`eventSource`** is `aws:s3` from AWS, moto and LocalStack, `minio:s3` or
//!   `ceph:s3` elsewhere: any `*:s3` is accepted, an absent one too. A record
//!   from another service is an error.
//! - **`eventVersion`**, when present, must be `2.x`.
//! - **`size` and `eTag`** are absent on deletes; `eTag` should come without
//!   quotes, and quotes are stripped if it does not.
//!
//! # SNS envelopes
//!
//! `{"Type":"Notification","TopicArn":..,"Message":"<JSON as a string>"}`: the
//! `Message` string is parsed again and may hold an S3 event notification, an
//! EventBridge event or an `s3:TestEvent` (not another envelope, nor a direct
//! job). Its requests get [`Origin::Sns`]. Any `Type` other than
//! `Notification` (a `SubscriptionConfirmation`, say) is an error: confirming
//! subscriptions is not the worker's job. With raw message delivery on, SNS
//! sends the inner message bare, and it parses as its own shape.
//!
//! # EventBridge events
//!
//! `{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{..},"object":{..}}}`.
//! Field names are kebab-case (`version-id`), and keys are **not** encoded:
//! they are taken literally. `Object Created` is [`Action::Created`],
//! `Object Deleted` is [`Action::Removed`], any other detail type from `aws.s3`
//! is [`Action::Other`]; the detail type is the request's `event_name`. moto
//! spells the object's `etag` as `eTag`; both are read. An event from another
//! source is an error.
//!
//! # Test events
//!
//! `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":..,"Bucket":..}`, sent
//! once when a bucket notification is configured. AWS adds `RequestId` and
//! `HostId`, moto does not; only `Event` is read. It becomes [`Message::Test`]:
//! acknowledge it and do nothing else.
//!
//! # Direct jobs
//!
//! `{"v":1,"bucket":"b","key":"uploads/u/42/me.jpg"}`, with optional
//! `job_id`, `preset` and `output_prefix` (into [`JobOptions`]) and optional
//! `size`, `etag` and `version_id`. Keys are literal. A `v` other than 1 is
//! [`ParseError::UnsupportedVersion`], checked before any other field, so a
//! future version may change them freely. Unknown fields are ignored; empty
//! strings count as absent. The request is [`Action::Created`] with
//! `event_name` `"Job"` and [`Origin::Direct`]. With `"action":"delete"` it is
//! [`Action::Removed`] with `event_name` `"Delete"` instead: delete the
//! object's renditions (`"action":"render"` is the default; anything else is
//! [`ParseError::UnknownAction`]).

mod direct;
mod eventbridge;
mod s3;
mod sns;
mod wire;

pub use s3::{compare_sequencers, decode_s3_key, encode_s3_key, s3_notification, s3_put_notification};

use serde_json::{Map, Value};

/// How many characters of an input string an error message quotes.
const PREVIEW_CHARS: usize = 80;
/// How many characters of a JSON parser's message an error keeps.
const DETAIL_CHARS: usize = 240;
/// How many top-level field names an unknown-shape hint lists.
const HINT_MAX_FIELDS: usize = 8;

/// What one SQS message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `s3:TestEvent` (sent when a bucket notification is configured): acknowledge, nothing else.
    Test,
    /// One or more object requests (an S3 notification may hold several records).
    Requests(Vec<Request>),
}

/// One object event or job, whatever shape it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What happened to the object.
    pub action: Action,
    /// The producer's name for the event, without any `s3:` prefix: e.g.
    /// `"ObjectCreated:Put"`, `"ObjectRemoved:Delete"`, `"Object Created"`
    /// (an EventBridge detail type), `"Job"` for direct jobs.
    pub event_name: String,
    /// Which shape the request arrived in.
    pub origin: Origin,
    /// The object, with its key decoded.
    pub object: ObjectRef,
    /// Job options; only direct jobs set them, other shapes leave the default.
    pub options: JobOptions,
}

impl Request {
    /// Whether the object was created (and so may need renditions).
    #[must_use]
    pub fn is_create(&self) -> bool {
        self.action == Action::Created
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Put, post, copy, completed multipart upload, or a direct job.
    Created,
    /// Deleted, or hidden behind a delete marker.
    Removed,
    /// Anything else: restores, tagging, ACLs, lifecycle transitions, ….
    Other,
}

/// Which shape a request arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An S3 event notification sent straight to the queue.
    S3,
    /// An S3 event notification or EventBridge event wrapped in an SNS envelope.
    Sns,
    /// An EventBridge event.
    EventBridge,
    /// A direct job message.
    Direct,
}

/// An S3 object, as the message names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key, decoded (never form-URL-encoded).
    pub key: String,
    /// Size in bytes, when the message gives it (deletes do not).
    pub size: Option<u64>,
    /// ETag without quotes, when the message gives it.
    pub etag: Option<String>,
    /// Version id, in versioned buckets.
    pub version_id: Option<String>,
    /// S3's event sequencer: a hex string that orders events on one key.
    pub sequencer: Option<String>,
}

/// Options a direct job may set; every other shape leaves them at their default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// The producer's id for the job, for correlating its results.
    pub job_id: Option<String>,
    /// Name of the rendition preset to apply instead of the default.
    pub preset: Option<String>,
    /// Where to write renditions instead of the default prefix.
    pub output_prefix: Option<String>,
}

/// Why a message body was not understood. The caller treats any of these as a
/// poison message; `Display` says what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is empty or only whitespace.
    #[error("message body is empty")]
    Empty,
    /// The body is not JSON.
    #[error("not valid JSON: {}", bounded(&.0.to_string()))]
    NotJson(serde_json::Error),
    /// JSON, but none of the accepted shapes; `hint` describes what it was.
    #[error("unrecognised message shape: {hint}")]
    UnknownShape {
        /// What the JSON looked like instead.
        hint: String,
    },
    /// A recognised shape with a field of the wrong JSON type.
    #[error("malformed {shape}: {}", bounded(&.detail.to_string()))]
    Malformed {
        /// The shape it was recognised as.
        shape: &'static str,
        /// What serde found wrong.
        detail: serde_json::Error,
    },
    /// A required field is absent, null or empty.
    #[error("required field `{0}` is missing or empty")]
    MissingField(&'static str),
    /// An S3 notification key that does not decode.
    #[error("object key {} cannot be decoded: {reason}", preview(.key))]
    BadKeyEncoding {
        /// The key as it came, still encoded.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A direct job whose `action` is neither `render` nor `delete`.
    #[error("unknown direct job action {} (use render or delete)", preview(.0))]
    UnknownAction(String),
    /// A direct job whose `v` is not 1.
    #[error("unsupported direct job version {0} (this worker reads version 1)")]
    UnsupportedVersion(u64),
    /// An S3 notification record whose `eventVersion` is not `2.x`.
    #[error("unsupported S3 event version {} (this worker reads 2.x)", preview(.0))]
    UnsupportedEventVersion(String),
    /// An S3 notification whose `Records` array is empty.
    #[error("S3 event notification has no records")]
    EmptyRecords,
    /// An S3 notification record from another service.
    #[error("record {index} has eventSource {}, not an S3 source", preview(.event_source))]
    ForeignRecord {
        /// Position of the record in `Records`, from 0.
        index: usize,
        /// The record's `eventSource`.
        event_source: String,
    },
    /// An EventBridge event whose `source` is not `aws.s3`.
    #[error("EventBridge event has source {}, not aws.s3", preview(.0))]
    ForeignEventSource(String),
    /// An SNS message that is not a `Notification`, e.g. a `SubscriptionConfirmation`.
    #[error("SNS message of Type {} is not a Notification", preview(.0))]
    NotSnsNotification(String),
    /// An SNS notification whose `Message` is not itself an accepted message.
    #[error("SNS notification's Message: {0}")]
    BadSnsMessage(Box<ParseError>),
}

/// Parses one SQS message body into what it asks for.
///
/// See the [module docs](self) for the accepted shapes.
///
/// # Errors
///
/// A [`ParseError`] for a body that is empty, not JSON, of no accepted shape,
/// or of an accepted shape with missing, mistyped or undecodable fields.
pub fn parse_message(body: &str) -> Result<Message, ParseError> {
    let value = parse_json(body)?;
    parse_value(&value, Layer::Body)
}

// ---------------------------------------------------------------------------
// Telling shapes apart

/// Where a JSON value was found: the SQS body itself, or an SNS `Message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Body,
    SnsMessage,
}

impl Layer {
    /// The origin of requests found here, given the shape's own origin.
    fn origin(self, shape_origin: Origin) -> Origin {
        match self {
            Self::Body => shape_origin,
            Self::SnsMessage => Origin::Sns,
        }
    }
}

/// The accepted shapes, as recognised by their top-level fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    S3Notification,
    Sns,
    EventBridge,
    TestEvent,
    DirectJob,
}

impl Shape {
    /// Recognises a shape by its top-level fields alone.
    fn of(object: &Map<String, Value>) -> Result<Self, ParseError> {
        let has = |field: &str| object.contains_key(field);
        if has("Records") {
            Ok(Self::S3Notification)
        } else if has("TopicArn") || (has("Type") && has("Message")) {
            Ok(Self::Sns)
        } else if has("detail-type") {
            Ok(Self::EventBridge)
        } else if has("Event") {
            Ok(Self::TestEvent)
        } else if has("v") {
            Ok(Self::DirectJob)
        } else {
            Err(ParseError::UnknownShape { hint: describe_object(object) })
        }
    }

    /// The shape's name, for error messages.
    fn name(self) -> &'static str {
        match self {
            Self::S3Notification => "an S3 event notification",
            Self::Sns => "an SNS envelope",
            Self::EventBridge => "an EventBridge event",
            Self::TestEvent => "an s3:TestEvent",
            Self::DirectJob => "a direct job",
        }
    }
}

/// Parses JSON text, telling an empty body from a malformed one.
fn parse_json(text: &str) -> Result<Value, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    serde_json::from_str(text).map_err(ParseError::NotJson)
}

/// Dispatches a parsed JSON value to the parser of its shape.
fn parse_value(value: &Value, layer: Layer) -> Result<Message, ParseError> {
    let object = value.as_object().ok_or_else(|| ParseError::UnknownShape { hint: describe_non_object(value) })?;
    match (Shape::of(object)?, layer) {
        (Shape::S3Notification, _) => s3::parse_s3_notification(value, layer.origin(Origin::S3)),
        (Shape::EventBridge, _) => eventbridge::parse_eventbridge(value, layer.origin(Origin::EventBridge)),
        (Shape::TestEvent, _) => s3::parse_test_event(value),
        (Shape::Sns, Layer::Body) => sns::parse_sns(value),
        (Shape::DirectJob, Layer::Body) => direct::parse_direct_job(value),
        (shape @ (Shape::Sns | Shape::DirectJob), Layer::SnsMessage) => Err(ParseError::UnknownShape {
            hint: format!("{} is not accepted inside an SNS notification", shape.name()),
        }),
    }
}

/// Describes a JSON value that is not an object, for [`ParseError::UnknownShape`].
fn describe_non_object(value: &Value) -> String {
    let what = match value {
        Value::Array(items) if items.is_empty() => "an empty JSON array",
        Value::Array(_) => "a JSON array",
        Value::String(_) => "a JSON string",
        Value::Number(_) => "a JSON number",
        Value::Bool(_) => "a JSON boolean",
        Value::Null => "JSON null",
        Value::Object(_) => "a JSON object",
    };
    format!("{what}, where a JSON object was expected")
}

/// Describes an object of no known shape, for [`ParseError::UnknownShape`].
fn describe_object(object: &Map<String, Value>) -> String {
    if object.is_empty() {
        return "an empty JSON object".to_owned();
    }
    if object.contains_key("bucket") && object.contains_key("key") {
        return "has `bucket` and `key` but no `v`; a direct job needs \"v\": 1".to_owned();
    }
    let mut fields: Vec<String> = object.keys().take(HINT_MAX_FIELDS).map(|k| preview(k)).collect();
    if object.len() > HINT_MAX_FIELDS {
        fields.push("…".to_owned());
    }
    format!(
        "an object with fields {}; expected `Records` (S3), `Type`+`Message` (SNS), \
         `detail-type` (EventBridge), `Event` (s3:TestEvent) or `v` (direct job)",
        fields.join(", ")
    )
}

/// Cuts a parser's message (which may quote a whole input string) to a bounded length.
fn bounded(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(DETAIL_CHARS).collect();
    if chars.next().is_some() { format!("{head}…") } else { head }
}

/// Quotes the start of an input string for an error message.
fn preview(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(PREVIEW_CHARS).collect();
    if chars.next().is_some() { format!("{head:?}…") } else { format!("{head:?}") }
}
