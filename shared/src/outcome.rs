//! What a rendition job reports: the result of a success, and the kind and class of a failure.

use crate::ImageFormat;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The source image as it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub format: ImageFormat,
    /// Stored width and height, before orientation is applied.
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// EXIF orientation 1–8 (1 when absent).
    pub orientation: u8,
    /// Frames in the source: 1 for a still image. An animated GIF or WebP is rendered from its
    /// first frame, composited on its canvas; the others are counted, not decoded.
    #[serde(default = "one_frame")]
    pub frames: u32,
    /// Present, and true, when the source is animated (more than one frame).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub animated: bool,
}

fn one_frame() -> u32 {
    1
}

/// One encoded rendition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenditionInfo {
    pub name: String,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub content_type: String,
}

/// Time spent in each pipeline stage, in milliseconds. `decode` includes converting CMYK and gray
/// sources to sRGB; `orient` includes converting the renditions of wide-gamut RGB sources to sRGB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimings {
    pub sniff_ms: f64,
    pub decode_ms: f64,
    pub orient_ms: f64,
    pub resize_ms: f64,
    pub encode_ms: f64,
}

impl StageTimings {
    /// Sum of all stages.
    pub fn total_ms(&self) -> f64 {
        self.sniff_ms + self.decode_ms + self.orient_ms + self.resize_ms + self.encode_ms
    }

    /// `(stage name, milliseconds)` pairs, in pipeline order.
    pub fn stages(&self) -> [(&'static str, f64); 5] {
        [
            ("sniff", self.sniff_ms),
            ("decode", self.decode_ms),
            ("orient", self.orient_ms),
            ("resize", self.resize_ms),
            ("encode", self.encode_ms),
        ]
    }
}

/// A box in the upright source's pixels (EXIF orientation applied): what an `attention` or `face` crop
/// centred on, so that apps can crop again on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FocusBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// What a successful rendition job produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderResult {
    pub source: SourceInfo,
    pub renditions: Vec<RenditionInfo>,
    /// ThumbHash of the oriented image, base64 (standard alphabet, padded).
    pub placeholder: String,
    pub timings: StageTimings,
    /// What was wrong with the source but did not stop it (an ignored ICC profile), one sentence
    /// each; absent when nothing was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The region a non-centre crop centred on, when the preset has one and the image has a salient
    /// region (a flat or empty image has none: its crops are centred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<FocusBox>,
    /// How many faces the detector found, when the preset has a `face` crop (0 when it found none and
    /// the crop fell back to `attention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faces: Option<u32>,
}

/// Whether a failed job can ever succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// The input can never succeed: publish a failure event and drop the message.
    Reject,
    /// Worth trying again later (infrastructure trouble): keep the message.
    Retry,
    /// imgfleet's own bug, not the input's: publish a failure event (on the first delivery) and
    /// keep the message, so it reaches the dead-letter queue and can be redriven once fixed.
    Internal,
}

/// A failure, named for the people and programs that read events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not an image format imgfleet reads (by content, not by name).
    Unsupported,
    /// Over a configured limit: bytes, pixels or side length.
    TooLarge,
    /// Looks like a supported format but cannot be decoded (truncated, corrupt).
    Corrupt,
    /// The source object does not exist (deleted before it was processed).
    NotFound,
    /// The job names a preset the worker does not have.
    UnknownPreset,
    /// The queue message is not one imgfleet understands.
    InvalidMessage,
    /// Encoding a rendition failed.
    Encode,
    /// A failure inside imgfleet that no input should cause (a bug): the upload is not at fault.
    Internal,
    /// Object storage failed for a while (network, 5xx, throttling).
    Storage,
    /// Object storage refused the request for a reason no retry fixes (access denied, no such
    /// bucket, a refused KMS key, a bad argument): the deployment needs fixing. The message is
    /// kept, so once it is fixed the job succeeds on a later delivery or after the redrive.
    StorageConfig,
    /// Publishing the event failed (Redis unreachable).
    Events,
}

impl ErrorKind {
    /// Reject, retry, or internal. Storage and event failures are transient; everything about the
    /// input is not; imgfleet's own bugs are neither.
    pub const fn class(self) -> ErrorClass {
        match self {
            Self::Storage | Self::StorageConfig | Self::Events => ErrorClass::Retry,
            Self::Internal => ErrorClass::Internal,
            _ => ErrorClass::Reject,
        }
    }

    /// The `snake_case` name used in events, JSON output and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unsupported => "unsupported",
            Self::TooLarge => "too_large",
            Self::Corrupt => "corrupt",
            Self::NotFound => "not_found",
            Self::UnknownPreset => "unknown_preset",
            Self::InvalidMessage => "invalid_message",
            Self::Encode => "encode",
            Self::Internal => "internal",
            Self::Storage => "storage",
            Self::StorageConfig => "storage_config",
            Self::Events => "events",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failure as reported in events and `--json` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub kind: ErrorKind,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_names_and_classify() {
        for kind in
            [ErrorKind::Unsupported, ErrorKind::TooLarge, ErrorKind::Corrupt, ErrorKind::Storage, ErrorKind::Internal]
        {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        assert_eq!(ErrorKind::Corrupt.class(), ErrorClass::Reject);
        assert_eq!(ErrorKind::Storage.class(), ErrorClass::Retry);
        assert_eq!(ErrorKind::Events.class(), ErrorClass::Retry);
        assert_eq!(ErrorKind::Internal.class(), ErrorClass::Internal);
        assert_eq!(ErrorKind::Encode.class(), ErrorClass::Reject);
    }
}
