//! Resize: a source image and a rendition box → the rendition's pixels, with fast_image_resize
//! (SIMD kernels chosen at run time; Lanczos3). Alpha is premultiplied while filtering, so
//! transparent edges get no dark fringe. A source at least twice as large as every rendition needs
//! is first box-shrunk by a whole factor ([`shrink`]), as a JPEG decoder's shrink-on-load would;
//! Lanczos3 then works on a fraction of the pixels.

use super::geometry::{Plan, Ratio};
use super::pixels::{Pixels, Raster, YccPlanes};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{Filter, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// Why a resize failed. Only reachable through a bug (plans are valid by construction, see
/// `geometry`), but never a panic: it is reported as an `internal` error.
#[derive(Debug, thiserror::Error)]
#[error("resize failed: {0}")]
pub struct ResizeError(String);

impl ResizeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Resizes the region of `src` that `plan` reads to `plan.width` x `plan.height` with Lanczos3.
pub fn resize(src: &Pixels, plan: &Plan) -> Result<Pixels, ResizeError> {
    let pixel_type = match src.channels {
        1 => PixelType::U8,
        3 => PixelType::U8x3,
        4 => PixelType::U8x4,
        n => return Err(ResizeError(format!("{n} channels"))),
    };
    resize_as(src, plan, pixel_type)
}

/// [`resize`] with the pixel type given; a four-channel image's last channel is alpha (resized
/// premultiplied), a two-channel one is two independent channels (a pair of chroma planes).
fn resize_as(src: &Pixels, plan: &Plan, pixel_type: PixelType) -> Result<Pixels, ResizeError> {
    let err = |e: &dyn std::fmt::Display| ResizeError(e.to_string());
    if plan.is_identity(src.width, src.height) {
        return Ok(src.clone());
    }
    let view = ImageRef::new(src.width, src.height, &src.data, pixel_type).map_err(|e| err(&e))?;
    let mut dst = Image::new(plan.width, plan.height, pixel_type);
    let (left, top, w, h) = plan.region();
    let lanczos3 = Filter::new("Lanczos3", lanczos3, 3.0).map_err(|e| err(&e))?;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Custom(lanczos3)))
        .crop(left, top, w, h)
        .use_alpha(pixel_type == PixelType::U8x4);
    Resizer::new().resize(&view, &mut dst, &options).map_err(|e| err(&e))?;
    Ok(Pixels::new(plan.width, plan.height, src.channels, dst.into_vec()))
}

/// The Lanczos3 kernel, sinc(x) sinc(x/3), with one sine instead of two: for s = sin(πx/3),
/// sin(πx) = s (3 − 4s²), so the kernel is 3s² (3 − 4s²) / (πx)². The same kernel as
/// fast_image_resize's own Lanczos3 (a test compares them); its two sines per tap were a tenth of
/// the time of the small resizes a rendition job is made of.
pub fn lanczos3(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    if !(-3.0..3.0).contains(&x) {
        return 0.0;
    }
    let px = std::f64::consts::PI * x;
    let s2 = sin_squared_pi_third(x);
    3.0 * s2 * (3.0 - 4.0 * s2) / (px * px)
}

/// sin²(πx/3) for |x| ≤ 3, to within an ulp or two of the library sine: the angle is folded into
/// [0, π/4] (sin² is even and symmetric about π/2) and Cephes' sine and cosine polynomials for that
/// range are used. The library sine's range reduction and call were two thirds of the kernel's
/// instructions.
fn sin_squared_pi_third(x: f64) -> f64 {
    use std::f64::consts::PI;
    let t = x.abs() / 3.0; // the angle over π, in [0, 1]
    let u = t.min(1.0 - t); // in [0, 1/2]: sin(πt) = sin(π(1 − t))
    let s = if u <= 0.25 { sin_quarter(PI * u) } else { cos_quarter(PI * (0.5 - u)) };
    s * s
}

/// sin(a) for |a| ≤ π/4 (Cephes `sin.c`).
fn sin_quarter(a: f64) -> f64 {
    const S: [f64; 6] = [
        1.5896230157654656e-10,
        -2.5050747762857807e-08,
        2.7557313621385727e-06,
        -0.0001984126982958954,
        0.008333333333322118,
        -0.1666666666666663,
    ];
    let z = a * a;
    a + a * z * S.iter().fold(0.0, |p, &c| p * z + c)
}

/// cos(a) for |a| ≤ π/4 (Cephes `sin.c`).
fn cos_quarter(a: f64) -> f64 {
    const C: [f64; 6] = [
        -1.1358536521387682e-11,
        2.087570084197473e-09,
        -2.755731417929674e-07,
        2.4801587288851704e-05,
        -0.0013888888888873056,
        0.041666666666666595,
    ];
    let z = a * a;
    1.0 - 0.5 * z + z * z * C.iter().fold(0.0, |p, &c| p * z + c)
}

/// Resizes any decoded raster to a rendition: interleaved pixels stay interleaved; YCbCr planes
/// come out as luma at the rendition size and chroma at half of it (4:2:0), which is what both
/// encoders take, so no RGB image is made on the way.
pub fn resize_raster(src: &Raster, plan: &Plan) -> Result<Raster, ResizeError> {
    match src {
        Raster::Pixels(p) => resize(p, plan).map(Raster::Pixels),
        Raster::Ycc(planes) => resize_ycc(planes, plan).map(Raster::Ycc),
    }
}

/// Resizes luma to the rendition size and both chroma planes to half of it (chroma crops scaled to
/// the chroma grid; JPEG chroma is centred, so the mapping is a plain scale). Half-size chroma is
/// all a rendition keeps: JPEG and WebP renditions are encoded 4:2:0.
fn resize_ycc(src: &YccPlanes, plan: &Plan) -> Result<YccPlanes, ResizeError> {
    let y = resize(&src.y, plan)?;
    let chroma_plan = plan.chroma(src.chroma_scale);
    let pairable =
        (src.cb.channels, src.cr.channels) == (1, 1) && (src.cb.width, src.cb.height) == (src.cr.width, src.cr.height);
    let (cb, cr) = if pairable {
        // Both chroma planes in one pass, as the two channels of one image: the filter is worked
        // out once and each output pixel's bookkeeping is done once for both. The same sums in
        // the same integers, so the same bytes as two one-channel resizes (a test compares them).
        let both = interleave(&src.cb, &src.cr);
        deinterleave(&resize_as(&both, &chroma_plan, PixelType::U8x2)?)
    } else {
        (resize(&src.cb, &chroma_plan)?, resize(&src.cr, &chroma_plan)?)
    };
    Ok(YccPlanes { y, cb, cr, chroma_scale: (Ratio::HALF, Ratio::HALF) })
}

/// Two one-channel planes of one size as one two-channel image.
fn interleave(a: &Pixels, b: &Pixels) -> Pixels {
    let mut data = vec![0; a.data.len() * 2];
    for ((pair, &x), &y) in data.chunks_exact_mut(2).zip(&a.data).zip(&b.data) {
        pair[0] = x;
        pair[1] = y;
    }
    Pixels::new(a.width, a.height, 2, data)
}

/// A two-channel image as its two one-channel planes.
fn deinterleave(both: &Pixels) -> (Pixels, Pixels) {
    let (a, b): (Vec<u8>, Vec<u8>) = both.data.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    (Pixels::new(both.width, both.height, 1, a), Pixels::new(both.width, both.height, 1, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::geometry::plan;
    use imgfleet_shared::Fit;

    #[test]
    fn chroma_pairs_resize_to_the_same_bytes_as_single_planes() {
        let plane = |w: u32, h: u32, seed: usize| {
            let data = (0..(w * h) as usize).map(|i| ((i * 7919 + seed * 104_729 + i / 13 * 31) % 256) as u8).collect();
            Pixels::new(w, h, 1, data)
        };
        for (w, h) in [(504, 378), (455, 371), (33, 17), (3, 2), (1, 1)] {
            let planes = YccPlanes {
                y: plane(2 * w, 2 * h, 0),
                cb: plane(w, h, 1),
                cr: plane(w, h, 2),
                chroma_scale: (Ratio::HALF, Ratio::HALF),
            };
            for fit in [Fit::Inside, Fit::Cover] {
                for (bw, bh) in [(800, 800), (400, 400), (150, 150), (7, 5)] {
                    let p = plan(2 * w, 2 * h, bw, bh, fit);
                    let out = resize_ycc(&planes, &p).unwrap();
                    let chroma_plan = p.chroma(planes.chroma_scale);
                    assert_eq!(out.cb, resize(&planes.cb, &chroma_plan).unwrap(), "cb {w}x{h} {fit:?} {bw}x{bh}");
                    assert_eq!(out.cr, resize(&planes.cr, &chroma_plan).unwrap(), "cr {w}x{h} {fit:?} {bw}x{bh}");
                    assert_eq!(out.y, resize(&planes.y, &p).unwrap());
                }
            }
        }
    }

    #[test]
    fn lanczos3_is_sinc_times_sinc_over_three() {
        let sinc = |x: f64| if x == 0.0 { 1.0 } else { (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x) };
        for i in -3500..=3500 {
            let x = f64::from(i) / 1000.0;
            let want = if x.abs() < 3.0 { sinc(x) * sinc(x / 3.0) } else { 0.0 };
            assert!((lanczos3(x) - want).abs() < 1e-12, "x = {x}: {} vs {want}", lanczos3(x));
        }
        // The folded polynomial sine against the library's, over the whole range and its edges.
        for i in -300_000..=300_000 {
            let x = f64::from(i) / 100_000.0;
            let want = (std::f64::consts::PI * x / 3.0).sin().powi(2);
            // Absolute: near the zeros at ±3 the library's own angle rounding dominates.
            assert!((sin_squared_pi_third(x) - want).abs() <= 1e-15, "x = {x}: {} vs {want}", sin_squared_pi_third(x));
        }
    }

    #[test]
    fn alpha_edges_have_no_dark_fringe() {
        // Left half opaque white, right half fully transparent black: premultiplied filtering keeps
        // every partly transparent pixel white.
        let (w, h) = (64u32, 8u32);
        let data = (0..w * h).flat_map(|i| if i % w < w / 2 { [255, 255, 255, 255] } else { [0, 0, 0, 0] }).collect();
        let src = Pixels::new(w, h, 4, data);
        let out = resize(&src, &plan(w, h, 20, 20, Fit::Inside)).unwrap();
        for p in out.data.chunks_exact(4).filter(|p| p[3] > 8) {
            assert!(p[0] > 240 && p[1] > 240 && p[2] > 240, "fringe pixel {p:?}");
        }
    }
}
