//! Orient: EXIF orientation (1–8) → the image turned the right way up.
//!
//! Renditions are resized in the stored orientation (with the box transposed for 5–8) and only the
//! small results are turned, so a 12 MP photo is never rotated at full size.

use super::exif::transposes;
use super::pixels::{Pixels, Raster, YccPlanes};

/// [`apply`] for a rendition of either kind: YCbCr planes are turned one by one (a 4:2:0
/// rendition's chroma stays half of its luma, whichever way it turns). Mirroring an odd side
/// moves the half chroma sample it adds to the other end ([`YccPlanes::chroma_early`]).
pub fn apply_raster(src: Raster, orientation: u8) -> Raster {
    match src {
        Raster::Pixels(p) => Raster::Pixels(apply(p, orientation)),
        Raster::Ycc(YccPlanes { y, cb, cr, chroma_scale: (sx, sy), chroma_early: (ex, ey) }) => {
            let (rx, ry) = mirrored_axes(orientation);
            let (ex, ey) = (ex ^ (rx && y.width % 2 == 1), ey ^ (ry && y.height % 2 == 1));
            let t = transposes(orientation);
            Raster::Ycc(YccPlanes {
                y: apply(y, orientation),
                cb: apply(cb, orientation),
                cr: apply(cr, orientation),
                chroma_scale: if t { (sy, sx) } else { (sx, sy) },
                chroma_early: if t { (ey, ex) } else { (ex, ey) },
            })
        }
    }
}

/// Which axes of the stored image `orientation` runs backwards (x, y), before any transpose.
pub fn mirrored_axes(orientation: u8) -> (bool, bool) {
    match orientation {
        2 | 8 => (true, false),
        4 | 6 => (false, true),
        3 | 7 => (true, true),
        _ => (false, false),
    }
}

/// Where a box (`left`, `top`, `width`, `height`) of a stored `w` x `h` image lands once the image is
/// turned as `orientation` says: the same box in the upright image's pixels.
pub fn upright_box(b: (u32, u32, u32, u32), (w, h): (u32, u32), orientation: u8) -> (u32, u32, u32, u32) {
    let (left, top, bw, bh) = b;
    let (right, bottom) = (left + bw, top + bh);
    // The upright image's left and top edges of the box, on each axis counted from the stored edge
    // that becomes the upright one.
    match orientation {
        2 => (w - right, top, bw, bh),
        3 => (w - right, h - bottom, bw, bh),
        4 => (left, h - bottom, bw, bh),
        5 => (top, left, bh, bw),
        6 => (h - bottom, left, bh, bw),
        7 => (h - bottom, w - right, bh, bw),
        8 => (top, w - right, bh, bw),
        _ => b,
    }
}

/// The inverse of [`upright_box`]: where a box of the upright image lies in the stored `w` x `h` image.
pub fn stored_box(b: (u32, u32, u32, u32), (w, h): (u32, u32), orientation: u8) -> (u32, u32, u32, u32) {
    let upright = if transposes(orientation) { (h, w) } else { (w, h) };
    upright_box(b, upright, inverse(orientation))
}

/// The orientation that turns an image back: 6 and 8 are each other's inverse, the rest their own.
pub fn inverse(orientation: u8) -> u8 {
    match orientation {
        6 => 8,
        8 => 6,
        o => o,
    }
}

/// Returns the image turned as `orientation` says (1 or unknown: unchanged).
pub fn apply(src: Pixels, orientation: u8) -> Pixels {
    if !(2..=8).contains(&orientation) {
        return src;
    }
    let (w, h) = (src.width as usize, src.height as usize);
    let (dw, dh) = if transposes(orientation) { (h, w) } else { (w, h) };
    if src.data.is_empty() {
        return Pixels::new(dw as u32, dh as u32, src.channels, src.data);
    }
    // One instance per usual channel count, so each pixel is a fixed-size copy.
    let data = match src.channels {
        1 => turn(&src.data, w, h, 1, orientation),
        3 => turn(&src.data, w, h, 3, orientation),
        4 => turn(&src.data, w, h, 4, orientation),
        c => turn(&src.data, w, h, usize::from(c), orientation),
    };
    Pixels::new(dw as u32, dh as u32, src.channels, data)
}

/// The pixels of a `w` x `h` image of `c` channels turned as `orientation` (2–8) says. Each
/// destination row walks one source row or column: pixel `x` of destination row `y` is source
/// pixel `first + x * step` (see the EXIF spec's orientation table).
#[inline(always)]
fn turn(src: &[u8], w: usize, h: usize, c: usize, orientation: u8) -> Vec<u8> {
    let dw = if transposes(orientation) { h } else { w };
    let mut out = vec![0u8; src.len()];
    let (w_i, one) = (w as isize, 1isize);
    for (y, row) in out.chunks_exact_mut(dw * c).enumerate() {
        let (first, step) = match orientation {
            2 => (y * w + w - 1, -one),
            3 => ((h - 1 - y) * w + w - 1, -one),
            4 => ((h - 1 - y) * w, one),
            5 => (y, w_i),
            6 => ((h - 1) * w + y, -w_i),
            7 => ((h - 1) * w + w - 1 - y, -w_i),
            _ => (w - 1 - y, w_i),
        };
        let mut s = first as isize;
        for d in row.chunks_exact_mut(c) {
            let i = s as usize * c;
            d.copy_from_slice(&src[i..i + c]);
            s += step;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_lands_where_its_pixels_land() {
        // Every box of every image up to 6x5, turned every way: the box's pixels, marked in the stored
        // image and turned by `apply`, are exactly the box `upright_box` names.
        for (w, h) in (1..=6).flat_map(|w| (1..=5).map(move |h| (w, h))) {
            for (left, top) in (0..w).flat_map(|l| (0..h).map(move |t| (l, t))) {
                for (bw, bh) in (1..=w - left).flat_map(|bw| (1..=h - top).map(move |bh| (bw, bh))) {
                    let marked: Vec<u8> = (0..h)
                        .flat_map(|y| (0..w).map(move |x| (x, y)))
                        .map(|(x, y)| u8::from((left..left + bw).contains(&x) && (top..top + bh).contains(&y)))
                        .collect();
                    for orientation in 1..=8 {
                        let turned = apply(Pixels::new(w, h, 1, marked.clone()), orientation);
                        let (x, y, ow, oh) = upright_box((left, top, bw, bh), (w, h), orientation);
                        let want: Vec<u8> = (0..turned.height)
                            .flat_map(|v| (0..turned.width).map(move |u| (u, v)))
                            .map(|(u, v)| u8::from((x..x + ow).contains(&u) && (y..y + oh).contains(&v)))
                            .collect();
                        assert_eq!(turned.data, want, "{w}x{h} box {left},{top} {bw}x{bh} orientation {orientation}");
                        assert_eq!(stored_box((x, y, ow, oh), (w, h), orientation), (left, top, bw, bh), "back");
                    }
                }
            }
        }
    }
    use crate::pipeline::geometry::Ratio;

    #[test]
    fn planes_turn_as_their_pixels_do() {
        // A 4:2:0 rendition turned plane by plane is the same image as its RGB turned, odd sizes
        // included, and its chroma stays half of its luma (rounded up) whichever way it turns. A
        // mirrored odd side moves its half chroma sample to the other end: planes made with it at
        // the start of each axis the orientation mirrors come out as encoders take them.
        let plane = |w: u32, h: u32, seed: u32| {
            Pixels::new(
                w,
                h,
                1,
                (0..w * h).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8).collect(),
            )
        };
        for (w, h) in [(6u32, 4u32), (5, 3), (1, 2), (7, 8), (4, 9)] {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            for o in 1..=8 {
                for early in [(false, false), (true, false), (false, true), (true, true)] {
                    let early = (early.0 && w % 2 == 1, early.1 && h % 2 == 1);
                    let planes = YccPlanes {
                        y: plane(w, h, 1),
                        cb: plane(cw, ch, 2),
                        cr: plane(cw, ch, 3),
                        chroma_scale: (Ratio::HALF, Ratio::HALF),
                        chroma_early: early,
                    };
                    let Raster::Ycc(turned) = apply_raster(Raster::Ycc(planes.clone()), o) else {
                        panic!("planes stay planes")
                    };
                    let want = if transposes(o) { (h, w) } else { (w, h) };
                    assert_eq!((turned.y.width, turned.y.height), want);
                    let (mx, my) = mirrored_axes(o);
                    let sited = early == (mx && w % 2 == 1, my && h % 2 == 1);
                    assert_eq!(turned.is_420(), sited, "{w}x{h} orientation {o} early {early:?}");
                    let rgb = Raster::Ycc(planes).into_pixels();
                    assert_eq!(Raster::Ycc(turned).into_pixels(), apply(rgb, o), "{w}x{h} orientation {o} {early:?}");
                }
            }
        }
    }

    #[test]
    fn each_orientation_puts_the_top_left_marker_top_left() {
        // Display image 3x2: values 0..6, row-major; stored = inverse transform applied.
        let display = Pixels::new(3, 2, 1, (0..6).collect());
        for o in 1..=8 {
            let stored = apply(display.clone(), inverse(o));
            assert_eq!(apply(stored, o), display, "orientation {o}");
        }
    }
}
