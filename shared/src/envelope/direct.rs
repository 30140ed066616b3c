//! Direct job messages (see [Direct jobs](super#direct-jobs)).

use serde::Deserialize;
use serde_json::Value;

use super::wire::{clean_etag, from_value, non_empty, required};
use super::{Action, JobOptions, Message, ObjectRef, Origin, ParseError, Request};

/// The one direct job version this module reads.
const DIRECT_JOB_VERSION: u64 = 1;
/// The `event_name` given to direct jobs.
const DIRECT_JOB_EVENT_NAME: &str = "Job";
/// The `event_name` given to direct delete jobs.
const DIRECT_DELETE_EVENT_NAME: &str = "Delete";

/// Just the version, read before anything else.
#[derive(Debug, Deserialize)]
struct DirectJobVersionWire {
    v: u64,
}

/// A version 1 direct job; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DirectJobV1Wire {
    action: Option<String>,
    bucket: Option<String>,
    key: Option<String>,
    job_id: Option<String>,
    preset: Option<String>,
    output_prefix: Option<String>,
    size: Option<u64>,
    etag: Option<String>,
    version_id: Option<String>,
}

/// Parses a direct job, checking its version first.
pub(super) fn parse_direct_job(value: &Value) -> Result<Message, ParseError> {
    let DirectJobVersionWire { v } = from_value(value, "direct job")?;
    if v != DIRECT_JOB_VERSION {
        return Err(ParseError::UnsupportedVersion(v));
    }
    let job: DirectJobV1Wire = from_value(value, "direct job")?;
    let (action, event_name) = match non_empty(job.action).as_deref() {
        None | Some("render") => (Action::Created, DIRECT_JOB_EVENT_NAME),
        Some("delete") => (Action::Removed, DIRECT_DELETE_EVENT_NAME),
        Some(other) => return Err(ParseError::UnknownAction(other.to_owned())),
    };
    let object = ObjectRef {
        bucket: required(job.bucket, "bucket")?,
        key: required(job.key, "key")?,
        size: job.size,
        etag: clean_etag(job.etag),
        version_id: non_empty(job.version_id),
        sequencer: None,
    };
    let options = JobOptions {
        job_id: non_empty(job.job_id),
        preset: non_empty(job.preset),
        output_prefix: non_empty(job.output_prefix),
    };
    Ok(Message::Requests(vec![Request {
        action,
        event_name: event_name.to_owned(),
        origin: Origin::Direct,
        object,
        options,
    }]))
}
