//! Encode: rendition pixels → JPEG or WebP bytes. Nothing from the source is written: no EXIF, GPS,
//! XMP, comments or ICC profile; the pixels are already sRGB.
//!
//! JPEG: jpeg-encoder (pure Rust, SIMD), baseline 4:2:0 with optimised Huffman tables. Alpha is
//! flattened onto the background. WebP: libwebp through the `webp` crate; alpha is kept.

use super::pixels::Pixels;
use imgfleet_shared::{ImageFormat, OutputSpec};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// Why encoding a rendition failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("JPEG encoding failed: {0}")]
    Jpeg(String),
    #[error("WebP encoding failed: {0}")]
    Webp(String),
    #[error("{0} output is not supported")]
    Unsupported(ImageFormat),
}

/// Encodes `pixels` as `spec` says (format, quality 1–100, WebP effort).
pub fn encode(pixels: &Pixels, spec: &OutputSpec, background: [u8; 3]) -> Result<Vec<u8>, EncodeError> {
    match spec.format {
        ImageFormat::Jpeg => encode_jpeg(pixels, spec.quality, background),
        ImageFormat::Webp => encode_webp(pixels, spec.quality, spec.effort.unwrap_or(OutputSpec::DEFAULT_WEBP_EFFORT)),
        ImageFormat::Png => Err(EncodeError::Unsupported(spec.format)),
    }
}

fn encode_jpeg(pixels: &Pixels, quality: u8, background: [u8; 3]) -> Result<Vec<u8>, EncodeError> {
    let err = |e: &dyn std::fmt::Display| EncodeError::Jpeg(e.to_string());
    let (w, h) =
        (u16::try_from(pixels.width).map_err(|e| err(&e))?, u16::try_from(pixels.height).map_err(|e| err(&e))?);
    let rgb = pixels.flatten(background);
    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut encoder = Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    encoder.set_optimized_huffman_tables(true);
    encoder.encode(&rgb, w, h, ColorType::Rgb).map_err(|e| err(&e))?;
    Ok(out)
}

fn encode_webp(pixels: &Pixels, quality: u8, effort: u8) -> Result<Vec<u8>, EncodeError> {
    let encoder = match pixels.channels {
        4 if !pixels.is_opaque() => webp::Encoder::from_rgba(&pixels.data, pixels.width, pixels.height),
        4 => {
            return encode_webp(
                &Pixels::new(pixels.width, pixels.height, 3, pixels.flatten([0, 0, 0]).into_owned()),
                quality,
                effort,
            );
        }
        _ => webp::Encoder::from_rgb(&pixels.data, pixels.width, pixels.height),
    };
    let mut config = webp::WebPConfig::new().map_err(|()| EncodeError::Webp("libwebp config".into()))?;
    config.quality = f32::from(quality.clamp(1, 100));
    config.method = i32::from(effort.min(6));
    let data = encoder.encode_advanced(&config).map_err(|e| EncodeError::Webp(format!("{e:?}")))?;
    Ok(data.to_vec())
}
