//! The image formats imgfleet reads (JPEG, PNG, WebP, GIF; HEIC and AVIF in builds with the worker's `heic`
//! feature) and writes (JPEG, WebP; AVIF in builds with the `heic` feature).

use serde::{Deserialize, Serialize};
use std::fmt;

/// An image format, named the way it appears in results, events and file extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    /// Read only: the first frame of an animated one.
    Gif,
    /// Read only: HEIF (ISO/IEC 23008-12) with HEVC-coded images, as iPhones save photos, or a HEIF file of
    /// another codec than AV1.
    Heic,
    /// HEIF with AV1-coded images (AVIF): read, and written in builds with the worker's `heic` feature.
    Avif,
}

impl ImageFormat {
    /// The MIME type written as `Content-Type`.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Heic => "image/heic",
            Self::Avif => "image/avif",
        }
    }

    /// The file extension used in rendition keys and file names.
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Heic => "heic",
            Self::Avif => "avif",
        }
    }

    /// The lower-case name (`jpeg`, `png`, `webp`, `gif`, `heic`, `avif`), as used in metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Heic => "heic",
            Self::Avif => "avif",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
