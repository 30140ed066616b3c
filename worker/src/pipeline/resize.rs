//! Resize: a source image and a rendition box → the rendition's pixels, with fast_image_resize
//! (SIMD kernels chosen at run time; Lanczos3). Alpha is premultiplied while filtering, so
//! transparent edges get no dark fringe. A source at least twice as large as every rendition needs
//! is first box-shrunk by a whole factor ([`shrink`]), as a JPEG decoder's shrink-on-load would;
//! Lanczos3 then works on a fraction of the pixels.

use super::geometry::{Plan, Ratio, Region};
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
    resize_as(src, plan, pixel_type(src.channels)?)
}

/// The resizer's pixel type for an image of `channels` interleaved channels (the last of four is alpha).
fn pixel_type(channels: u8) -> Result<PixelType, ResizeError> {
    match channels {
        1 => Ok(PixelType::U8),
        3 => Ok(PixelType::U8x3),
        4 => Ok(PixelType::U8x4),
        n => Err(ResizeError(format!("{n} channels"))),
    }
}

/// [`resize`] with the pixel type given; a four-channel image's last channel is alpha (resized
/// premultiplied), a two-channel one is two independent channels (a pair of chroma planes).
fn resize_as(src: &Pixels, plan: &Plan, pixel_type: PixelType) -> Result<Pixels, ResizeError> {
    resize_region(src, (plan.width, plan.height), plan.region(), pixel_type)
}

/// Resizes `region` of `src` (inside it) to `size`; all of `src` at its own size is a copy.
fn resize_region(src: &Pixels, size: (u32, u32), region: Region, pixel_type: PixelType) -> Result<Pixels, ResizeError> {
    let err = |e: &dyn std::fmt::Display| ResizeError(e.to_string());
    if region == (0.0, 0.0, f64::from(src.width), f64::from(src.height)) && size == (src.width, src.height) {
        return Ok(src.clone());
    }
    let (width, height) = size;
    let view = ImageRef::new(src.width, src.height, &src.data, pixel_type).map_err(|e| err(&e))?;
    let mut dst = Image::new(width, height, pixel_type);
    let (left, top, w, h) = region;
    let lanczos3 = Filter::new("Lanczos3", lanczos3, 3.0).map_err(|e| err(&e))?;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Custom(lanczos3)))
        .crop(left, top, w, h)
        .use_alpha(pixel_type == PixelType::U8x4);
    Resizer::new().resize(&view, &mut dst, &options).map_err(|e| err(&e))?;
    Ok(Pixels::new(width, height, src.channels, dst.into_vec()))
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
/// encoders take, so no RGB image is made on the way. `early` says on which axes a YCbCr
/// rendition's chroma grid starts one pixel early: those an odd rendition will be mirrored on
/// when it is turned upright ([`YccPlanes::chroma_early`]).
pub fn resize_raster(src: &Raster, plan: &Plan, early: (bool, bool)) -> Result<Raster, ResizeError> {
    match src {
        Raster::Pixels(p) => resize(p, plan).map(Raster::Pixels),
        Raster::Ycc(planes) => resize_ycc(planes, plan, early).map(Raster::Ycc),
    }
}

/// Resizes luma to the rendition size and both chroma planes to half of it, rounded up, sited on
/// luma as JPEG and WebP site them ([`Plan::chroma`]; a plane's edge is repeated where an odd
/// side's last chroma sample reaches past it). Half-size chroma is all a rendition keeps: JPEG
/// and WebP renditions are encoded 4:2:0.
fn resize_ycc(src: &YccPlanes, plan: &Plan, early: (bool, bool)) -> Result<YccPlanes, ResizeError> {
    let y = resize(&src.y, plan)?;
    let early = (early.0 && plan.width % 2 == 1, early.1 && plan.height % 2 == 1);
    let (cw, ch, region) = plan.chroma(src.chroma_scale, src.chroma_early, early);
    let (pad, region) = padding(region, (src.cb.width, src.cb.height));
    let pairable =
        (src.cb.channels, src.cr.channels) == (1, 1) && (src.cb.width, src.cb.height) == (src.cr.width, src.cr.height);
    let (cb, cr) = if pairable {
        // Both chroma planes in one pass, as the two channels of one image: the filter is worked
        // out once and each output pixel's bookkeeping is done once for both. The same sums in
        // the same integers, so the same bytes as two one-channel resizes (a test compares them).
        let both = interleave(&src.cb, &src.cr, pad);
        deinterleave(&resize_region(&both, (cw, ch), region, PixelType::U8x2)?)
    } else {
        (resize_one(&src.cb, pad, (cw, ch), region)?, resize_one(&src.cr, pad, (cw, ch), region)?)
    };
    Ok(YccPlanes { y, cb, cr, chroma_scale: (Ratio::HALF, Ratio::HALF), chroma_early: early })
}

/// One plane, padded by `pad`, resized from `region` to `size`.
fn resize_one(p: &Pixels, pad: Pad, size: (u32, u32), region: Region) -> Result<Pixels, ResizeError> {
    resize_region(&extend(p, pad), size, region, pixel_type(p.channels)?)
}

/// Columns and rows to add before and after a plane (left, top, right, bottom), repeating its
/// edges, so that a region reaching past it lies inside.
type Pad = (u32, u32, u32, u32);

/// The padding `region` needs on a `w` x `h` plane, and the region on the padded plane.
fn padding(region: Region, (w, h): (u32, u32)) -> (Pad, Region) {
    let (l, t, rw, rh) = region;
    let before = |start: f64| if start < 0.0 { (-start).ceil() as u32 } else { 0 };
    let (pl, pt) = (before(l), before(t));
    let (l, t) = (l + f64::from(pl), t + f64::from(pt));
    let after = |end: f64, extent: u32| (end.ceil() as u32).saturating_sub(extent);
    let (pr, pb) = (after(l + rw, w + pl), after(t + rh, h + pt));
    ((pl, pt, pr, pb), (l, t, rw, rh))
}

/// `p` with `pad` columns and rows added around it, each a copy of the nearest edge.
fn extend(p: &Pixels, pad: Pad) -> std::borrow::Cow<'_, Pixels> {
    if pad == (0, 0, 0, 0) {
        return std::borrow::Cow::Borrowed(p);
    }
    let (pl, pt, pr, pb) = pad;
    let n = p.channels as usize;
    let (pw, ph) = (p.width as usize, p.height as usize);
    let (w, h) = (p.width + pl + pr, p.height + pt + pb);
    let mut data = Vec::with_capacity(w as usize * h as usize * n);
    for row in (0..h as usize).map(|r| r.saturating_sub(pt as usize).min(ph - 1)) {
        let line = &p.data[row * pw * n..(row + 1) * pw * n];
        for _ in 0..pl {
            data.extend_from_slice(&line[..n]);
        }
        data.extend_from_slice(line);
        for _ in 0..pr {
            data.extend_from_slice(&line[(pw - 1) * n..]);
        }
    }
    std::borrow::Cow::Owned(Pixels::new(w, h, p.channels, data))
}

/// Two one-channel planes of one size as one two-channel image, padded by `pad` (edges repeated).
fn interleave(a: &Pixels, b: &Pixels, pad: Pad) -> Pixels {
    let (pl, pt, pr, pb) = pad;
    let (pw, ph) = (a.width as usize, a.height as usize);
    let (w, h) = (a.width + pl + pr, a.height + pt + pb);
    let mut data = Vec::with_capacity(w as usize * h as usize * 2);
    for row in (0..h as usize).map(|r| r.saturating_sub(pt as usize).min(ph - 1)) {
        let (ra, rb) = (&a.data[row * pw..(row + 1) * pw], &b.data[row * pw..(row + 1) * pw]);
        for _ in 0..pl {
            data.extend_from_slice(&[ra[0], rb[0]]);
        }
        let start = data.len();
        data.resize(start + pw * 2, 0);
        for ((pair, &x), &y) in data[start..].chunks_exact_mut(2).zip(ra).zip(rb) {
            pair[0] = x;
            pair[1] = y;
        }
        for _ in 0..pr {
            data.extend_from_slice(&[ra[pw - 1], rb[pw - 1]]);
        }
    }
    Pixels::new(w, h, 2, data)
}

/// A two-channel image as its two one-channel planes.
fn deinterleave(both: &Pixels) -> (Pixels, Pixels) {
    let (a, b): (Vec<u8>, Vec<u8>) = both.data.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    (Pixels::new(both.width, both.height, 1, a), Pixels::new(both.width, both.height, 1, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::geometry::{self, plan};
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
                chroma_early: (false, false),
            };
            for fit in [Fit::Inside, Fit::Cover] {
                for (bw, bh) in [(800, 800), (400, 400), (150, 150), (7, 5)] {
                    let p = plan(2 * w, 2 * h, bw, bh, fit);
                    let early = (true, false);
                    let out = resize_ycc(&planes, &p, early).unwrap();
                    let early = (p.width % 2 == 1, false);
                    assert_eq!(out.chroma_early, early);
                    let (cw, ch, region) = p.chroma(planes.chroma_scale, (false, false), early);
                    let (pad, region) = padding(region, (planes.cb.width, planes.cb.height));
                    let single = |c: &Pixels| resize_one(c, pad, (cw, ch), region).unwrap();
                    assert_eq!(out.cb, single(&planes.cb), "cb {w}x{h} {fit:?} {bw}x{bh}");
                    assert_eq!(out.cr, single(&planes.cr), "cr {w}x{h} {fit:?} {bw}x{bh}");
                    assert_eq!(out.y, resize(&planes.y, &p).unwrap());
                }
            }
        }
    }

    /// Chroma stays sited on luma at every size: a rendition at the source's own size keeps the
    /// chroma planes byte for byte (an odd side's last sample included), and a downscale of a
    /// chroma ramp sampled at JPEG's chroma sites (sample i centred between luma columns 2i and
    /// 2i + 1) comes out at the ramp's value at each output sample's site.
    #[test]
    fn chroma_is_sited_on_luma_at_every_size() {
        for w in 1..=65u32 {
            for h in 1..=65u32 {
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                let cb: Vec<u8> = (0..cw * ch).map(|i| (i * 37 % 251) as u8).collect();
                let cr: Vec<u8> = (0..cw * ch).map(|i| (i * 11 % 241) as u8).collect();
                let planes = YccPlanes {
                    y: Pixels::new(w, h, 1, vec![128; (w * h) as usize]),
                    cb: Pixels::new(cw, ch, 1, cb),
                    cr: Pixels::new(cw, ch, 1, cr),
                    chroma_scale: (Ratio::HALF, Ratio::HALF),
                    chroma_early: (false, false),
                };
                let out = resize_ycc(&planes, &plan(w, h, w, h, Fit::Inside), (false, false)).unwrap();
                assert_eq!((&out.cb, &out.cr), (&planes.cb, &planes.cr), "{w}x{h}");
            }
        }
        // A horizontal ramp of 3 levels per luma column, 130 luma columns, resized to every
        // width from 9 to 65: output chroma j is centred on output luma 2j + 1, which is source
        // luma (2j + 1) w / W. Away from the edges (where the filter runs out of samples) the
        // value is the ramp's there.
        let (w, h) = (130u32, 4u32);
        let ramp = |luma_x: f64| 40.0 + 1.5 * luma_x;
        let cb: Vec<u8> =
            (0..h / 2).flat_map(|_| (0..w / 2).map(|i| ramp(f64::from(2 * i + 1)).round() as u8)).collect();
        let planes = YccPlanes {
            y: Pixels::new(w, h, 1, vec![128; (w * h) as usize]),
            cb: Pixels::new(w / 2, h / 2, 1, cb.clone()),
            cr: Pixels::new(w / 2, h / 2, 1, cb),
            chroma_scale: (Ratio::HALF, Ratio::HALF),
            chroma_early: (false, false),
        };
        for out_w in 9..=65u32 {
            let p = geometry::Plan::whole(w, h, out_w, h);
            let out = resize_ycc(&planes, &p, (false, false)).unwrap();
            let s = f64::from(w) / f64::from(out_w);
            let margin = (3.0 * s / 2.0).ceil() as u32 + 1;
            for j in margin..out.cb.width.saturating_sub(margin) {
                let want = ramp(f64::from(2 * j + 1) * s);
                let got = f64::from(out.cb.pixel(j, 0)[0]);
                assert!((got - want).abs() <= 1.0, "width {out_w}, chroma column {j}: {got} vs {want:.2}");
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
