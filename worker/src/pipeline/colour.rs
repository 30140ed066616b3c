//! Colour: decoded pixels in their own colour space → sRGB (RGB or RGBA, 8-bit).
//!
//! Embedded ICC profiles that are not sRGB (Adobe RGB, Display P3, CMYK press profiles, gray
//! profiles) are converted with moxcms, a pure-Rust colour management engine, so no C library is
//! linked. Profiles that are sRGB are passed through untouched ([`is_srgb`]: a matrix/TRC profile by
//! its primaries and tone curves, any other by its name); a profile moxcms cannot read is ignored
//! (the pixels are treated as sRGB) rather than failing the image.
//!
//! CMYK and gray sources are converted at full size (they must become RGB before resizing). An RGB
//! source with a wide-gamut profile is resized in its own space and each small rendition is
//! converted afterwards ([`Converter`]), which costs a fraction of converting the full image.

use super::pixels::{ColourModel, Decoded, Pixels, Raster};
use moxcms::{ColorProfile, Layout, ToneReprCurve, Transform8BitExecutor, TransformOptions, Xyzd};
use std::sync::Arc;

/// Converts RGB(A) renditions from the source's profile to sRGB; a no-op for sRGB sources.
#[derive(Clone, Default)]
pub struct Converter {
    transform: Option<(Arc<Transform8BitExecutor>, Layout)>,
}

impl std::fmt::Debug for Converter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converter").field("active", &self.transform.is_some()).finish()
    }
}

impl Converter {
    /// True when pixels will be changed.
    pub fn is_active(&self) -> bool {
        self.transform.is_some()
    }

    /// [`Converter::apply`] for a rendition of either kind: one with a profile to convert from
    /// becomes RGB pixels first; any other is returned as it is.
    pub fn apply_raster(&self, r: Raster) -> Raster {
        if self.is_active() { Raster::Pixels(self.apply(r.into_pixels())) } else { r }
    }

    /// Converts `p` to sRGB (in place of a copy where there is a profile).
    pub fn apply(&self, p: Pixels) -> Pixels {
        let Some((t, layout)) = &self.transform else { return p };
        let want = if *layout == Layout::Rgba { 4 } else { 3 };
        if p.channels != want {
            return p;
        }
        let mut out = vec![0u8; p.data.len()];
        match t.transform(&p.data, &mut out) {
            Ok(()) => Pixels::new(p.width, p.height, p.channels, out),
            Err(_) => p,
        }
    }
}

/// Brings the decoded image to 3 (RGB) or 4 (RGBA) channels (or keeps YCbCr planes, which become
/// RGB when resized), converting CMYK and gray (with or without alpha) to sRGB now; returns the [`Converter`] that finishes
/// an RGB source with a non-sRGB profile later.
pub fn prepare(decoded: Decoded) -> (Raster, Converter) {
    let Decoded { raster, model, icc, .. } = decoded;
    let profile =
        icc.as_deref().and_then(|bytes| ColorProfile::new_from_slice(bytes).ok().filter(|p| !is_srgb(bytes, p)));
    let pixels = match raster {
        Raster::Pixels(p) => p,
        Raster::Ycc(planes) => {
            let converter = match profile {
                Some(p) if p.color_space == moxcms::DataColorSpace::Rgb => rgb_converter(&p, Layout::Rgb),
                _ => Converter::default(),
            };
            return (Raster::Ycc(planes), converter);
        }
    };
    let (pixels, converter) = match (model, profile) {
        (ColourModel::Cmyk, profile) => (cmyk_to_rgb(pixels, profile.as_ref()), Converter::default()),
        (ColourModel::Gray, Some(p)) if p.color_space == moxcms::DataColorSpace::Gray => {
            let rgb = transform(&pixels, &p, Layout::Gray, Layout::Rgb, 3).unwrap_or_else(|| gray_to_rgb(&pixels));
            (rgb, Converter::default())
        }
        (ColourModel::Gray, _) => (gray_to_rgb(&pixels), Converter::default()),
        (ColourModel::GrayAlpha, profile) => {
            let gray = profile.filter(|p| p.color_space == moxcms::DataColorSpace::Gray);
            (gray_alpha_to_rgba(&pixels, gray.as_ref()), Converter::default())
        }
        (ColourModel::Rgb | ColourModel::Rgba, Some(p)) if p.color_space == moxcms::DataColorSpace::Rgb => {
            let layout = if pixels.channels == 4 { Layout::Rgba } else { Layout::Rgb };
            (pixels, rgb_converter(&p, layout))
        }
        _ => (pixels, Converter::default()),
    };
    (Raster::Pixels(pixels), converter)
}

fn rgb_converter(profile: &ColorProfile, layout: Layout) -> Converter {
    let srgb = ColorProfile::new_srgb();
    let transform = profile.create_transform_8bit(layout, &srgb, layout, TransformOptions::default()).ok();
    Converter { transform: transform.map(|t| (t, layout)) }
}

/// Whether pixels tagged with `profile` (parsed from `bytes`) are sRGB already, so need no transform.
/// A matrix/TRC profile (the usual kind in photos) is judged by what it holds, whatever it is
/// called: sRGB's primaries and tone curve (GIMP's "Linear sRGB" is not sRGB; an sRGB profile by
/// another name is). A profile of another kind (lookup tables) by its name ([`names_srgb`]).
fn is_srgb(bytes: &[u8], profile: &ColorProfile) -> bool {
    if profile.color_space != moxcms::DataColorSpace::Rgb {
        return false;
    }
    match [&profile.red_trc, &profile.green_trc, &profile.blue_trc] {
        [Some(r), Some(g), Some(b)] => holds_srgb(profile, [r, g, b]),
        _ => names_srgb(bytes),
    }
}

/// sRGB's colorants (D50, as profiles store them) within 0.003, and each tone curve within 0.001
/// (linear light) of sRGB's at 65 points: a gamma 2.2 curve is 0.003 off in the shadows.
fn holds_srgb(profile: &ColorProfile, curves: [&ToneReprCurve; 3]) -> bool {
    let srgb = ColorProfile::new_srgb();
    let near =
        |a: &Xyzd, b: &Xyzd| (a.x - b.x).abs() <= 0.003 && (a.y - b.y).abs() <= 0.003 && (a.z - b.z).abs() <= 0.003;
    let colorants = near(&profile.red_colorant, &srgb.red_colorant)
        && near(&profile.green_colorant, &srgb.green_colorant)
        && near(&profile.blue_colorant, &srgb.blue_colorant);
    let Some(reference) = srgb.red_trc.as_ref().and_then(|t| t.make_linear_evaluator().ok()) else { return false };
    colorants
        && curves.iter().all(|curve| {
            curve.make_linear_evaluator().is_ok_and(|e| {
                (0..=64).all(|i| {
                    let x = i as f32 / 64.0;
                    (e.evaluate_value(x) - reference.evaluate_value(x)).abs() <= 0.001
                })
            })
        })
}

/// A profile whose description names sRGB (e.g. "sRGB IEC61966-2.1", "sRGB built-in", "GIMP
/// built-in sRGB"): in ASCII (ICC v2 `desc`) or in UTF-16BE (v4 `mluc`, each character's high byte
/// first, so the name may end the text with no NUL after it).
fn names_srgb(profile: &[u8]) -> bool {
    let head = &profile[..profile.len().min(4096)];
    head.windows(4).any(|w| w == b"sRGB") || head.windows(8).any(|w| w == b"\0s\0R\0G\0B")
}

fn transform(p: &Pixels, profile: &ColorProfile, from: Layout, to: Layout, out_channels: u8) -> Option<Pixels> {
    let srgb = ColorProfile::new_srgb();
    let t = profile.create_transform_8bit(from, &srgb, to, TransformOptions::default()).ok()?;
    let mut out = vec![0u8; p.width as usize * p.height as usize * usize::from(out_channels)];
    t.transform(&p.data, &mut out).ok()?;
    Some(Pixels::new(p.width, p.height, out_channels, out))
}

/// Gray + alpha → RGBA: the gray samples through `profile` (a gray one) when there is one, alpha as
/// it is. Converted 64 rows at a time, so no full-size gray or RGB copy is made on the way.
fn gray_alpha_to_rgba(p: &Pixels, profile: Option<&ColorProfile>) -> Pixels {
    let srgb = ColorProfile::new_srgb();
    let transform = profile.and_then(|prof| {
        prof.create_transform_8bit(Layout::Gray, &srgb, Layout::Rgb, TransformOptions::default()).ok()
    });
    let Some(transform) = transform else {
        let data = p.data.chunks_exact(2).flat_map(|q| [q[0], q[0], q[0], q[1]]).collect();
        return Pixels::new(p.width, p.height, 4, data);
    };
    let mut out = Vec::with_capacity(p.data.len() * 2);
    let (mut gray, mut rgb) = (Vec::new(), Vec::new());
    for rows in p.data.chunks(p.width as usize * 2 * 64) {
        gray.clear();
        gray.extend(rows.chunks_exact(2).map(|q| q[0]));
        rgb.resize(gray.len() * 3, 0);
        if transform.transform(&gray, &mut rgb).is_err() {
            rgb.clear();
            rgb.extend(gray.iter().flat_map(|&g| [g, g, g]));
        }
        for (c, q) in rgb.chunks_exact(3).zip(rows.chunks_exact(2)) {
            out.extend_from_slice(&[c[0], c[1], c[2], q[1]]);
        }
    }
    Pixels::new(p.width, p.height, 4, out)
}

fn gray_to_rgb(p: &Pixels) -> Pixels {
    let data = p.data.iter().flat_map(|&g| [g, g, g]).collect();
    Pixels::new(p.width, p.height, 3, data)
}

/// Adobe CMYK JPEGs store ink inverted (255 = no ink). With a CMYK profile the ink values go through
/// it; without one (or if it cannot be used) the usual naive formula applies.
fn cmyk_to_rgb(p: Pixels, profile: Option<&ColorProfile>) -> Pixels {
    if let Some(profile) = profile {
        let ink: Vec<u8> = p.data.iter().map(|v| 255 - v).collect();
        let inked = Pixels::new(p.width, p.height, 4, ink);
        if let Some(rgb) = transform(&inked, profile, Layout::Rgba, Layout::Rgb, 3) {
            return rgb;
        }
    }
    let data = p
        .data
        .chunks_exact(4)
        .flat_map(|q| {
            let k = u32::from(q[3]);
            let f = |c: u8| ((u32::from(c) * k + 127) / 255) as u8;
            [f(q[0]), f(q[1]), f(q[2])]
        })
        .collect();
    Pixels::new(p.width, p.height, 3, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use moxcms::{LocalizableString, ProfileText, curve_from_gamma};

    fn named(mut p: ColorProfile, name: &str) -> Vec<u8> {
        p.description =
            Some(ProfileText::Localizable(vec![LocalizableString::new("en".into(), "US".into(), name.into())]));
        p.encode().unwrap()
    }

    fn judged_srgb(bytes: &[u8]) -> bool {
        is_srgb(bytes, &ColorProfile::new_from_slice(bytes).unwrap())
    }

    /// sRGB's primaries with another tone curve.
    fn srgb_with_gamma(gamma: f32) -> ColorProfile {
        let mut p = ColorProfile::new_srgb();
        let curve = curve_from_gamma(gamma);
        (p.red_trc, p.green_trc, p.blue_trc) = (Some(curve.clone()), Some(curve.clone()), Some(curve));
        p.cicp = None;
        p
    }

    #[test]
    fn names_srgb_in_ascii_and_in_utf16_wherever_the_name_stands() {
        for name in ["sRGB IEC61966-2.1", "sRGB built-in", "GIMP built-in sRGB", "sRGB"] {
            assert!(names_srgb(&named(ColorProfile::new_srgb(), name)), "{name}");
        }
        let ascii = [&[0u8; 128][..], b"desc\0\0\0\0\0\0\0\x12sRGB IEC61966-2.1\0"].concat();
        assert!(names_srgb(&ascii));
        for name in ["Adobe RGB (1998)", "Display P3", "GIMP built-in Linear RGB"] {
            assert!(!names_srgb(&named(ColorProfile::new_srgb(), name)), "{name}");
        }
    }

    #[test]
    fn a_matrix_profile_is_judged_by_its_primaries_and_curves_not_its_name() {
        assert!(judged_srgb(&named(ColorProfile::new_srgb(), "GIMP built-in sRGB")));
        assert!(judged_srgb(&named(ColorProfile::new_srgb(), "Untitled")), "sRGB by another name");
        assert!(!judged_srgb(&named(srgb_with_gamma(1.0), "GIMP built-in Linear sRGB")), "linear light");
        assert!(!judged_srgb(&named(srgb_with_gamma(2.2), "sRGB gamma 2.2")), "a plain 2.2 gamma");
        assert!(!judged_srgb(&named(ColorProfile::new_display_p3(), "sRGB-ish P3")), "P3 primaries");
        assert!(!judged_srgb(&ColorProfile::new_adobe_rgb().encode().unwrap()));
    }
}
