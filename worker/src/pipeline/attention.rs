//! What an `attention` crop keeps: the most salient region of an image, in the spirit of libvips'
//! `smartcrop` attention strategy. On a small copy (at most [`SIDE`] pixels a side) each pixel scores
//! for its edges (Sobel on luma), for skin tones (a YCbCr chroma range) and for saturated colour;
//! transparent pixels score nothing. The scores are blurred (three box passes, about a Gaussian of a
//! tenth of the image), and the region is the connected area around the strongest point that scores
//! at least [`REGION_SHARE`] of it. A flat image (nothing scores) has no region: its crop stays centred.
//!
//! Plain integer and float arithmetic on a few thousand pixels; no allocation beyond the copy's size.

use super::pixels::Pixels;

/// The longest side of the copy the saliency is computed on.
pub const SIDE: u32 = 128;

/// The share of the peak a pixel's blurred score needs to belong to the region.
const REGION_SHARE: f32 = 0.7;

/// Below this peak (on a scale where one strong edge pixel scores about 1) nothing is salient.
const FLAT: f32 = 0.01;

/// A box in the analysed image's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

/// The salient region of `image` (1–4 channels: grey, grey + alpha, RGB, RGBA), or `None` when the
/// image is flat.
pub fn salient_region(image: &Pixels) -> Option<Region> {
    let (w, h) = (image.width as usize, image.height as usize);
    if w == 0 || h == 0 {
        return None;
    }
    let score = blur(saliency(image), w, h, (w.max(h) / 20).max(1));
    let (peak_at, peak) =
        score.iter().copied().enumerate().fold((0, 0.0f32), |best, (i, v)| if v > best.1 { (i, v) } else { best });
    if peak < FLAT {
        return None;
    }
    Some(region_around(&score, w, h, peak_at, peak * REGION_SHARE))
}

/// Per pixel: edge strength (0–1 for a full black-to-white step), plus 1 for a skin tone, plus up
/// to 0.5 for saturated colour; times opacity.
fn saliency(image: &Pixels) -> Vec<f32> {
    let (w, h) = (image.width as usize, image.height as usize);
    let ch = usize::from(image.channels);
    let px = |x: usize, y: usize| &image.data[(y * w + x) * ch..][..ch];
    let rgb = |p: &[u8]| -> [f32; 3] { if ch >= 3 { [p[0], p[1], p[2]].map(f32::from) } else { [f32::from(p[0]); 3] } };
    let alpha = |p: &[u8]| -> f32 {
        match ch {
            2 => f32::from(p[1]) / 255.0,
            4 => f32::from(p[3]) / 255.0,
            _ => 1.0,
        }
    };
    let luma: Vec<f32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            let [r, g, b] = rgb(px(x, y));
            (0.299 * r + 0.587 * g + 0.114 * b) * alpha(px(x, y))
        })
        .collect();
    let l = |x: isize, y: isize| luma[(y.clamp(0, h as isize - 1) as usize) * w + x.clamp(0, w as isize - 1) as usize];
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let (xi, yi) = (x as isize, y as isize);
            let gx = l(xi + 1, yi - 1) + 2.0 * l(xi + 1, yi) + l(xi + 1, yi + 1)
                - l(xi - 1, yi - 1)
                - 2.0 * l(xi - 1, yi)
                - l(xi - 1, yi + 1);
            let gy = l(xi - 1, yi + 1) + 2.0 * l(xi, yi + 1) + l(xi + 1, yi + 1)
                - l(xi - 1, yi - 1)
                - 2.0 * l(xi, yi - 1)
                - l(xi + 1, yi - 1);
            let edge = ((gx * gx + gy * gy).sqrt() / (4.0 * 255.0)).min(1.0);
            let p = px(x, y);
            let [r, g, b] = rgb(p);
            let (cb, cr) =
                (128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b, 128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b);
            let y_ = 0.299 * r + 0.587 * g + 0.114 * b;
            let skin = if (77.0..=127.0).contains(&cb) && (133.0..=173.0).contains(&cr) && (40.0..=240.0).contains(&y_)
            {
                1.0
            } else {
                0.0
            };
            let (max, min) = (r.max(g).max(b), r.min(g).min(b));
            let saturation = if max > 0.0 { (max - min) / max } else { 0.0 };
            let colour = ((saturation - 0.4) / 0.6).clamp(0.0, 1.0) * 0.5 * (max / 255.0);
            out.push((edge + skin + colour) * alpha(p));
        }
    }
    out
}

/// Three passes of a box blur of `radius` along each axis (edges repeated): close to a Gaussian.
fn blur(mut v: Vec<f32>, w: usize, h: usize, radius: usize) -> Vec<f32> {
    let mut line = Vec::new();
    for _ in 0..3 {
        for y in 0..h {
            line.clear();
            line.extend_from_slice(&v[y * w..(y + 1) * w]);
            box_line(&line, &mut v[y * w..(y + 1) * w], radius);
        }
        let mut column = vec![0.0; h];
        for x in 0..w {
            line.clear();
            line.extend((0..h).map(|y| v[y * w + x]));
            box_line(&line, &mut column, radius);
            for (y, value) in column.iter().enumerate() {
                v[y * w + x] = *value;
            }
        }
    }
    v
}

/// `out[i]` = the mean of `line[i - radius ..= i + radius]`, the ends repeated.
fn box_line(line: &[f32], out: &mut [f32], radius: usize) {
    let n = line.len() as isize;
    let at = |i: isize| line[i.clamp(0, n - 1) as usize];
    let r = radius as isize;
    let mut sum: f32 = (-r..=r).map(at).sum();
    let span = (2 * r + 1) as f32;
    for i in 0..n {
        out[i as usize] = sum / span;
        sum += at(i + r + 1) - at(i - r);
    }
}

/// The bounding box of the 4-connected pixels scoring at least `floor` that reach `start`.
fn region_around(score: &[f32], w: usize, h: usize, start: usize, floor: f32) -> Region {
    let mut seen = vec![false; w * h];
    let mut stack = vec![start];
    seen[start] = true;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    while let Some(i) = stack.pop() {
        let (x, y) = (i % w, i / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        let neighbours =
            [(x > 0).then(|| i - 1), (x + 1 < w).then(|| i + 1), (y > 0).then(|| i - w), (y + 1 < h).then(|| i + w)];
        for n in neighbours.into_iter().flatten() {
            if !seen[n] && score[n] >= floor {
                seen[n] = true;
                stack.push(n);
            }
        }
    }
    Region { left: x0 as u32, top: y0 as u32, width: (x1 - x0 + 1) as u32, height: (y1 - y0 + 1) as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w` x `h` flat grey RGB image with a `size` x `size` square at (`x`, `y`) painted by `paint`.
    fn with_square(w: u32, h: u32, (x, y, size): (u32, u32, u32), paint: [u8; 3]) -> Pixels {
        let mut data = vec![128u8; (w * h * 3) as usize];
        for yy in y..(y + size).min(h) {
            for xx in x..(x + size).min(w) {
                data[((yy * w + xx) * 3) as usize..][..3].copy_from_slice(&paint);
            }
        }
        Pixels::new(w, h, 3, data)
    }

    fn contains(r: Region, x: u32, y: u32) -> bool {
        (r.left..r.left + r.width).contains(&x) && (r.top..r.top + r.height).contains(&y)
    }

    #[test]
    fn the_region_is_where_the_subject_is_wherever_it_is() {
        // A skin-toned, saturated or high-contrast square anywhere on a flat background: the region
        // holds the square's centre and is not the whole image.
        for paint in [[224, 172, 140], [20, 40, 230], [0, 0, 0], [255, 255, 255]] {
            for (w, h) in [(128, 72), (72, 128), (100, 100)] {
                for y in (0..h - 12).step_by(9) {
                    for x in (0..w - 12).step_by(9) {
                        let r = salient_region(&with_square(w, h, (x, y, 12), paint)).expect("a subject");
                        assert!(contains(r, x + 6, y + 6), "{paint:?} {w}x{h} square at {x},{y}: {r:?}");
                        assert!(r.width < w / 2 && r.height < h / 2, "{paint:?} at {x},{y}: {r:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_flat_image_has_no_region_and_odd_ones_stay_inside() {
        for (w, h) in [(1, 1), (1, 9), (9, 1), (128, 128)] {
            for value in [0u8, 77, 255] {
                let flat = Pixels::new(w, h, 3, vec![value; (w * h * 3) as usize]);
                assert_eq!(salient_region(&flat), None, "{w}x{h} of {value}");
            }
        }
        // A transparent image scores nothing, whatever colour its pixels hold.
        let clear = Pixels::new(8, 8, 4, [250, 10, 10, 0].repeat(64));
        assert_eq!(salient_region(&clear), None);
        // Every size up to 20x20 of noise, in every channel count: a region inside the image.
        let mut seed = 1u32;
        for channels in 1..=4u8 {
            for (w, h) in (1..=20).flat_map(|w| (1..=20).map(move |h| (w, h))) {
                let data = (0..w * h * u32::from(channels))
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (seed >> 24) as u8
                    })
                    .collect();
                if let Some(r) = salient_region(&Pixels::new(w, h, channels, data)) {
                    assert!(r.width >= 1 && r.height >= 1 && r.left + r.width <= w && r.top + r.height <= h, "{r:?}");
                }
            }
        }
    }
}
