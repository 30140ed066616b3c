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

/// Identifies JPEG, PNG, WebP, GIF and HEIF (HEIC or AVIF, by the `ftyp` box's brands) from their signatures;
/// names whatever else it recognises in the error.
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
    if let Some(format) = heif_brand(bytes) {
        return Ok(format);
    }
    Err(SniffError::Unsupported(describe(bytes)))
}

/// HEIF by the brands of a leading `ftyp` box (ISO/IEC 14496-12 §4.3; brands from ISO/IEC 23008-12 Annex B
/// and the AVIF specification §9): AVIF when any brand is `avif` or `avis`, HEIC for the HEVC brands or a
/// generic HEIF brand (`mif1`, `msf1`, `mif2`, whose codec libheif then reads from the file), `None` for other
/// ISO media (MP4, MOV, 3GP).
fn heif_brand(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.get(4..8)? != b"ftyp" {
        return None;
    }
    // Major brand, minor version, then compatible brands up to the end of the box (size 0: the end of the file).
    let size = u32::from_be_bytes(bytes[0..4].try_into().ok()?) as usize;
    let end = if size == 0 { bytes.len() } else { size.min(bytes.len()) };
    let major = bytes.get(8..12)?;
    let compatible = bytes.get(16..end).unwrap_or_default().chunks_exact(4);
    let brands: Vec<&[u8]> = std::iter::once(major).chain(compatible).collect();
    let any = |names: &[&[u8; 4]]| brands.iter().any(|b| names.iter().any(|n| b == n));
    if any(&[b"avif", b"avis"]) {
        Some(ImageFormat::Avif)
    } else if any(&[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"mif2"]) {
        Some(ImageFormat::Heic)
    } else {
        None
    }
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
        "ISO media file (MP4, MOV or 3GP video)"
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

    /// An `ftyp` box of `size` (0: as long as the bytes) with these brands.
    fn ftyp(size: u32, major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let mut b = size.to_be_bytes().to_vec();
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0; 4]);
        compatible.iter().for_each(|c| b.extend_from_slice(*c));
        b
    }

    #[test]
    fn heif_by_brands() {
        let (heic, avif) = (Ok(ImageFormat::Heic), Ok(ImageFormat::Avif));
        let video = Err(SniffError::Unsupported("ISO media file (MP4, MOV or 3GP video)"));
        let full = |major, compatible: &[&[u8; 4]]| ftyp(16 + 4 * compatible.len() as u32, major, compatible);
        // iPhone: heic, mif1 + MiHE, miaf, MiHB, heic; libheif and Pillow write these too.
        assert_eq!(sniff(&full(b"heic", &[b"mif1", b"MiHE", b"miaf", b"MiHB", b"heic"])), heic);
        assert_eq!(sniff(&full(b"mif1", &[b"mif1", b"heic"])), heic);
        assert_eq!(sniff(&full(b"heix", &[])), heic);
        assert_eq!(sniff(&full(b"msf1", &[b"hevc"])), heic);
        assert_eq!(sniff(&full(b"mif1", &[b"mif1"])), heic);
        assert_eq!(sniff(&full(b"avif", &[b"mif1", b"miaf"])), avif);
        assert_eq!(sniff(&full(b"mif1", &[b"avif", b"miaf"])), avif);
        assert_eq!(sniff(&full(b"avis", &[b"msf1"])), avif);
        assert_eq!(sniff(&full(b"isom", &[b"iso2", b"mp41"])), video);
        assert_eq!(sniff(&full(b"qt  ", &[])), video);
        // A brand past the box's end is not the box's.
        assert_eq!(sniff(&[ftyp(16, b"isom", &[]), b"heic".to_vec()].concat()), video);
        assert_eq!(sniff(&ftyp(0, b"isom", &[b"mif1"])), heic);
        // Truncated: the major brand is enough, a partial brand is not one.
        assert_eq!(sniff(&ftyp(24, b"heic", &[])[..12]), heic);
        assert_eq!(sniff(&[ftyp(24, b"isom", &[]), b"av".to_vec()].concat()), video);
    }

    #[test]
    fn ftyp_prefixes_never_panic() {
        // Every prefix of an AVIF's ftyp, with each box size up to past its end: HEIF from the major brand on,
        // AVIF once the box holds the whole `avif` brand (bytes 20..24).
        let file = ftyp(28, b"mif1", &[b"miaf", b"avif", b"MA1B"]);
        for size in 0..40 {
            let mut f = file.clone();
            f[..4].copy_from_slice(&(size as u32).to_be_bytes());
            for len in 0..=f.len() {
                let end = if size == 0 { len } else { size.min(len) };
                let want = match len {
                    0 => Err(SniffError::Empty),
                    1..12 => Err(SniffError::Unsupported("unrecognised bytes")),
                    _ if end >= 24 => Ok(ImageFormat::Avif),
                    _ => Ok(ImageFormat::Heic),
                };
                assert_eq!(sniff(&f[..len]), want, "size {size}, {len} bytes");
            }
        }
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
            (b"\0\0\0\x18ftypisom", "ISO media file (MP4, MOV or 3GP video)"),
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
