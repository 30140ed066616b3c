//! Sniff: bytes → [`ImageFormat`], by magic bytes only. Names and `Content-Type` are never trusted.

use imgfleet_shared::ImageFormat;

/// Why the bytes are not an image imgfleet reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SniffError {
    #[error("empty input")]
    Empty,
    #[error("unsupported format: {0}")]
    Unsupported(&'static str),
}

/// Identifies JPEG, PNG, WebP and GIF from their signatures; names whatever else it recognises in the error.
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, SniffError> {
    if bytes.is_empty() {
        return Err(SniffError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(ImageFormat::Webp);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Ok(ImageFormat::Gif);
    }
    Err(SniffError::Unsupported(describe(bytes)))
}

/// A name for bytes that are not a supported image, for the error message.
fn describe(bytes: &[u8]) -> &'static str {
    let head = &bytes[..bytes.len().min(512)];
    let text = trim_text_start(head);
    let starts = |sig: &[u8]| bytes.starts_with(sig);
    let lower: Vec<u8> = text.iter().take(64).map(u8::to_ascii_lowercase).collect();
    if starts(b"%PDF") {
        "PDF"
    } else if starts(b"BM") {
        "BMP"
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        "TIFF"
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        "HEIF/AVIF or another ISO media file"
    } else if starts(&[0xFF, 0x0A]) || starts(b"\0\0\0\x0cJXL ") {
        "JPEG XL"
    } else if starts(b"\x1f\x8b") || starts(b"PK\x03\x04") {
        "compressed archive"
    } else if lower.starts_with(b"<svg") || contains(&lower, b"<svg") {
        "SVG"
    } else if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") {
        "HTML"
    } else if lower.starts_with(b"<?xml") || lower.starts_with(b"<") {
        "XML"
    } else if head.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        "text"
    } else {
        "unrecognised bytes"
    }
}

fn trim_text_start(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    &b[start..]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_supported_signatures() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Ok(ImageFormat::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0"), Ok(ImageFormat::Png));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Ok(ImageFormat::Webp));
        assert_eq!(sniff(b"GIF89a\x01\0"), Ok(ImageFormat::Gif));
        assert_eq!(sniff(b"GIF87a\x01\0"), Ok(ImageFormat::Gif));
    }

    #[test]
    fn names_what_it_refuses() {
        let cases: [(&[u8], &str); 10] = [
            (b"GIF88a....", "text"),
            (b"%PDF-1.7", "PDF"),
            (b"  <svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
            (b"<?xml version='1.0'?><svg/>", "SVG"),
            (b"<?xml version='1.0'?><a/>", "XML"),
            (b"<!DOCTYPE html><script>alert(1)</script>", "HTML"),
            (b"\0\0\0\x18ftypheic", "HEIF/AVIF or another ISO media file"),
            (b"RIFF\0\0\0\0WAVEfmt ", "unrecognised bytes"),
            (b"hello world", "text"),
            (&[0xFF, 0xD8], "unrecognised bytes"),
        ];
        for (bytes, name) in cases {
            assert_eq!(sniff(bytes), Err(SniffError::Unsupported(name)), "{bytes:?}");
        }
        assert_eq!(sniff(b""), Err(SniffError::Empty));
    }
}
