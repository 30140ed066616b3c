//! Decode: bytes of a sniffed format → [`Decoded`] pixels plus the metadata later stages need
//! (ICC profile, EXIF orientation). Limits are checked from the header before the pixel buffer is
//! allocated.

mod frames;
#[cfg(feature = "heic")]
mod heif;

use super::exif::exif_orientation;
use super::geometry::{self, Ratio};
use super::pixels::{ColourModel, Decoded, Pixels, Raster, YccPlanes};
use super::shrink::BoxReducer;
use imgfleet_shared::{ImageFormat, Limits};
use std::io::Cursor;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::{JpegDecoder, RawImcuRowStatus};

/// Why a sniffed image cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{format} is {width}x{height}: over the limit of {limit}")]
    TooLarge { format: ImageFormat, width: u64, height: u64, limit: String },
    #[error("source is {bytes} bytes: over the limit of {limit} bytes")]
    TooManyBytes { bytes: u64, limit: u64 },
    #[error("corrupt {format}: {message}")]
    Corrupt { format: ImageFormat, message: String },
    #[error("unsupported {format}: {message}")]
    Unsupported { format: ImageFormat, message: String },
}

/// Width and height from the header only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
}

/// Decodes `bytes` (already sniffed as `format`) within `limits`, at full size.
pub fn decode(bytes: &[u8], format: ImageFormat, limits: &Limits) -> Result<Decoded, DecodeError> {
    decode_shrinking(bytes, format, limits, &|_, _, _| 1.0)
}

/// Like [`decode`], but a YCbCr JPEG is box-shrunk band by band as it is decoded, by the factors
/// [`shrink::shrink`](super::shrink::shrink) would use to keep `keep(width, height, orientation)` of its size: the same
/// pixels, without ever holding the full-size planes. Other images are decoded at full size.
pub fn decode_shrinking(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
    keep: &dyn Fn(u32, u32, u8) -> f64,
) -> Result<Decoded, DecodeError> {
    if bytes.len() as u64 > limits.max_source_bytes {
        return Err(DecodeError::TooManyBytes { bytes: bytes.len() as u64, limit: limits.max_source_bytes });
    }
    match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, limits, keep),
        ImageFormat::Png => decode_png(bytes, limits),
        ImageFormat::Webp => decode_webp(bytes, limits),
        ImageFormat::Gif => frames::decode_gif(bytes, limits),
        ImageFormat::Heic | ImageFormat::Avif => decode_heif(bytes, format, limits),
    }
}

/// Whether this build reads HEIC and AVIF (the `heic` feature).
pub const HEIF_SUPPORTED: bool = cfg!(feature = "heic");

#[cfg(feature = "heic")]
use heif::decode_heif;
/// libheif's global state, shared with the AVIF encoder.
#[cfg(feature = "heic")]
pub(crate) use heif::lib as libheif;

#[cfg(not(feature = "heic"))]
fn decode_heif(_: &[u8], format: ImageFormat, _: &Limits) -> Result<Decoded, DecodeError> {
    let message = "this build has no HEIF decoder (imgfleet's heic feature)".into();
    Err(DecodeError::Unsupported { format, message })
}

/// Refuses dimensions over the limits. Called with header values, before allocating pixels.
pub fn check_limits(format: ImageFormat, width: u64, height: u64, limits: &Limits) -> Result<(), DecodeError> {
    let too_large = |limit: String| DecodeError::TooLarge { format, width, height, limit };
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt { format, message: format!("header says {width}x{height}") });
    }
    // The geometry is exact up to its own maximum side, whatever the configured limit.
    let max_side = u64::from(limits.max_side.min(geometry::MAX_SIDE));
    if width > max_side || height > max_side {
        return Err(too_large(format!("{max_side} pixels per side")));
    }
    if width * height > limits.max_source_pixels {
        return Err(too_large(format!("{} pixels", limits.max_source_pixels)));
    }
    Ok(())
}

/// The SOFn marker of a progressive, Huffman-coded JPEG.
const SOF_PROGRESSIVE: u8 = 0xC2;

/// A JPEG's frame header: its SOFn marker, its sample precision in bits, and whether a component is
/// sampled 3 times horizontally or vertically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    sof: u8,
    precision: Option<u8>,
    sampled_by_three: bool,
}

/// The frame header of a JPEG, found by walking the segments before the first scan.
fn jpeg_frame(bytes: &[u8]) -> Option<Frame> {
    let is_sof = |m: u8| matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC);
    let (sof, payload) = segments(bytes).find(|(marker, _)| is_sof(*marker))?;
    let p = &bytes[payload];
    // precision, height, width, component count, then (id, H << 4 | V, table) per component.
    let components = p.get(6..).unwrap_or_default().chunks_exact(3).take(p.get(5).map_or(0, |&n| usize::from(n)));
    let sampled_by_three = components.clone().any(|c| c[1] >> 4 == 3 || c[1] & 0x0F == 3);
    Some(Frame { sof, precision: p.first().copied(), sampled_by_three })
}

/// What is wrong with a frame the decoder does not read: it reads 8-bit baseline, extended and
/// progressive Huffman-coded JPEGs whose sampling factors are 1, 2 or 4. A valid file of another
/// kind is unsupported, not corrupt.
fn unsupported_jpeg_frame(frame: Frame) -> Option<String> {
    match (frame.sof, frame.precision) {
        (0xC3, _) => Some("lossless JPEG (SOF3) is not supported".into()),
        (0xC5..=0xC7, _) => Some("hierarchical JPEG (SOF5-7) is not supported".into()),
        (0xC9..=0xCF, _) => Some("arithmetic-coded JPEG (SOF9-15) is not supported".into()),
        (0xC1 | 0xC2, Some(12)) => Some("12-bit JPEG is not supported (8-bit samples only)".into()),
        _ if frame.sampled_by_three => Some("a sampling factor of 3 is not supported (1, 2 or 4 only)".into()),
        _ => None,
    }
}

/// A decoder's error as the one-line message a rejection carries (zune-jpeg ends some in a newline).
fn message(e: &dyn std::fmt::Display) -> String {
    e.to_string().trim_end().to_owned()
}

/// A zune-jpeg error as a rejection of corrupt data.
fn corrupt(e: zune_jpeg::errors::DecodeErrors) -> DecodeError {
    DecodeError::Corrupt { format: ImageFormat::Jpeg, message: message(&e) }
}

fn decode_jpeg(bytes: &[u8], limits: &Limits, keep: &dyn Fn(u32, u32, u8) -> f64) -> Result<Decoded, DecodeError> {
    // ICC chunks that do not fit together are ignored, as libjpeg's `jpeg_read_icc_profile` does:
    // the pixels are decoded from a copy without them, as sRGB.
    if let Err(problem) = check_icc_chunks(bytes) {
        let mut decoded = decode_jpeg_checked(&without_icc_chunks(bytes), limits, keep)?;
        decoded.warnings.push(format!("ICC profile ignored ({problem}): the image is taken as sRGB"));
        return Ok(decoded);
    }
    decode_jpeg_checked(bytes, limits, keep)
}

/// An APP2 segment's ICC chunk, when it is one: its sequence number, the chunk count, its data.
fn icc_chunk(segment: &[u8]) -> Option<(u8, u8, &[u8])> {
    let rest = segment.strip_prefix(b"ICC_PROFILE\0")?;
    match rest {
        [seq, count, data @ ..] => Some((*seq, *count, data)),
        _ => None,
    }
}

/// The segments before the first scan, as (marker, range of the payload in `bytes`).
fn segments(bytes: &[u8]) -> impl Iterator<Item = (u8, std::ops::Range<usize>)> + '_ {
    let mut i = 2;
    std::iter::from_fn(move || {
        while i + 4 <= bytes.len() && bytes[i] == 0xFF {
            let marker = bytes[i + 1];
            if marker == 0xFF {
                i += 1;
                continue;
            }
            if matches!(marker, 0xDA | 0xD9) {
                return None;
            }
            let length = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
            let segment = (marker, i + 4..(i + 2 + length).min(bytes.len()).max(i + 4));
            i += 2 + length;
            return Some(segment);
        }
        None
    })
}

/// Whether the ICC chunks of a JPEG fit together as libjpeg requires: one count for all, every
/// sequence number from 1 to it exactly once. No chunks at all is fine.
fn check_icc_chunks(bytes: &[u8]) -> Result<(), String> {
    let mut count = None;
    let mut seen = Vec::new();
    for (_, range) in segments(bytes).filter(|(m, _)| *m == 0xE2) {
        let Some((seq, n, _)) = icc_chunk(&bytes[range]) else { continue };
        if n == 0 || seq == 0 || seq > n {
            return Err(format!("chunk {seq} of {n}"));
        }
        if *count.get_or_insert(n) != n {
            return Err(format!("chunks disagree on their count: {} and {n}", count.unwrap_or(n)));
        }
        if seen.contains(&seq) {
            return Err(format!("chunk {seq} appears twice"));
        }
        seen.push(seq);
    }
    match count {
        Some(n) if seen.len() != usize::from(n) => Err(format!("{} of {n} chunks present", seen.len())),
        _ => Ok(()),
    }
}

/// The JPEG without its ICC chunks (everything else byte for byte).
fn without_icc_chunks(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut from = 0;
    for (marker, range) in segments(bytes) {
        if marker == 0xE2 && icc_chunk(&bytes[range.clone()]).is_some() {
            out.extend_from_slice(&bytes[from..range.start - 4]);
            from = range.end;
        }
    }
    out.extend_from_slice(&bytes[from..]);
    out
}

fn decode_jpeg_checked(
    bytes: &[u8],
    limits: &Limits,
    keep: &dyn Fn(u32, u32, u8) -> f64,
) -> Result<Decoded, DecodeError> {
    // zune's own side limit stays wide so that our check below reports "too large" rather than "corrupt".
    let options = DecoderOptions::default()
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .set_strict_mode(true);
    let frame = jpeg_frame(bytes);
    if let Some(kind) = frame.and_then(unsupported_jpeg_frame) {
        return Err(DecodeError::Unsupported { format: ImageFormat::Jpeg, message: kind });
    }
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(corrupt)?;
    let info = decoder
        .info()
        .ok_or_else(|| DecodeError::Corrupt { format: ImageFormat::Jpeg, message: "no frame header".into() })?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_limits(ImageFormat::Jpeg, width.into(), height.into(), limits)?;

    let icc = decoder.icc_profile();
    let orientation = decoder.exif().map_or(1, |e| exif_orientation(e));
    let input = decoder.input_colorspace().unwrap_or(ColorSpace::YCbCr);
    let cmyk_profile = icc.as_deref().is_some_and(|p| icc_colour_space(p) == Some(*b"CMYK"));
    // A progressive JPEG holds all its coefficients until the last scan whatever the output, and
    // zune's plane API copies them at every scan (to resume a cut-short read): its RGB decode is faster.
    if input == ColorSpace::YCbCr
        && frame.map(|f| f.sof) != Some(SOF_PROGRESSIVE)
        && let Some((planes, shrunk_by)) = ycc_planes(&mut decoder, width, height, keep(width, height, orientation))?
    {
        let raster = Raster::Ycc(planes);
        return Ok(Decoded {
            raster,
            width,
            height,
            shrunk_by,
            model: ColourModel::Rgb,
            icc,
            orientation,
            warnings: Vec::new(),
            frames: 1,
        });
    }
    let (out, model) = match input {
        // Adobe YCCK is CMYK stored through the YCbCr transform: back to (Adobe-inverted) CMYK for the profile.
        ColorSpace::CMYK | ColorSpace::YCCK if cmyk_profile => (ColorSpace::CMYK, ColourModel::Cmyk),
        ColorSpace::Luma => (ColorSpace::Luma, ColourModel::Gray),
        _ => (ColorSpace::RGB, ColourModel::Rgb),
    };
    decoder.set_options(options.jpeg_set_out_colorspace(out));
    let data = decoder.decode().map_err(corrupt)?;
    let channels = out.num_components() as u8;
    // A CMYK/YCCK image without a usable CMYK profile was converted by zune's naive formula: its ICC no longer applies.
    let icc =
        if matches!(input, ColorSpace::CMYK | ColorSpace::YCCK) && model != ColourModel::Cmyk { None } else { icc };
    Ok(Decoded::whole(Pixels::new(width, height, channels, data), model, icc, orientation))
}

/// Decodes a 3-component YCbCr JPEG whose luma is at full resolution into its raw planes, box-shrunk
/// as [`shrink::shrink`](super::shrink::shrink) would for `keep`, and the factor luma was shrunk by; `None` for layouts
/// this does not cover (the caller then decodes to RGB).
fn ycc_planes(
    decoder: &mut JpegDecoder<ZCursor<&[u8]>>,
    width: u32,
    height: u32,
    keep: f64,
) -> Result<Option<(YccPlanes, u32)>, DecodeError> {
    let mut raw = decoder.raw_output();
    let (Some(layout), Some(3)) = (raw.layout(), raw.num_components()) else { return Ok(None) };
    let layout = &layout[..3];
    let Some(chroma_scale) = planar_chroma_scale(layout, width, height) else { return Ok(None) };
    let strides: Vec<usize> = layout.iter().map(|p| p.width).collect();
    let (k, k_chroma) = geometry::shrink_factors(keep, chroma_scale);
    if k == 1 {
        let mut buffers: Vec<Vec<u8>> = layout.iter().map(|p| vec![0u8; p.width * p.height]).collect();
        {
            let mut planes: Vec<&mut [u8]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
            raw.decode_into_planes_strided(&mut planes, &strides).map_err(corrupt)?;
        }
        let mut it = buffers.into_iter();
        let mut plane = |info: &zune_jpeg::PlaneInfo| {
            Pixels::new(info.width as u32, info.height as u32, 1, it.next().unwrap_or_default())
        };
        let (y, cb, cr) = (plane(&layout[0]), plane(&layout[1]), plane(&layout[2]));
        return Ok(Some((YccPlanes { y, cb, cr, chroma_scale, chroma_early: (false, false) }, 1)));
    }
    let [y, cb, cr] = shrunk_planes(&mut raw, layout, &strides, [k, k_chroma, k_chroma])?;
    if (y.height, cb.height) != (height.div_ceil(k), (layout[1].height as u32).div_ceil(k_chroma)) {
        return Err(DecodeError::Corrupt { format: ImageFormat::Jpeg, message: "image data ended early".into() });
    }
    let chroma_scale = geometry::shrunk_chroma_scale(chroma_scale, k, k_chroma);
    Ok(Some((YccPlanes { y, cb, cr, chroma_scale, chroma_early: (false, false) }, k)))
}

/// The chroma planes' share of luma per side, when the three planes are ones the planes path
/// takes: full-size luma, both chroma planes alike, and luma sampled at least as finely.
fn planar_chroma_scale(layout: &[zune_jpeg::PlaneInfo], width: u32, height: u32) -> Option<(Ratio, Ratio)> {
    let (y, c1, c2) = (&layout[0], &layout[1], &layout[2]);
    let luma_full = y.width == width as usize && y.height == height as usize;
    let chroma_alike = (c1.horizontal_sampling_factor, c1.vertical_sampling_factor)
        == (c2.horizontal_sampling_factor, c2.vertical_sampling_factor)
        && (c1.width, c1.height) == (c2.width, c2.height);
    let luma_max = y.horizontal_sampling_factor >= c1.horizontal_sampling_factor
        && y.vertical_sampling_factor >= c1.vertical_sampling_factor;
    (luma_full && chroma_alike && luma_max).then(|| {
        (
            Ratio::new(c1.horizontal_sampling_factor as u64, y.horizontal_sampling_factor as u64),
            Ratio::new(c1.vertical_sampling_factor as u64, y.vertical_sampling_factor as u64),
        )
    })
}

/// Decodes the planes one iMCU row (8 rows per vertical sampling factor) at a time, each folded
/// into its plane box-shrunk by its factor in `k`, so the full-size planes never exist.
fn shrunk_planes(
    raw: &mut zune_jpeg::RawDecodeSession<'_, ZCursor<&[u8]>>,
    layout: &[zune_jpeg::PlaneInfo],
    strides: &[usize],
    k: [u32; 3],
) -> Result<[Pixels; 3], DecodeError> {
    let reducer = |i: usize| BoxReducer::new(layout[i].width as u32, 1, k[i]);
    let mut reducers = [reducer(0), reducer(1), reducer(2)];
    let mut bands: Vec<Vec<u8>> = layout.iter().map(|p| vec![0u8; p.width * p.vertical_sampling_factor * 8]).collect();
    loop {
        let mut planes: Vec<&mut [u8]> = bands.iter_mut().map(Vec::as_mut_slice).collect();
        match raw.decode_next_imcu_row(&mut planes, strides).map_err(corrupt)? {
            RawImcuRowStatus::RowReady { rows_written } => {
                for ((reducer, band), (rows, stride)) in
                    reducers.iter_mut().zip(&bands).zip(rows_written.iter().zip(strides))
                {
                    reducer.push(&band[..rows * stride]);
                }
            }
            RawImcuRowStatus::Complete => break,
            _ => {
                return Err(DecodeError::Corrupt { format: ImageFormat::Jpeg, message: "truncated image data".into() });
            }
        }
    }
    Ok(reducers.map(BoxReducer::finish))
}

/// The data colour space signature of an ICC profile (bytes 16..20), e.g. `RGB `, `CMYK`, `GRAY`.
pub fn icc_colour_space(profile: &[u8]) -> Option<[u8; 4]> {
    profile.get(16..20).and_then(|s| s.try_into().ok())
}

fn decode_png(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let format = ImageFormat::Png;
    let corrupt = |e: png::DecodingError| match e {
        png::DecodingError::LimitsExceeded => {
            DecodeError::TooLarge { format, width: 0, height: 0, limit: "decoder memory limit".into() }
        }
        other => DecodeError::Corrupt { format, message: message(&other) },
    };
    // IHDR is always the first chunk: check its size before the decoder reads any further.
    if bytes.get(12..16) != Some(b"IHDR".as_slice()) {
        return Err(DecodeError::Corrupt { format, message: "first chunk is not IHDR".into() });
    }
    let be32 = |i: usize| bytes.get(i..i + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    check_limits(format, be32(16).into(), be32(20).into(), limits)?;
    // The decoder's own memory cap: the largest 8-bit RGBA frame the pixel limit allows, plus slack for metadata.
    let cap = usize::try_from(limits.max_source_pixels.saturating_mul(8)).unwrap_or(usize::MAX).saturating_add(1 << 20);
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: cap });
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (width, height, icc, orientation) = {
        let info = reader.info();
        let orientation = info.exif_metadata.as_deref().map_or(1, exif_orientation);
        (info.width, info.height, info.icc_profile.as_ref().map(|p| p.to_vec()), orientation)
    };
    check_limits(format, width.into(), height.into(), limits)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| DecodeError::Corrupt { format, message: "image too large for memory".into() })?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(corrupt)?;
    buf.truncate(frame.buffer_size());
    let (pixels, model) = match frame.color_type {
        png::ColorType::Grayscale => (Pixels::new(width, height, 1, buf), ColourModel::Gray),
        png::ColorType::Rgb => (Pixels::new(width, height, 3, buf), ColourModel::Rgb),
        png::ColorType::Rgba => (Pixels::new(width, height, 4, buf), ColourModel::Rgba),
        png::ColorType::GrayscaleAlpha => (Pixels::new(width, height, 2, buf), ColourModel::GrayAlpha),
        png::ColorType::Indexed => {
            return Err(DecodeError::Corrupt { format, message: "palette was not expanded".into() });
        }
    };
    Ok(Decoded::whole(pixels, model, icc, orientation))
}

fn decode_webp(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let format = ImageFormat::Webp;
    let features = webp::BitstreamFeatures::new(bytes)
        .ok_or_else(|| DecodeError::Corrupt { format, message: "invalid WebP header".into() })?;
    check_limits(format, features.width().into(), features.height().into(), limits)?;
    if features.has_animation() {
        return frames::decode_animated_webp(bytes, limits);
    }
    let image = webp::Decoder::new(bytes)
        .decode()
        .ok_or_else(|| DecodeError::Corrupt { format, message: "WebP data could not be decoded".into() })?;
    let (width, height) = (image.width(), image.height());
    let (channels, model) = if image.is_alpha() { (4, ColourModel::Rgba) } else { (3, ColourModel::Rgb) };
    let chunks = webp_chunks(bytes);
    let orientation = chunks.exif.map_or(1, exif_orientation);
    let pixels = Pixels::new(width, height, channels, image.to_vec());
    let icc = chunks.icc.map(<[u8]>::to_vec);
    Ok(Decoded::whole(pixels, model, icc, orientation))
}

#[derive(Default)]
struct WebpChunks<'a> {
    icc: Option<&'a [u8]>,
    exif: Option<&'a [u8]>,
}

/// Finds the `ICCP` and `EXIF` chunks of an extended (VP8X) WebP file.
fn webp_chunks(bytes: &[u8]) -> WebpChunks<'_> {
    let mut found = WebpChunks::default();
    let mut pos = 12;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else { break };
        match &header[0..4] {
            b"ICCP" => found.icc = Some(body),
            b"EXIF" => found.exif = Some(body.strip_prefix(b"Exif\0\0").unwrap_or(body)),
            _ => {}
        }
        pos += 8 + len + (len & 1);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_kind_is_read_or_refused_as_unsupported() {
        for sof in (0xC0..=0xCF).filter(|m| !matches!(m, 0xC4 | 0xC8 | 0xCC)) {
            for precision in [None, Some(8), Some(12), Some(16)] {
                let refused = unsupported_jpeg_frame(Frame { sof, precision, sampled_by_three: false });
                let read = match sof {
                    0xC0 => true, // baseline is 8-bit by definition: another precision is the decoder's to refuse
                    0xC1 | 0xC2 => precision != Some(12),
                    _ => false,
                };
                assert_eq!(refused.is_none(), read, "SOF {sof:#x} precision {precision:?}: {refused:?}");
            }
        }
        let frame = |bytes: &[u8]| jpeg_frame(bytes);
        // SOI, an APP0 of 4 bytes, SOF1 with precision 12.
        let header = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC1, 0x00, 0x0B, 0x0C];
        let sof1 = |precision| Some(Frame { sof: 0xC1, precision, sampled_by_three: false });
        assert_eq!(frame(&header), sof1(Some(12)));
        assert_eq!(frame(&header[..12]), sof1(None), "cut before the precision");
        assert_eq!(frame(&header[..8]), None, "no frame header");
    }

    #[test]
    fn a_sampling_factor_of_three_is_unsupported_and_every_other_factor_is_read() {
        // SOF0, 8-bit, 16x16, three components; every H and V factor of 1..=4 on every component, and a frame
        // cut inside its components (the components it has are judged, the missing ones are not).
        for component in 0..3 {
            for factor in 0..=0xFFu8 {
                let mut sof = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 8, 0, 16, 0, 16, 3];
                for c in 0..3u8 {
                    sof.extend([c + 1, if c == component { factor } else { 0x11 }, 0]);
                }
                let three = factor >> 4 == 3 || factor & 0x0F == 3;
                let whole = 12 + 3 * usize::from(component) + 3;
                for cut in [sof.len(), whole, whole - 1, whole - 2] {
                    let f = jpeg_frame(&sof[..cut]).unwrap();
                    let judged = cut >= whole;
                    assert_eq!(f.sampled_by_three, three && judged, "component {component} {factor:#04x} cut {cut}");
                    assert_eq!(unsupported_jpeg_frame(f).is_some(), three && judged, "{factor:#04x}");
                }
            }
        }
    }

    #[test]
    fn icc_chunks_are_removed_and_nothing_else() {
        let segment = |marker: u8, payload: &[u8]| {
            [&[0xFF, marker][..], &((payload.len() + 2) as u16).to_be_bytes(), payload].concat()
        };
        let icc = segment(0xE2, b"ICC_PROFILE\0\x01\x01profile bytes");
        let other_app2 = segment(0xE2, b"MPF\0not a profile");
        let short = segment(0xE2, b"ICC_PROFILE\0\x01");
        let head = [&[0xFF, 0xD8][..], &segment(0xE0, b"JFIF\0"), &icc, &other_app2, &short].concat();
        let scan = [0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xD9];
        let file = [&head[..], &scan].concat();
        assert_eq!(check_icc_chunks(&file), Ok(()));
        let want = [&[0xFF, 0xD8][..], &segment(0xE0, b"JFIF\0"), &other_app2, &short, &scan].concat();
        assert_eq!(without_icc_chunks(&file), want);
        // An ICC-looking segment after the first scan is image data, not a chunk.
        let late = [&file[..], &icc].concat();
        assert_eq!(without_icc_chunks(&late), [&want[..], &icc].concat());
    }
}
