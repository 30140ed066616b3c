//! The in-memory images every stage works on: 8-bit interleaved [`Pixels`] (sRGB once colour is
//! done), a JPEG's [`YccPlanes`], either as a [`Raster`], and the [`Decoded`] image with what later
//! stages need to know of it. Stages share these types and import no sibling stage.

use super::geometry::Ratio;

/// An 8-bit interleaved image with 1 (gray), 3 (RGB), or 4 (RGBA, or CMYK before colour conversion) channels.
#[derive(Clone, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pixels({}x{}x{}, {} bytes)", self.width, self.height, self.channels, self.data.len())
    }
}

impl Pixels {
    pub fn new(width: u32, height: u32, channels: u8, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), width as usize * height as usize * channels as usize);
        Self { width, height, channels, data }
    }

    pub fn has_alpha(&self) -> bool {
        self.channels == 4
    }

    /// Row stride in bytes.
    pub fn stride(&self) -> usize {
        self.width as usize * self.channels as usize
    }

    /// The pixel at (x, y) as a slice of `channels` bytes.
    pub fn pixel(&self, x: u32, y: u32) -> &[u8] {
        let c = self.channels as usize;
        let i = y as usize * self.stride() + x as usize * c;
        &self.data[i..i + c]
    }

    /// The same image as RGBA (alpha 255 where there was none), as ThumbHash wants it.
    pub fn to_rgba(&self) -> Vec<u8> {
        match self.channels {
            4 => self.data.clone(),
            3 => self.data.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
            _ => self.data.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        }
    }

    /// Drops alpha by compositing onto `background` (for JPEG). RGB images are returned borrowed.
    pub fn flatten(&self, background: [u8; 3]) -> std::borrow::Cow<'_, [u8]> {
        if self.channels != 4 {
            return std::borrow::Cow::Borrowed(&self.data);
        }
        let out = self
            .data
            .chunks_exact(4)
            .flat_map(|p| {
                let a = u32::from(p[3]);
                let mix = |c: u8, bg: u8| ((u32::from(c) * a + u32::from(bg) * (255 - a) + 127) / 255) as u8;
                [mix(p[0], background[0]), mix(p[1], background[1]), mix(p[2], background[2])]
            })
            .collect();
        std::borrow::Cow::Owned(out)
    }

    /// True when every alpha value is 255 (or there is no alpha).
    pub fn is_opaque(&self) -> bool {
        self.channels != 4 || self.data.chunks_exact(4).all(|p| p[3] == 255)
    }
}

/// How the decoded channels are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourModel {
    Gray,
    /// Two channels, gray and alpha (a PNG's): made RGBA, through its gray profile, by
    /// [`super::colour::prepare`].
    GrayAlpha,
    Rgb,
    Rgba,
    /// Four channels of Adobe-style (inverted) CMYK, to be converted with the embedded profile.
    Cmyk,
}

/// A YCbCr JPEG as its component planes (JFIF full range, chroma centred), not upsampled or
/// converted: resizing the planes and converting only the small results saves most of the
/// full-size work and holds half the memory of an RGB image.
#[derive(Debug, Clone)]
pub struct YccPlanes {
    pub y: Pixels,
    pub cb: Pixels,
    pub cr: Pixels,
    /// Chroma samples per luma sample, horizontally and vertically (e.g. 0.5, 0.5 for 4:2:0).
    pub chroma_scale: (Ratio, Ratio),
    /// Per axis, whether the chroma grid starts one luma pixel before the luma plane: the half
    /// sample an odd side of a 4:2:0 image adds lies before its first luma pixel instead of after
    /// its last. A rendition that is mirrored upright is made so (`resize::resize_raster`), and
    /// the mirror puts that half sample back at the far edge, where encoders expect it.
    pub chroma_early: (bool, bool),
}

/// Decoded samples: interleaved pixels, or the planes of a YCbCr JPEG.
#[derive(Debug, Clone)]
pub enum Raster {
    Pixels(Pixels),
    Ycc(YccPlanes),
}

impl Raster {
    pub fn width(&self) -> u32 {
        match self {
            Self::Pixels(p) => p.width,
            Self::Ycc(y) => y.y.width,
        }
    }

    pub fn height(&self) -> u32 {
        match self {
            Self::Pixels(p) => p.height,
            Self::Ycc(y) => y.y.height,
        }
    }

    /// The image as interleaved pixels: YCbCr planes become RGB, chroma repeated to luma's size.
    pub fn into_pixels(self) -> Pixels {
        match self {
            Self::Pixels(p) => p,
            Self::Ycc(planes) => planes.to_rgb(),
        }
    }
}

impl YccPlanes {
    /// True when the planes are one channel each and both chroma planes are exactly half of
    /// luma's size (rounded up), as the 4:2:0 encoders take them: what a YCbCr rendition is made
    /// as ([`super::resize::resize_raster`]).
    pub fn is_420(&self) -> bool {
        let half = (self.y.width.div_ceil(2), self.y.height.div_ceil(2));
        self.chroma_early == (false, false)
            && [&self.y, &self.cb, &self.cr].iter().all(|p| p.channels == 1)
            && (self.cb.width, self.cb.height) == half
            && (self.cr.width, self.cr.height) == half
    }

    /// The planes as RGB pixels, each chroma sample repeated over the luma pixels it covers.
    pub fn to_rgb(&self) -> Pixels {
        ycc_to_rgb(&self.y, &self.cb, &self.cr, self.chroma_early)
    }
}

impl From<Pixels> for Raster {
    fn from(p: Pixels) -> Self {
        Self::Pixels(p)
    }
}

/// A decoded image in its stored orientation and colour space.
#[derive(Debug)]
pub struct Decoded {
    pub raster: Raster,
    /// The stored image's size; the raster's own unless it was shrunk while decoding.
    pub width: u32,
    pub height: u32,
    /// The whole factor the raster was box-shrunk by while decoding ([`super::decode::decode_shrinking`]); 1 if not.
    pub shrunk_by: u32,
    pub model: ColourModel,
    pub icc: Option<Vec<u8>>,
    /// EXIF orientation 1–8 (1 when absent or invalid).
    pub orientation: u8,
    /// What was wrong with the file but did not stop it from being read (an ICC profile whose
    /// chunks do not fit together, ignored), one sentence each.
    pub warnings: Vec<String>,
    /// Frames in the file (1 for a still image); only the first is decoded.
    pub frames: u32,
}

impl Decoded {
    /// A still image decoded whole (not shrunk), with nothing to warn about.
    pub fn whole(raster: impl Into<Raster>, model: ColourModel, icc: Option<Vec<u8>>, orientation: u8) -> Self {
        let raster = raster.into();
        let (width, height) = (raster.width(), raster.height());
        Self { raster, width, height, shrunk_by: 1, model, icc, orientation, warnings: Vec::new(), frames: 1 }
    }
}

/// JFIF YCbCr (full range) → RGB, in 16.16 fixed point. Chroma planes smaller than luma (the
/// same size as each other) are repeated to its size, each sample covering its share of luma.
pub fn ycc_to_rgb(y: &Pixels, cb: &Pixels, cr: &Pixels, early: (bool, bool)) -> Pixels {
    const ONE: i32 = 1 << 16;
    let f = |v: f64| (v * f64::from(ONE)).round() as i32;
    let (cr_r, cb_g, cr_g, cb_b) = (f(1.402), f(0.344_136), f(0.714_136), f(1.772));
    let (w, h, cw, ch) = (y.width as usize, y.height as usize, cb.width as usize, cb.height as usize);
    // Luma pixel x is chroma sample x·cw/w, or (x + 1)·cw/(w + 1) on a grid that starts early.
    let site = |x: usize, n: usize, cn: usize, early: bool| if early { (x + 1) * cn / (n + 1) } else { x * cn / n };
    let columns: Vec<usize> = (0..w).map(|x| site(x, w, cw, early.0)).collect();
    let mut out = vec![0; w * h * 3];
    // The chroma terms of each column (rounding included), worked out once per chroma row, so the
    // per-pixel loop has no lookups.
    let (mut red, mut green, mut blue) = (vec![0; w], vec![0; w], vec![0; w]);
    let mut chroma_row = usize::MAX;
    for (row, (rgb_row, luma)) in out.chunks_exact_mut(w * 3).zip(y.data.chunks_exact(w)).enumerate() {
        let c = site(row, h, ch, early.1);
        if c != chroma_row {
            chroma_row = c;
            let (cb_row, cr_row) = (&cb.data[c * cw..(c + 1) * cw], &cr.data[c * cw..(c + 1) * cw]);
            for (x, &cx) in columns.iter().enumerate() {
                let (b, r) = (i32::from(cb_row[cx]) - 128, i32::from(cr_row[cx]) - 128);
                red[x] = cr_r * r + ONE / 2;
                green[x] = ONE / 2 - cb_g * b - cr_g * r;
                blue[x] = cb_b * b + ONE / 2;
            }
        }
        let terms = red.iter().zip(&green).zip(&blue);
        for ((rgb, &l), ((&r, &g), &b)) in rgb_row.chunks_exact_mut(3).zip(luma).zip(terms) {
            let l = i32::from(l) << 16;
            rgb[0] = ((l + r) >> 16).clamp(0, 255) as u8;
            rgb[1] = ((l + g) >> 16).clamp(0, 255) as u8;
            rgb[2] = ((l + b) >> 16).clamp(0, 255) as u8;
        }
    }
    Pixels::new(y.width, y.height, 3, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_composites_onto_the_background() {
        let p = Pixels::new(2, 1, 4, vec![0, 0, 0, 0, 200, 100, 50, 255]);
        assert_eq!(&*p.flatten([255, 255, 255]), &[255, 255, 255, 200, 100, 50]);
        let half = Pixels::new(1, 1, 4, vec![0, 0, 0, 128]);
        assert_eq!(&*half.flatten([255, 0, 255]), &[127, 0, 127]);
    }

    #[test]
    fn ycc_to_rgb_is_the_jfif_formula_with_chroma_repeated() {
        // Per pixel, in floating point: the fixed-point conversion is within one level of it.
        let plane = |w: u32, h: u32, seed: u32| {
            Pixels::new(
                w,
                h,
                1,
                (0..w * h).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8).collect(),
            )
        };
        for (w, h, cw, ch) in [(7, 5, 4, 3), (8, 6, 4, 3), (9, 4, 9, 4), (6, 7, 3, 7), (1, 1, 1, 1), (33, 17, 11, 6)] {
            let (y, cb, cr) = (plane(w, h, 1), plane(cw, ch, 2), plane(cw, ch, 3));
            let rgb = ycc_to_rgb(&y, &cb, &cr, (false, false));
            for py in 0..h {
                for px in 0..w {
                    let (cx, cy) = (px * cw / w, py * ch / h);
                    let l = f64::from(y.pixel(px, py)[0]);
                    let b = f64::from(cb.pixel(cx, cy)[0]) - 128.0;
                    let r = f64::from(cr.pixel(cx, cy)[0]) - 128.0;
                    let want = [l + 1.402 * r, l - 0.344_136 * b - 0.714_136 * r, l + 1.772 * b];
                    for (got, want) in rgb.pixel(px, py).iter().zip(want) {
                        let want = want.round().clamp(0.0, 255.0);
                        assert!((f64::from(*got) - want).abs() <= 1.0, "{w}x{h} ({px}, {py}): {got} vs {want}");
                    }
                }
            }
        }
    }
}
