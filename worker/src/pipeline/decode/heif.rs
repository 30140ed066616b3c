//! HEIC/HEIF and AVIF through libheif (the `heic` feature): the primary image, grid or not, 8- to
//! 12-bit (brought to 8), with its alpha image, upright as the file's own transforms say (`irot`,
//! `imir`, `clap`, applied by libheif in the order the spec gives). Its ICC profile, or an `nclx`
//! colour description made into one, goes to the colour stage like any other format's. EXIF
//! orientation inside a HEIF is informational (the transforms already did it) and is never applied.
//! Depth maps, gain maps and thumbnails are not decoded.
//!
//! The size is checked against the limits from the primary item's header (`ispe`, then the size
//! after transforms) before libheif decodes anything, and libheif's own limits are set to ours.
//!
//! An 8-bit 4:2:0 image without alpha whose YCbCr is full range with BT.601 coefficients (what iPhones
//! write, and a JPEG's) is taken as its planes, as a baseline JPEG is: resized as planes and converted
//! to RGB at rendition size, so neither libheif's full-size RGB image nor a copy of it is ever made.
//! Any other is decoded to RGB(A) by libheif.

use super::{DecodeError, check_limits};
use crate::pipeline::geometry::Ratio;
use crate::pipeline::pixels::{ColourModel, Decoded, Pixels, Raster, YccPlanes};
use imgfleet_shared::{ImageFormat, Limits};
use libheif_rs::{
    Chroma, ColorPrimaries, ColorProfile, ColorProfileNCLX, ColorSpace, HeifContext, HeifError, HeifErrorCode,
    HeifErrorSubCode, Image, ImageHandle, LibHeif, MatrixCoefficients, RgbChroma, SecurityLimits,
    TransferCharacteristics, color_profile_types,
};
use std::sync::OnceLock;

/// libheif's global state, initialised once for the process.
pub(crate) fn lib() -> &'static LibHeif {
    static LIB: OnceLock<LibHeif> = OnceLock::new();
    LIB.get_or_init(LibHeif::new)
}

pub(super) fn decode_heif(bytes: &[u8], format: ImageFormat, limits: &Limits) -> Result<Decoded, DecodeError> {
    let error = |e: HeifError| classify(format, e);
    let mut ctx = HeifContext::new().map_err(error)?;
    let mut security = SecurityLimits::new();
    security.set_max_image_size_pixels(limits.max_source_pixels);
    ctx.set_security_limits(&security).map_err(error)?;
    // One job uses one core, as every other decoder does; the fleet runs jobs side by side.
    ctx.set_max_decoding_threads(0);
    ctx.read_bytes(bytes).map_err(error)?;
    let handle = ctx.primary_image_handle().map_err(error)?;
    let coded = (handle.ispe_width(), handle.ispe_height());
    if coded.0 > 0 && coded.1 > 0 {
        check_limits(format, coded.0 as u64, coded.1 as u64, limits)?;
    }
    check_limits(format, handle.width().into(), handle.height().into(), limits)?;

    let alpha = handle.has_alpha_channel();
    let native_420 = matches!(handle.preferred_decoding_colorspace(), Ok(ColorSpace::YCbCr(Chroma::C420)));
    // The file's colr box decides, as it does for libheif's own conversion; without one the decoded image
    // carries the bitstream's description. A box that rules the planes out spares the YCbCr decode.
    let box_nclx = handle.color_profile_nclx();
    if !alpha
        && native_420
        && handle.luma_bits_per_pixel() == 8
        && handle.chroma_bits_per_pixel() == 8
        && box_nclx.as_ref().is_none_or(jfif_coefficients)
    {
        let image = lib().decode(&handle, ColorSpace::YCbCr(Chroma::C420), None).map_err(error)?;
        let bitstream_ok = box_nclx.is_some() || image.color_profile_nclx().as_ref().is_none_or(jfif_coefficients);
        if let Some(planes) = bitstream_ok.then(|| jfif_planes(&image)).flatten() {
            return Ok(Decoded::whole(Raster::Ycc(planes), ColourModel::Rgb, profile(&handle), 1));
        }
    }
    let chroma = if alpha { RgbChroma::Rgba } else { RgbChroma::Rgb };
    let image = lib().decode(&handle, ColorSpace::Rgb(chroma), None).map_err(error)?;
    let channels: u8 = if alpha { 4 } else { 3 };
    let mut pixels = image
        .planes()
        .interleaved
        .and_then(|plane| tight(&plane, channels))
        .ok_or_else(|| DecodeError::Corrupt { format, message: "libheif returned no interleaved plane".into() })?;
    if alpha && image.is_premultiplied_alpha() {
        unpremultiply(&mut pixels.data);
    }
    let model = if alpha { ColourModel::Rgba } else { ColourModel::Rgb };
    Ok(Decoded::whole(pixels, model, profile(&handle), 1))
}

/// A libheif plane of 8-bit samples, `channels` to a pixel, without its row padding.
fn tight(plane: &libheif_rs::Plane<&[u8]>, channels: u8) -> Option<Pixels> {
    if plane.storage_bits_per_pixel != 8 * channels {
        return None;
    }
    let row = plane.width as usize * usize::from(channels);
    let mut data = Vec::with_capacity(row * plane.height as usize);
    for y in 0..plane.height as usize {
        data.extend_from_slice(plane.data.get(y * plane.stride..y * plane.stride + row)?);
    }
    Some(Pixels::new(plane.width, plane.height, channels, data))
}

/// Whether a colour description's YCbCr is a JFIF JPEG's: full range with BT.601 coefficients.
fn jfif_coefficients(nclx: &ColorProfileNCLX) -> bool {
    let bt601 = matches!(
        nclx.matrix_coefficients(),
        MatrixCoefficients::ITU_R_BT_601_6 | MatrixCoefficients::ITU_R_BT_470_6_System_B_G
    );
    bt601 && nclx.full_range_flag() != 0
}

/// The image's Y, Cb and Cr planes as [`YccPlanes`], when they are laid out as a JFIF JPEG's: 8-bit,
/// chroma at half size both ways (rounded up). `None` otherwise, and the image is decoded to RGB.
fn jfif_planes(image: &Image) -> Option<YccPlanes> {
    let planes = image.planes();
    let luma_depth = |p: &libheif_rs::Plane<&[u8]>| p.bits_per_pixel == 8;
    let plane = |p: Option<libheif_rs::Plane<&[u8]>>| p.filter(luma_depth).and_then(|p| tight(&p, 1));
    let (y, cb, cr) = (plane(planes.y)?, plane(planes.cb)?, plane(planes.cr)?);
    let half = |luma: u32| luma.div_ceil(2);
    let sized =
        (cb.width, cb.height) == (half(y.width), half(y.height)) && (cr.width, cr.height) == (cb.width, cb.height);
    sized.then(|| YccPlanes {
        y,
        cb,
        cr,
        chroma_scale: (Ratio::new(1, 2), Ratio::new(1, 2)),
        chroma_early: (false, false),
    })
}

/// The colour profile to convert from: the ICC profile (`prof` or `rICC`) if there is one, else
/// the `nclx` description as an ICC profile when it names other than sRGB's primaries and curve.
fn profile(handle: &ImageHandle) -> Option<Vec<u8>> {
    if let Some(raw) = handle.color_profile_raw()
        && matches!(raw.profile_type(), color_profile_types::PROF | color_profile_types::R_ICC)
    {
        return Some(raw.data);
    }
    handle.color_profile_nclx().and_then(|nclx| nclx_profile(&nclx))
}

/// An ICC profile for an `nclx` colour description, or `None` for sRGB and unknown code points.
fn nclx_profile(nclx: &ColorProfileNCLX) -> Option<Vec<u8>> {
    let (primaries, transfer) = (nclx.color_primaries(), nclx.transfer_characteristics());
    if primaries == ColorPrimaries::Unknown || transfer == TransferCharacteristics::Unknown {
        return None;
    }
    cicp_profile(primaries as u8, transfer as u8)
}

/// An ICC profile for CICP colour primaries and transfer characteristics (ITU-T H.273), or
/// `None` when they are sRGB's or unknown. A BT.709-like curve (BT.709, BT.601, BT.2020), which
/// encoders write for still photos as often as the sRGB one, is taken as the sRGB curve (as
/// browsers show such images), so BT.709 primaries with any of them are sRGB.
pub(super) fn cicp_profile(primaries: u8, transfer: u8) -> Option<Vec<u8>> {
    use moxcms::{CicpColorPrimaries, CicpProfile, ColorProfile, MatrixCoefficients, TransferCharacteristics};
    let primaries = CicpColorPrimaries::try_from(primaries).ok()?;
    let transfer = TransferCharacteristics::try_from(transfer).ok()?;
    use TransferCharacteristics as T;
    let srgb_like =
        |t| matches!(t, T::Unspecified | T::Reserved | T::Bt709 | T::Bt601 | T::Bt202010bit | T::Bt202012bit);
    let transfer = if srgb_like(transfer) { T::Srgb } else { transfer };
    match primaries {
        CicpColorPrimaries::Unspecified | CicpColorPrimaries::Reserved => return None,
        CicpColorPrimaries::Bt709 if matches!(transfer, TransferCharacteristics::Srgb) => return None,
        _ => {}
    }
    let cicp = CicpProfile {
        color_primaries: primaries,
        transfer_characteristics: transfer,
        matrix_coefficients: MatrixCoefficients::Bt709,
        full_range: true,
    };
    ColorProfile::new_from_cicp(cicp).encode().ok()
}

/// Straight alpha from premultiplied RGBA, in place.
pub(super) fn unpremultiply(rgba: &mut [u8]) {
    for p in rgba.chunks_exact_mut(4) {
        let a = u32::from(p[3]);
        if a != 0 && a != 255 {
            for c in &mut p[..3] {
                *c = ((u32::from(*c) * 255 + a / 2) / a).min(255) as u8;
            }
        }
    }
}

/// libheif's error as a [`DecodeError`]: limits as too large, what the build cannot decode as
/// unsupported, the rest as corrupt.
fn classify(format: ImageFormat, e: HeifError) -> DecodeError {
    let message = format!("{} ({:?}/{:?})", e.message, e.code, e.sub_code);
    match (e.code, e.sub_code) {
        (_, HeifErrorSubCode::SecurityLimitExceeded) | (HeifErrorCode::MemoryAllocationError, _) => {
            DecodeError::TooLarge { format, width: 0, height: 0, limit: format!("libheif's limits: {}", e.message) }
        }
        (HeifErrorCode::UnsupportedFeature | HeifErrorCode::UnsupportedFileType, _)
        | (_, HeifErrorSubCode::UnsupportedCodec) => DecodeError::Unsupported { format, message },
        _ => DecodeError::Corrupt { format, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moxcms::ColorProfile;

    #[test]
    fn cicp_profiles_for_wide_gamut_only() {
        // BT.709 primaries with the sRGB curve (or none stated) are sRGB; unspecified primaries are taken as sRGB.
        for (p, t) in [(1, 13), (1, 2), (1, 1), (1, 6), (1, 14), (2, 13), (2, 2), (0, 13), (3, 13), (255, 13)] {
            assert_eq!(cicp_profile(p, t), None, "primaries {p}, transfer {t}");
        }
        // Display P3 (SMPTE EG 432-1, 12) and BT.2020 (9) become profiles with their red primary.
        for (p, t, red_x) in [(12, 13, 0.680), (9, 13, 0.708), (12, 1, 0.680), (1, 8, 0.640)] {
            let icc = cicp_profile(p, t).unwrap_or_else(|| panic!("primaries {p}, transfer {t}"));
            let profile = ColorProfile::new_from_slice(&icc).expect("a readable ICC profile");
            let r = profile.red_colorant;
            let x = r.x / (r.x + r.y + r.z);
            // Colorants are adapted to D50, so the chromaticity moves a little from the D65 primary.
            assert!((x - red_x).abs() < 0.02, "primaries {p}: red x {x:.3}");
        }
    }

    #[test]
    fn every_cicp_pair_gives_none_or_a_readable_rgb_profile() {
        use moxcms::{CicpColorPrimaries, DataColorSpace};
        for p in 0..=255u8 {
            for t in 0..=255u8 {
                let known = !matches!(
                    CicpColorPrimaries::try_from(p),
                    Err(_) | Ok(CicpColorPrimaries::Unspecified | CicpColorPrimaries::Reserved)
                );
                match cicp_profile(p, t) {
                    Some(icc) => {
                        assert!(known, "primaries {p}: a profile for unknown primaries");
                        let profile = ColorProfile::new_from_slice(&icc).expect("readable");
                        assert_eq!(profile.color_space, DataColorSpace::Rgb, "primaries {p}, transfer {t}");
                    }
                    None => assert!(
                        !known || p == 1 || moxcms::TransferCharacteristics::try_from(t).is_err(),
                        "primaries {p}, transfer {t}: no profile"
                    ),
                }
            }
        }
    }

    #[test]
    fn unpremultiply_restores_straight_alpha() {
        for a in 0..=255u32 {
            for c in (0..=255u32).step_by(5) {
                let premultiplied = ((c * a + 127) / 255) as u8;
                let mut px = [premultiplied, premultiplied, premultiplied, a as u8];
                unpremultiply(&mut px);
                let want = if a == 0 { u32::from(premultiplied) } else { c };
                // Premultiplying loses precision below 1/alpha; the result is within that of the original.
                let tolerance = 255u32.checked_div(a).map_or(0, |q| q + 1);
                assert!(u32::from(px[0]).abs_diff(want) <= tolerance, "c {c}, a {a}: {}", px[0]);
                assert_eq!(px[3], a as u8);
            }
        }
    }
}
