//! Encode: rendition pixels → JPEG, WebP or AVIF bytes. Nothing from the source is written: no EXIF,
//! GPS, XMP, comments or ICC profile; the pixels are already sRGB.
//!
//! JPEG: libjpeg-turbo's encoder ([`libjpeg`]: standard quantisation tables, no trellis), baseline
//! 4:2:0 with optimised Huffman tables. Alpha is flattened onto the background. WebP: the libwebp
//! the `webp` crate bundles; alpha is kept. AVIF (builds with the `heic` feature): libaom through
//! libheif ([`super::avif`]); alpha is kept. A rendition made from a JPEG's YCbCr planes (luma plus
//! half-size chroma) goes into every encoder as planes, so none converts it from RGB nor averages its
//! chroma again.

use super::pixels::{Pixels, Raster};
use super::{libjpeg, libwebp};
use imgfleet_shared::{ImageFormat, OutputSpec};

/// Why encoding a rendition failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("JPEG encoding failed: {0}")]
    Jpeg(String),
    #[error("WebP encoding failed: {0}")]
    Webp(String),
    #[error("AVIF encoding failed: {0}")]
    Avif(String),
    #[error("{0} output is not supported")]
    Unsupported(ImageFormat),
}

/// Encodes a rendition as `spec` says (format, quality 1–100, effort): RGB(A) pixels, or
/// YCbCr planes with 4:2:0 chroma (other planes are converted to RGB first).
pub fn encode(image: &Raster, spec: &OutputSpec, background: [u8; 3]) -> Result<Vec<u8>, EncodeError> {
    let pixels = match image {
        Raster::Ycc(planes) if planes.is_420() => {
            return match spec.format {
                ImageFormat::Jpeg => {
                    libjpeg::encode_planes(planes, spec.quality, spec.progressive).map_err(EncodeError::Jpeg)
                }
                ImageFormat::Webp => {
                    libwebp::encode(libwebp::Input::Planes(planes), &webp_config(spec)?).map_err(EncodeError::Webp)
                }
                #[cfg(feature = "heic")]
                ImageFormat::Avif => encode_avif(super::avif::Input::Planes(planes), spec),
                #[cfg(not(feature = "heic"))]
                ImageFormat::Avif => Err(EncodeError::Unsupported(spec.format)),
                ImageFormat::Png | ImageFormat::Gif | ImageFormat::Heic => Err(EncodeError::Unsupported(spec.format)),
            };
        }
        Raster::Ycc(planes) => &planes.to_rgb(),
        Raster::Pixels(p) => p,
    };
    match spec.format {
        ImageFormat::Jpeg => encode_jpeg(pixels, spec, background),
        ImageFormat::Webp => encode_webp(pixels, &webp_config(spec)?),
        #[cfg(feature = "heic")]
        ImageFormat::Avif => encode_avif(super::avif::Input::Pixels(pixels), spec),
        #[cfg(not(feature = "heic"))]
        ImageFormat::Avif => Err(EncodeError::Unsupported(spec.format)),
        ImageFormat::Png | ImageFormat::Gif | ImageFormat::Heic => Err(EncodeError::Unsupported(spec.format)),
    }
}

/// Whether this build writes AVIF: built with the `heic` feature, against a libheif with an AV1 encoder.
pub fn avif_supported() -> bool {
    #[cfg(feature = "heic")]
    return super::avif::available();
    #[cfg(not(feature = "heic"))]
    false
}

/// Checks that this build can write every output the catalog's presets ask for, so a worker refuses a
/// preset file at start-up rather than failing each job.
pub fn check_catalog(catalog: &imgfleet_shared::PresetCatalog) -> Result<(), String> {
    if let Some(preset) = catalog
        .presets
        .iter()
        .find(|p| p.renditions.iter().flat_map(|r| &r.formats).any(|o| o.format == ImageFormat::Avif))
        && !avif_supported()
    {
        return Err(format!(
            "preset {:?} asks for avif output, which this build cannot write: build with the `heic` feature \
             against a libheif with libaom (scripts/heic-deps.sh installs it)",
            preset.name
        ));
    }
    Ok(())
}

#[cfg(feature = "heic")]
fn encode_avif(input: super::avif::Input<'_>, spec: &OutputSpec) -> Result<Vec<u8>, EncodeError> {
    let effort = spec.effort.unwrap_or(OutputSpec::DEFAULT_AVIF_EFFORT);
    super::avif::encode(input, spec.quality, effort).map_err(EncodeError::Avif)
}

fn encode_jpeg(pixels: &Pixels, spec: &OutputSpec, background: [u8; 3]) -> Result<Vec<u8>, EncodeError> {
    if pixels.channels < 3 {
        return Err(EncodeError::Jpeg(format!("expected RGB or RGBA pixels, got {} channel(s)", pixels.channels)));
    }
    libjpeg::encode_rgb(&pixels.flatten(background), pixels.width, pixels.height, spec.quality, spec.progressive)
        .map_err(EncodeError::Jpeg)
}

fn webp_config(spec: &OutputSpec) -> Result<webp::WebPConfig, EncodeError> {
    let mut config = webp::WebPConfig::new().map_err(|()| EncodeError::Webp("libwebp config".into()))?;
    config.quality = f32::from(spec.quality.clamp(1, 100));
    config.method = i32::from(spec.effort.unwrap_or(OutputSpec::DEFAULT_WEBP_EFFORT).min(6));
    Ok(config)
}

fn encode_webp(pixels: &Pixels, config: &webp::WebPConfig) -> Result<Vec<u8>, EncodeError> {
    if pixels.channels == 4 && pixels.is_opaque() {
        let rgb = Pixels::new(pixels.width, pixels.height, 3, pixels.flatten([0, 0, 0]).into_owned());
        return libwebp::encode(libwebp::Input::Pixels(&rgb), config).map_err(EncodeError::Webp);
    }
    libwebp::encode(libwebp::Input::Pixels(pixels), config).map_err(EncodeError::Webp)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pipeline::geometry::Ratio;
    use crate::pipeline::libwebp::{Input as WebpInput, LIMITED_CHROMA, LIMITED_LUMA};
    use crate::pipeline::pixels::YccPlanes;

    fn webp_lossy(input: WebpInput<'_>, config: &webp::WebPConfig) -> Result<Vec<u8>, EncodeError> {
        libwebp::encode(input, config).map_err(EncodeError::Webp)
    }

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
        let jpeg = encode(
            &src.clone().into(),
            &OutputSpec { format: ImageFormat::Jpeg, quality: 85, effort: None, progressive: false },
            [255; 3],
        )
        .unwrap();
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
        let jpeg = encode(
            &clear.into(),
            &OutputSpec { format: ImageFormat::Jpeg, quality: 90, effort: None, progressive: false },
            [255, 0, 0],
        )
        .unwrap();
        let back = zune_jpeg::JpegDecoder::new(zune_core::bytestream::ZCursor::new(&jpeg)).decode().unwrap();
        assert!(back.chunks_exact(3).all(|p| p[0] > 240 && p[1] < 15 && p[2] < 15), "red background");
    }

    #[test]
    fn libjpeg_errors_are_typed_errors_not_panics() {
        // Wider than JPEG's 65500-pixel limit: libjpeg refuses it from inside its error handler.
        let wide = Pixels::new(70_000, 1, 3, vec![128; 70_000 * 3]);
        let err = encode(
            &wide.into(),
            &OutputSpec { format: ImageFormat::Jpeg, quality: 85, effort: None, progressive: false },
            [255; 3],
        );
        assert!(matches!(&err, Err(EncodeError::Jpeg(m)) if m.contains("65500")), "{err:?}");
        let gray = Pixels::new(4, 4, 1, vec![0; 16]);
        let err = encode(
            &gray.clone().into(),
            &OutputSpec { format: ImageFormat::Jpeg, quality: 85, effort: None, progressive: false },
            [255; 3],
        );
        assert!(matches!(err, Err(EncodeError::Jpeg(_))), "{err:?}");
    }

    /// Peak signal-to-noise ratio between two same-sized 8-bit buffers, in dB.
    pub(crate) fn psnr(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let mse = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>() / a.len() as f64;
        10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
    }

    /// Photo-like 4:2:0 planes: smooth luma with some texture, slowly varying chroma.
    fn planes(w: u32, h: u32) -> YccPlanes {
        let plane = |pw: u32, ph: u32, f: &dyn Fn(u32, u32) -> u32| {
            Pixels::new(pw, ph, 1, (0..ph).flat_map(|y| (0..pw).map(move |x| f(x, y).min(255) as u8)).collect())
        };
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        YccPlanes {
            y: plane(w, h, &|x, y| 40 + x * 150 / w + y * 50 / h + (x * 7 + y * 13) % 9),
            cb: plane(cw, ch, &|x, y| 90 + x * 60 / cw + y * 10 / ch),
            cr: plane(cw, ch, &|x, y| 170 - y * 70 / ch - x * 5 / cw),
            chroma_scale: (Ratio::HALF, Ratio::HALF),
            chroma_early: (false, false),
        }
    }

    #[test]
    fn planes_encode_to_what_their_rgb_pixels_encode_to() {
        // A 4:2:0 rendition goes into libjpeg as raw data and into libwebp as YUV; decoded, each
        // must match the same rendition converted to RGB first and encoded from that, at every size
        // (odd ones pad or halve unevenly), and the JPEG must be the same kind of file.
        let jpeg_spec = OutputSpec { format: ImageFormat::Jpeg, quality: 85, effort: None, progressive: false };
        let webp_spec = OutputSpec { format: ImageFormat::Webp, quality: 80, effort: None, progressive: false };
        for (w, h) in [(64, 48), (37, 23), (17, 33), (2, 3), (1, 1), (800, 533)] {
            let planes = planes(w, h);
            assert!(planes.is_420());
            let rgb = Raster::Ycc(planes.clone()).into_pixels();
            let (ycc, reference) = (Raster::Ycc(planes), Raster::Pixels(rgb.clone()));

            let from_planes = encode(&ycc, &jpeg_spec, [255; 3]).unwrap();
            let from_rgb = encode(&reference, &jpeg_spec, [255; 3]).unwrap();
            let markers = |j: &[u8]| segments(j).iter().map(|s| s.0).collect::<Vec<_>>();
            assert_eq!(markers(&from_planes), markers(&from_rgb), "{w}x{h}: same segments");
            let sof = |j: &[u8]| segments(j).iter().find(|s| s.0 == 0xC0).unwrap().1.to_vec();
            assert_eq!(sof(&from_planes), sof(&from_rgb), "{w}x{h}: same size and 4:2:0 sampling");
            let decode =
                |j: &[u8]| zune_jpeg::JpegDecoder::new(zune_core::bytestream::ZCursor::new(j)).decode().unwrap();
            let (a, b) = (psnr(&decode(&from_planes), &rgb.data), psnr(&decode(&from_rgb), &rgb.data));
            assert!(a > 30.0 && a > b - 1.0, "{w}x{h} JPEG against the rendition: planes {a:.1} dB, via RGB {b:.1} dB");

            let webp = encode(&ycc, &webp_spec, [255; 3]).unwrap();
            let back = webp::Decoder::new(&webp).decode().unwrap();
            assert_eq!((back.width(), back.height(), back.is_alpha()), (w, h, false), "{w}x{h} WebP");
            let via_rgb = webp::Decoder::new(&encode(&reference, &webp_spec, [255; 3]).unwrap()).decode().unwrap();
            let (a, b) = (psnr(&back, &rgb.data), psnr(&via_rgb, &rgb.data));
            assert!(a > 30.0 && a > b - 1.0, "{w}x{h} WebP against the rendition: planes {a:.1} dB, via RGB {b:.1} dB");
        }

        // The full-range to limited-range maps keep the ends and the middle where WebP wants them.
        assert_eq!((LIMITED_LUMA[0], LIMITED_LUMA[255]), (16, 235));
        assert_eq!((LIMITED_CHROMA[0], LIMITED_CHROMA[128], LIMITED_CHROMA[255]), (16, 128, 240));
        assert!(LIMITED_LUMA.windows(2).all(|p| p[0] <= p[1]) && LIMITED_CHROMA.windows(2).all(|p| p[0] <= p[1]));

        // Planes that are not one channel each are not taken as planes.
        let mut two_channel = planes(16, 16);
        two_channel.cb = Pixels::new(8, 8, 2, vec![128; 128]);
        assert!(!two_channel.is_420());
        let refused = webp_lossy(WebpInput::Planes(&two_channel), &webp_config(&webp_spec).unwrap());
        assert!(matches!(refused, Err(EncodeError::Webp(_))), "{refused:?}");

        // Planes whose chroma is not half of luma (4:4:4 here) are encoded through RGB.
        let full_chroma = YccPlanes {
            y: Pixels::new(8, 8, 1, vec![120; 64]),
            cb: Pixels::new(8, 8, 1, vec![100; 64]),
            cr: Pixels::new(8, 8, 1, vec![150; 64]),
            chroma_scale: (Ratio::ONE, Ratio::ONE),
            chroma_early: (false, false),
        };
        assert!(!full_chroma.is_420());
        let rgb = Raster::Ycc(full_chroma.clone()).into_pixels();
        let ycc = Raster::Ycc(full_chroma);
        for spec in [&jpeg_spec, &webp_spec] {
            assert_eq!(encode(&ycc, spec, [255; 3]).unwrap(), encode(&rgb.clone().into(), spec, [255; 3]).unwrap());
        }
    }

    #[test]
    fn webp_is_what_the_webp_crate_makes_without_its_argb_copy() {
        let mut config = webp::WebPConfig::new().unwrap();
        config.quality = 80.0;
        config.method = 4;
        let src = gradient(123, 77);
        let ours = webp_lossy(WebpInput::Pixels(&src), &config).unwrap();
        let theirs = webp::Encoder::from_rgb(&src.data, src.width, src.height).encode_advanced(&config).unwrap();
        assert_eq!(ours, &*theirs, "same bytes as the webp crate's encoder");

        // Alpha is kept: a half-transparent image comes back with its alpha channel.
        let rgba =
            Pixels::new(32, 8, 4, (0..32 * 8).flat_map(|i| [200, 40, 10, if i % 32 < 16 { 0 } else { 255 }]).collect());
        let out = webp_lossy(WebpInput::Pixels(&rgba), &config).unwrap();
        let back = webp::Decoder::new(&out).decode().unwrap();
        assert!(back.is_alpha());
        assert_eq!((back.width(), back.height()), (32, 8));
        assert_eq!((back[3], back[4 * 31 + 3]), (0, 255), "transparent left, opaque right");

        // Input libwebp cannot take is a typed error.
        let gray = Pixels::new(4, 4, 1, vec![0; 16]);
        assert!(matches!(webp_lossy(WebpInput::Pixels(&gray), &config), Err(EncodeError::Webp(_))));
        let huge = Pixels::new(20_000, 1, 3, vec![0; 60_000]);
        assert!(
            matches!(webp_lossy(WebpInput::Pixels(&huge), &config), Err(EncodeError::Webp(m)) if m.contains("BAD_DIMENSION"))
        );
    }

    #[test]
    fn a_preset_file_asking_for_avif_needs_a_build_that_writes_it() {
        let mut catalog = imgfleet_shared::PresetCatalog::default();
        check_catalog(&catalog).unwrap();
        catalog.presets[0].renditions[1].formats.push(OutputSpec::new(ImageFormat::Avif, 60));
        catalog.validate().unwrap();
        // Builds with the heic feature carry libheif with libaom's encoder (scripts/heic-deps.sh); others refuse
        // the file at start-up with the reason, and a render asking anyway gets a typed error.
        assert_eq!(avif_supported(), cfg!(feature = "heic"));
        match check_catalog(&catalog) {
            Ok(()) => assert!(avif_supported()),
            Err(e) => {
                assert!(!avif_supported() && e.contains("\"profile\" asks for avif") && e.contains("heic"), "{e}")
            }
        }
        let avif = encode(&gradient(8, 8).into(), &OutputSpec::new(ImageFormat::Avif, 60), [255; 3]);
        assert_eq!(avif.is_ok(), avif_supported(), "{avif:?}");
        if let Err(e) = avif {
            assert_eq!(e, EncodeError::Unsupported(ImageFormat::Avif));
        }
    }
}
