//! What every shape's parser shares: wire structs read out of JSON (a
//! mistyped field is [`ParseError::Malformed`]), the rules for string fields
//! (empty counts as absent, ETags lose their quotes), and the `bucket` object.

use serde::Deserialize;
use serde_json::Value;

use super::ParseError;

/// Deserializes a wire struct from a value recognised as `shape`.
pub(super) fn from_value<'a, T: Deserialize<'a>>(value: &'a Value, shape: &'static str) -> Result<T, ParseError> {
    T::deserialize(value).map_err(|detail| ParseError::Malformed { shape, detail })
}

/// A string the shape requires: absent, null and empty are all missing.
pub(super) fn required(value: Option<String>, field: &'static str) -> Result<String, ParseError> {
    non_empty(value).ok_or(ParseError::MissingField(field))
}

/// An optional string, with empty counting as absent.
pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

/// An ETag without the quotes HTTP puts around it.
pub(super) fn clean_etag(etag: Option<String>) -> Option<String> {
    non_empty(etag.map(|etag| etag.trim_matches('"').to_owned()))
}

/// `bucket` in both S3 notifications and EventBridge details.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct BucketWire {
    pub(super) name: Option<String>,
}
