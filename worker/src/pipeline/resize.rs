//! Resize: a source image and a rendition box → the rendition's pixels, with fast_image_resize
//! (SIMD kernels chosen at run time; Lanczos3). Alpha is premultiplied while filtering, so
//! transparent edges get no dark fringe. A source at least twice as large as every rendition needs
//! is first box-shrunk by a whole factor ([`shrink`]), as a JPEG decoder's shrink-on-load would;
//! Lanczos3 then works on a fraction of the pixels.

use super::decode::{Raster, YccPlanes};
use super::geometry::{Plan, Ratio, shrink_factors, shrunk_chroma_scale, whole_factor};
use super::pixels::Pixels;
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

/// Shrinks `src` with a box filter (the mean of each block of k x k pixels; blocks cut off by the
/// right and bottom edges average what they have) by the largest factor [`box_reduce`] makes that
/// keeps at least `keep` of its size per side. Chroma planes keep at least half that much of the
/// luma size: renditions are encoded with half-resolution chroma. Returns the result and the factor
/// luma was shrunk by, or `None` when no factor over 1 keeps that much or `src` has alpha (a box
/// average of unpremultiplied alpha would fringe); a pixel at `x` lands at `x / factor`, so a plan
/// on `src` maps onto the result with [`Plan::scaled`].
pub fn shrink(src: &Raster, keep: f64) -> Option<(Raster, u32)> {
    if matches!(src, Raster::Pixels(p) if p.has_alpha()) {
        return None;
    }
    let chroma_scale = match src {
        Raster::Pixels(_) => (Ratio::ONE, Ratio::ONE),
        Raster::Ycc(planes) => planes.chroma_scale,
    };
    let (k, k_chroma) = shrink_factors(keep, chroma_scale);
    if k == 1 {
        return None;
    }
    let raster = match src {
        Raster::Pixels(p) => Raster::Pixels(box_reduce(p, k)),
        Raster::Ycc(planes) => Raster::Ycc(YccPlanes {
            y: box_reduce(&planes.y, k),
            cb: box_reduce(&planes.cb, k_chroma),
            cr: box_reduce(&planes.cr, k_chroma),
            chroma_scale: shrunk_chroma_scale(planes.chroma_scale, k, k_chroma),
        }),
    };
    Some((raster, k))
}

/// The mean of every `k` x `k` block of `src`, for `k` as [`whole_factor`] rounds it (any channel
/// count; alpha is averaged as is, so callers keep this to opaque images).
pub fn box_reduce(src: &Pixels, k: u32) -> Pixels {
    let mut reducer = BoxReducer::new(src.width, src.channels, k);
    reducer.push(&src.data);
    reducer.finish()
}

/// [`box_reduce`] for an image that arrives a band of rows at a time, as a JPEG decoder makes it:
/// only `k` rows are ever held, so the full-size image never exists in memory.
#[derive(Debug)]
pub struct BoxReducer {
    width: usize,
    channels: u8,
    k: usize,
    /// Column sums of the rows of the current block so far (k * 255 fits in u16).
    acc: Vec<u16>,
    rows: usize,
    /// Blocks of blocks for factors over 4: a box of boxes is a box.
    next: Option<Box<BoxReducer>>,
    /// The row of block means being passed on (reused).
    row: Vec<u8>,
    out: Vec<u8>,
}

impl BoxReducer {
    pub fn new(width: u32, channels: u8, k: u32) -> Self {
        let k = whole_factor(k);
        let (first, rest) = if k > 4 { (4, k / 4) } else { (k, 1) };
        let width = width as usize;
        let out_width = width.div_ceil(first as usize);
        Self {
            width,
            channels,
            k: first as usize,
            acc: vec![0; if first > 1 { width * usize::from(channels) } else { 0 }],
            rows: 0,
            next: (rest > 1).then(|| Box::new(Self::new(out_width as u32, channels, rest))),
            row: Vec::with_capacity(out_width * usize::from(channels)),
            out: Vec::new(),
        }
    }

    /// Adds whole rows (`width * channels` bytes each) below those already pushed.
    pub fn push(&mut self, rows: &[u8]) {
        let stride = self.width * usize::from(self.channels);
        for row in rows.chunks_exact(stride) {
            if self.k == 1 {
                self.out.extend_from_slice(row);
                continue;
            }
            // The first row of a block starts the sums afresh: no clearing pass between blocks.
            if self.rows == 0 {
                for (a, &b) in self.acc.iter_mut().zip(row) {
                    *a = u16::from(b);
                }
            } else {
                for (a, &b) in self.acc.iter_mut().zip(row) {
                    *a += u16::from(b);
                }
            }
            self.rows += 1;
            if self.rows == self.k {
                self.emit();
            }
        }
    }

    /// The reduced image; a block cut off by the bottom edge averages the rows it has.
    pub fn finish(mut self) -> Pixels {
        if self.rows > 0 {
            self.emit();
        }
        match self.next {
            Some(next) => next.finish(),
            None => {
                let width = self.width.div_ceil(self.k);
                let height = self.out.len() / (width * usize::from(self.channels)).max(1);
                Pixels::new(width as u32, height as u32, self.channels, self.out)
            }
        }
    }

    /// Turns the summed rows into one row of block means and passes it on.
    fn emit(&mut self) {
        self.row.clear();
        match self.k {
            2 => mean_row::<2>(&self.acc, self.channels, self.rows, &mut self.row),
            3 => mean_row::<3>(&self.acc, self.channels, self.rows, &mut self.row),
            _ => mean_row::<4>(&self.acc, self.channels, self.rows, &mut self.row),
        }
        self.rows = 0;
        match &mut self.next {
            Some(next) => next.push(&self.row),
            None => self.out.extend_from_slice(&self.row),
        }
    }
}

/// The means of `K`-wide blocks of column sums over `n_rows` rows; a block cut off by the right
/// edge averages the columns it has.
fn mean_row<const K: usize>(acc: &[u16], channels: u8, n_rows: usize, out: &mut Vec<u8>) {
    let c = usize::from(channels);
    let full = acc.len() / c / K; // blocks not cut off by the right edge
    // Mean as a 16.16 multiply: rounding is off by at most one level.
    let mul = (1u32 << 16) / (K * n_rows) as u32;
    let blocks = &acc[..full * K * c];
    match c {
        1 => block_means::<K, 1>(blocks, mul, out),
        3 => block_means::<K, 3>(blocks, mul, out),
        4 => block_means::<K, 4>(blocks, mul, out),
        _ => {
            for block in blocks.chunks_exact(K * c) {
                out.extend((0..c).map(|ch| mean_of((0..K).map(|j| u32::from(block[j * c + ch])).sum(), mul)));
            }
        }
    }
    let tail = &acc[full * K * c..];
    if !tail.is_empty() {
        let n = (tail.len() / c * n_rows) as u32;
        for ch in 0..c {
            let sum: u32 = tail.iter().skip(ch).step_by(c).map(|&v| u32::from(v)).sum();
            out.push(((sum + n / 2) / n) as u8);
        }
    }
}

fn mean_of(sum: u32, mul: u32) -> u8 {
    ((sum * mul + (1 << 15)) >> 16) as u8
}

/// [`mean_row`]'s whole blocks with the block width and channel count fixed at compile time: the
/// sums unroll into straight-line code (they were a loop and an iterator per channel per block).
fn block_means<const K: usize, const C: usize>(blocks: &[u16], mul: u32, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + blocks.len() / K, 0);
    for (means, block) in out[start..].chunks_exact_mut(C).zip(blocks.chunks_exact(K * C)) {
        for (ch, m) in means.iter_mut().enumerate() {
            let mut sum = 0u32;
            for j in 0..K {
                sum += u32::from(block[j * C + ch]);
            }
            *m = mean_of(sum, mul);
        }
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

/// JFIF YCbCr (full range) → RGB, in 16.16 fixed point. Chroma planes smaller than luma (the
/// same size as each other) are repeated to its size, each sample covering its share of luma.
pub fn ycc_to_rgb(y: &Pixels, cb: &Pixels, cr: &Pixels) -> Pixels {
    const ONE: i32 = 1 << 16;
    let f = |v: f64| (v * f64::from(ONE)).round() as i32;
    let (cr_r, cb_g, cr_g, cb_b) = (f(1.402), f(0.344_136), f(0.714_136), f(1.772));
    let (w, h, cw, ch) = (y.width as usize, y.height as usize, cb.width as usize, cb.height as usize);
    let columns: Vec<usize> = (0..w).map(|x| x * cw / w).collect();
    let mut out = vec![0; w * h * 3];
    // The chroma terms of each column (rounding included), worked out once per chroma row, so the
    // per-pixel loop has no lookups.
    let (mut red, mut green, mut blue) = (vec![0; w], vec![0; w], vec![0; w]);
    let mut chroma_row = usize::MAX;
    for (row, (rgb_row, luma)) in out.chunks_exact_mut(w * 3).zip(y.data.chunks_exact(w)).enumerate() {
        let c = row * ch / h;
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
    fn box_reduce_averages_blocks_and_edges() {
        // 5 x 3, one channel, shrunk by 2: full blocks average four pixels, the right column and
        // bottom row average what they have.
        let src = Pixels::new(5, 3, 1, vec![0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140]);
        let out = box_reduce(&src, 2);
        assert_eq!((out.width, out.height), (3, 2));
        assert_eq!(out.data, [30, 50, 65, 105, 125, 140]);
        let rgb = Pixels::new(4, 4, 3, (0..48).map(|i| (i * 5) as u8).collect());
        let out = box_reduce(&rgb, 4);
        assert_eq!((out.width, out.height, out.channels), (1, 1, 3));
        let mean = |c: usize| (0..16).map(|p| u32::from(rgb.data[p * 3 + c])).sum::<u32>() as f64 / 16.0;
        for c in 0..3 {
            assert!((f64::from(out.data[c]) - mean(c)).abs() <= 1.0, "channel {c}: {} vs {}", out.data[c], mean(c));
        }
        assert_eq!(whole_factor(7), 4);
        assert_eq!(whole_factor(9), 8);
        assert_eq!(box_reduce(&src, 1), src);
    }

    #[test]
    fn box_reduce_is_the_block_mean_for_every_channel_count_and_factor() {
        // Odd sizes, so every factor leaves blocks cut off by the right and bottom edges.
        let (w, h) = (37usize, 23usize);
        for channels in 1..=4u8 {
            let c = usize::from(channels);
            let data: Vec<u8> = (0..w * h * c).map(|i| ((i * 7919 + i / 3 * 31) % 256) as u8).collect();
            let src = Pixels::new(w as u32, h as u32, channels, data);
            for k in [2usize, 3, 4, 8, 16] {
                let out = box_reduce(&src, k as u32);
                let (ow, oh) = (w.div_ceil(k), h.div_ceil(k));
                assert_eq!((out.width as usize, out.height as usize, out.channels), (ow, oh, channels));
                // Factors over 4 are means of rounded 4 x 4 means: one more level of rounding, and
                // at the right and bottom edges a mean of unequal parts; their whole blocks are checked.
                let (tolerance, bw, bh) = if k > 4 { (2.0, w / k, h / k) } else { (1.0, ow, oh) };
                for by in 0..bh {
                    for bx in 0..bw {
                        for ch in 0..c {
                            let (mut sum, mut n) = (0.0, 0.0);
                            for y in by * k..((by + 1) * k).min(h) {
                                for x in bx * k..((bx + 1) * k).min(w) {
                                    sum += f64::from(src.data[(y * w + x) * c + ch]);
                                    n += 1.0;
                                }
                            }
                            let got = f64::from(out.data[(by * ow + bx) * c + ch]);
                            assert!(
                                (got - sum / n).abs() <= tolerance,
                                "{channels} channels, k {k}, block ({bx}, {by}): {got} vs {}",
                                sum / n
                            );
                        }
                    }
                }
            }
        }
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
            let rgb = ycc_to_rgb(&y, &cb, &cr);
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
