//! Encode: rendition pixels → JPEG or WebP bytes. Nothing from the source is written: no EXIF, GPS,
//! XMP, comments or ICC profile; the pixels are already sRGB.
//!
//! JPEG: libjpeg-turbo's encoder (as built by the `mozjpeg` crate, in its libjpeg-turbo-compatible
//! "fastest" profile: standard quantisation tables, no trellis), baseline 4:2:0 with optimised
//! Huffman tables. Alpha is flattened onto the background. WebP: libwebp through the `webp` crate;
//! alpha is kept.

use super::pixels::Pixels;
use imgfleet_shared::{ImageFormat, OutputSpec};

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
    if pixels.channels < 3 {
        return Err(EncodeError::Jpeg(format!("expected RGB or RGBA pixels, got {} channel(s)", pixels.channels)));
    }
    let rgb = pixels.flatten(background);
    let (width, height) = (pixels.width as usize, pixels.height as usize);
    // libjpeg reports errors by unwinding out of its error handler (the `mozjpeg` crate's design).
    let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        c.set_fastest_defaults();
        c.set_size(width, height);
        c.set_quality(f32::from(quality.clamp(1, 100)));
        c.set_chroma_sampling_pixel_sizes((2, 2), (2, 2));
        c.set_optimize_coding(true);
        let mut started = c.start_compress(Vec::with_capacity(rgb.len() / 8))?;
        started.write_scanlines(&rgb)?;
        started.finish()
    }));
    match encoded {
        Ok(result) => result.map_err(|e| EncodeError::Jpeg(e.to_string())),
        Err(panic) => {
            Err(EncodeError::Jpeg(super::panic_message(panic.as_ref()).unwrap_or_else(|| "libjpeg error".into())))
        }
    }
}

fn encode_webp(pixels: &Pixels, quality: u8, effort: u8) -> Result<Vec<u8>, EncodeError> {
    if pixels.channels == 4 && pixels.is_opaque() {
        let rgb = Pixels::new(pixels.width, pixels.height, 3, pixels.flatten([0, 0, 0]).into_owned());
        return encode_webp(&rgb, quality, effort);
    }
    let mut config = webp::WebPConfig::new().map_err(|()| EncodeError::Webp("libwebp config".into()))?;
    config.quality = f32::from(quality.clamp(1, 100));
    config.method = i32::from(effort.min(6));
    webp_lossy(pixels, &config)
}

/// Encodes RGB or RGBA `pixels` with libwebp (the one the `webp` crate bundles), imported straight
/// to YUV: the `webp` crate's encoder first copies every pixel into an ARGB picture and converts
/// that to YUV, for the same output.
#[allow(unsafe_code)]
fn webp_lossy(pixels: &Pixels, config: &webp::WebPConfig) -> Result<Vec<u8>, EncodeError> {
    use libwebp_sys as sys;
    let channels = usize::from(pixels.channels);
    let too_large = || EncodeError::Webp(format!("{}x{} is too large", pixels.width, pixels.height));
    let width = i32::try_from(pixels.width).map_err(|_| too_large())?;
    let height = i32::try_from(pixels.height).map_err(|_| too_large())?;
    let stride = i32::try_from(pixels.width as usize * channels).map_err(|_| too_large())?;
    if !matches!(channels, 3 | 4) || pixels.data.len() < pixels.width as usize * pixels.height as usize * channels {
        return Err(EncodeError::Webp(format!("{channels}-channel {}x{} pixels", pixels.width, pixels.height)));
    }
    let mut picture = sys::WebPPicture::new().map_err(|()| EncodeError::Webp("libwebp picture".into()))?;
    picture.use_argb = 0;
    picture.width = width;
    picture.height = height;
    let mut writer = std::mem::MaybeUninit::<sys::WebPMemoryWriter>::uninit();
    // SAFETY: `picture` was initialised by libwebp and owns nothing yet; the import reads `height`
    // rows of `stride` bytes from `pixels.data`, whose length is checked above, and allocates the
    // YUV(A) planes that `WebPPictureFree` releases. The writer is initialised before libwebp
    // writes into it through `custom_ptr`, which points at it for the whole `WebPEncode` call; its
    // buffer is copied out before `WebPMemoryWriterClear` frees it. Nothing escapes this block.
    unsafe {
        sys::WebPMemoryWriterInit(writer.as_mut_ptr());
        let imported = if channels == 4 {
            sys::WebPPictureImportRGBA(&mut picture, pixels.data.as_ptr(), stride)
        } else {
            sys::WebPPictureImportRGB(&mut picture, pixels.data.as_ptr(), stride)
        };
        picture.writer = Some(sys::WebPMemoryWrite);
        picture.custom_ptr = writer.as_mut_ptr().cast();
        let encoded = imported != 0 && sys::WebPEncode(config, &mut picture) != 0;
        let writer = writer.assume_init_mut();
        let out = if encoded {
            Ok(std::slice::from_raw_parts(writer.mem, writer.size).to_vec())
        } else {
            Err(EncodeError::Webp(format!("libwebp: {:?}", picture.error_code)))
        };
        sys::WebPPictureFree(&mut picture);
        sys::WebPMemoryWriterClear(writer);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Pixels {
        let data = (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8]))
            .collect();
        Pixels::new(w, h, 3, data)
    }

    /// The JPEG segments before the scan: (marker, payload).
    fn segments(jpeg: &[u8]) -> Vec<(u8, &[u8])> {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "starts with SOI");
        let (mut i, mut out) = (2, Vec::new());
        while jpeg[i] == 0xFF && jpeg[i + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            out.push((jpeg[i + 1], &jpeg[i + 4..i + 2 + len]));
            i += 2 + len;
        }
        out
    }

    #[test]
    fn jpeg_is_baseline_420_with_optimised_huffman_tables_and_nothing_else() {
        let src = gradient(64, 48);
        let jpeg =
            encode(&src, &OutputSpec { format: ImageFormat::Jpeg, quality: 85, effort: None }, [255; 3]).unwrap();
        let segs = segments(&jpeg);
        let markers: Vec<u8> = segs.iter().map(|s| s.0).collect();
        assert!(
            markers.iter().all(|m| matches!(m, 0xE0 | 0xDB | 0xC0 | 0xC4)),
            "only JFIF, DQT, SOF0, DHT: {markers:02X?}"
        );
        let sof = segs.iter().find(|s| s.0 == 0xC0).expect("baseline SOF0").1;
        assert_eq!((u16::from_be_bytes([sof[1], sof[2]]), u16::from_be_bytes([sof[3], sof[4]])), (48, 64));
        assert_eq!(sof[5], 3, "three components");
        assert_eq!([sof[7], sof[10], sof[13]], [0x22, 0x11, 0x11], "4:2:0");
        // The standard (Annex K) luma DC table codes 12 symbols; an optimised one codes only those used.
        let dht = segs.iter().find(|s| s.0 == 0xC4 && s.1[0] == 0x00).expect("luma DC table").1;
        let symbols: u32 = dht[1..17].iter().map(|&n| u32::from(n)).sum();
        assert!(symbols < 12, "optimised Huffman table, {symbols} DC symbols");

        let mut d = zune_jpeg::JpegDecoder::new(zune_core::bytestream::ZCursor::new(&jpeg));
        let back = d.decode().unwrap();
        assert_eq!(back.len(), src.data.len());
        let mse = back.iter().zip(&src.data).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>()
            / back.len() as f64;
        assert!(10.0 * (255.0f64 * 255.0 / mse).log10() > 30.0, "decodes back close to the input (mse {mse:.1})");
    }

    #[test]
    fn jpeg_flattens_alpha_onto_the_background() {
        let clear = Pixels::new(16, 16, 4, vec![0; 16 * 16 * 4]);
        let jpeg =
            encode(&clear, &OutputSpec { format: ImageFormat::Jpeg, quality: 90, effort: None }, [255, 0, 0]).unwrap();
        let back = zune_jpeg::JpegDecoder::new(zune_core::bytestream::ZCursor::new(&jpeg)).decode().unwrap();
        assert!(back.chunks_exact(3).all(|p| p[0] > 240 && p[1] < 15 && p[2] < 15), "red background");
    }

    #[test]
    fn libjpeg_errors_are_typed_errors_not_panics() {
        // Wider than JPEG's 65500-pixel limit: libjpeg refuses it from inside its error handler.
        let wide = Pixels::new(70_000, 1, 3, vec![128; 70_000 * 3]);
        let err = encode(&wide, &OutputSpec { format: ImageFormat::Jpeg, quality: 85, effort: None }, [255; 3]);
        assert!(matches!(&err, Err(EncodeError::Jpeg(m)) if m.contains("65500")), "{err:?}");
        let gray = Pixels::new(4, 4, 1, vec![0; 16]);
        let err = encode(&gray, &OutputSpec { format: ImageFormat::Jpeg, quality: 85, effort: None }, [255; 3]);
        assert!(matches!(err, Err(EncodeError::Jpeg(_))), "{err:?}");
    }

    #[test]
    fn webp_is_what_the_webp_crate_makes_without_its_argb_copy() {
        let mut config = webp::WebPConfig::new().unwrap();
        config.quality = 80.0;
        config.method = 4;
        let src = gradient(123, 77);
        let ours = webp_lossy(&src, &config).unwrap();
        let theirs = webp::Encoder::from_rgb(&src.data, src.width, src.height).encode_advanced(&config).unwrap();
        assert_eq!(ours, &*theirs, "same bytes as the webp crate's encoder");

        // Alpha is kept: a half-transparent image comes back with its alpha channel.
        let rgba =
            Pixels::new(32, 8, 4, (0..32 * 8).flat_map(|i| [200, 40, 10, if i % 32 < 16 { 0 } else { 255 }]).collect());
        let out = webp_lossy(&rgba, &config).unwrap();
        let back = webp::Decoder::new(&out).decode().unwrap();
        assert!(back.is_alpha());
        assert_eq!((back.width(), back.height()), (32, 8));
        assert_eq!((back[3], back[4 * 31 + 3]), (0, 255), "transparent left, opaque right");

        // Input libwebp cannot take is a typed error.
        let gray = Pixels::new(4, 4, 1, vec![0; 16]);
        assert!(matches!(webp_lossy(&gray, &config), Err(EncodeError::Webp(_))));
        let huge = Pixels::new(20_000, 1, 3, vec![0; 60_000]);
        assert!(matches!(webp_lossy(&huge, &config), Err(EncodeError::Webp(m)) if m.contains("BAD_DIMENSION")));
    }
}
