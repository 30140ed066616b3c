//! Colour: decoded pixels in their own colour space → sRGB (RGB or RGBA, 8-bit).
//!
//! Embedded ICC profiles that are not sRGB (Adobe RGB, Display P3, CMYK press profiles, gray
//! profiles) are converted with moxcms, a pure-Rust colour management engine, so no C library is
//! linked. Profiles that name themselves sRGB are passed through untouched; a profile moxcms cannot
//! read is ignored (the pixels are treated as sRGB) rather than failing the image.
//!
//! CMYK and gray sources are converted at full size (they must become RGB before resizing). An RGB
//! source with a wide-gamut profile is resized in its own space and each small rendition is
//! converted afterwards ([`Converter`]), which costs a fraction of converting the full image.

use super::decode::{ColourModel, Decoded, Raster, icc_colour_space};
use super::pixels::Pixels;
use moxcms::{ColorProfile, Layout, Transform8BitExecutor, TransformOptions};
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
/// RGB when resized), converting CMYK and gray to sRGB now; returns the [`Converter`] that finishes
/// an RGB source with a non-sRGB profile later.
pub fn prepare(decoded: Decoded) -> (Raster, Converter) {
    let Decoded { raster, model, icc, .. } = decoded;
    let profile = icc.as_deref().filter(|p| !is_srgb(p)).and_then(|p| ColorProfile::new_from_slice(p).ok());
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
        (ColourModel::Gray, Some(p)) if icc_colour_space(icc.as_deref().unwrap_or_default()) == Some(*b"GRAY") => {
            let rgb = transform(&pixels, &p, Layout::Gray, Layout::Rgb, 3).unwrap_or_else(|| gray_to_rgb(&pixels));
            (rgb, Converter::default())
        }
        (ColourModel::Gray, _) => (gray_to_rgb(&pixels), Converter::default()),
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

/// A profile whose description names sRGB (e.g. "sRGB IEC61966-2.1", "sRGB built-in", "GIMP
/// built-in sRGB"): in ASCII (ICC v2 `desc`) or in UTF-16BE (v4 `mluc`, each character's high byte
/// first, so the name may end the text with no NUL after it).
fn is_srgb(profile: &[u8]) -> bool {
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
    use moxcms::{LocalizableString, ProfileText};

    /// moxcms's sRGB profile with another description (a v4 `mluc` tag, UTF-16BE).
    fn srgb_named(name: &str) -> Vec<u8> {
        let mut p = ColorProfile::new_srgb();
        p.description =
            Some(ProfileText::Localizable(vec![LocalizableString::new("en".into(), "US".into(), name.into())]));
        p.encode().unwrap()
    }

    #[test]
    fn srgb_is_recognised_by_name_wherever_the_name_stands() {
        for name in ["sRGB IEC61966-2.1", "sRGB built-in", "GIMP built-in sRGB", "sRGB"] {
            assert!(is_srgb(&srgb_named(name)), "{name}");
        }
        let ascii = [&[0u8; 128][..], b"desc\0\0\0\0\0\0\0\x12sRGB IEC61966-2.1\0"].concat();
        assert!(is_srgb(&ascii));
        for name in ["Adobe RGB (1998)", "Display P3", "GIMP built-in Linear RGB"] {
            assert!(!is_srgb(&srgb_named(name)), "{name}");
        }
        let mut p3 = ColorProfile::new_display_p3();
        p3.description = None;
        assert!(!is_srgb(&p3.encode().unwrap()));
    }
}
