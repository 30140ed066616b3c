//! Orient: EXIF orientation (1–8) → the image turned the right way up.
//!
//! Renditions are resized in the stored orientation (with the box transposed for 5–8) and only the
//! small results are turned, so a 12 MP photo is never rotated at full size.

use super::decode::{Raster, YccPlanes};
use super::pixels::Pixels;

/// Reads tag 0x0112 (Orientation) from IFD0 of a TIFF-structured EXIF block (starting at `II`/`MM`).
/// Anything missing, truncated or out of range reads as 1 (as stored).
pub fn exif_orientation(tiff: &[u8]) -> u8 {
    read_orientation(tiff).filter(|o| (1..=8).contains(o)).unwrap_or(1)
}

fn read_orientation(tiff: &[u8]) -> Option<u8> {
    let tiff = tiff.strip_prefix(b"Exif\0\0").unwrap_or(tiff);
    let big_endian = match tiff.get(0..2)? {
        b"II" => false,
        b"MM" => true,
        _ => return None,
    };
    let u16_at = |i: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(i..i + 2)?.try_into().ok()?;
        Some(if big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(i..i + 4)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = u32_at(4)? as usize;
    let count = usize::from(u16_at(ifd)?);
    (0..count.min(512)).find_map(|n| {
        let entry = ifd + 2 + n * 12;
        (u16_at(entry)? == 0x0112).then(|| u16_at(entry + 8).map(|v| v.min(255) as u8)).flatten()
    })
}

/// True when the orientation swaps width and height (5–8).
pub const fn transposes(orientation: u8) -> bool {
    matches!(orientation, 5..=8)
}

/// [`apply`] for a rendition of either kind: YCbCr planes are turned one by one (a 4:2:0
/// rendition's chroma stays half of its luma, whichever way it turns).
pub fn apply_raster(src: Raster, orientation: u8) -> Raster {
    match src {
        Raster::Pixels(p) => Raster::Pixels(apply(p, orientation)),
        Raster::Ycc(YccPlanes { y, cb, cr, chroma_scale: (sx, sy) }) => Raster::Ycc(YccPlanes {
            y: apply(y, orientation),
            cb: apply(cb, orientation),
            cr: apply(cr, orientation),
            chroma_scale: if transposes(orientation) { (sy, sx) } else { (sx, sy) },
        }),
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
    use crate::pipeline::geometry::Ratio;

    fn tiff(big_endian: bool, orientation: u16) -> Vec<u8> {
        let mut t = Vec::new();
        let p16 = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let p32 = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        t.extend_from_slice(if big_endian { b"MM" } else { b"II" });
        t.extend_from_slice(&p16(42));
        t.extend_from_slice(&p32(8));
        t.extend_from_slice(&p16(2));
        for (tag, value) in [(0x010F_u16, 0_u16), (0x0112, orientation)] {
            t.extend_from_slice(&p16(tag));
            t.extend_from_slice(&p16(3));
            t.extend_from_slice(&p32(1));
            t.extend_from_slice(&p16(value));
            t.extend_from_slice(&[0, 0]);
        }
        t.extend_from_slice(&p32(0));
        t
    }

    #[test]
    fn reads_orientation_in_both_byte_orders() {
        for o in 1..=8 {
            assert_eq!(exif_orientation(&tiff(false, o)), o as u8);
            assert_eq!(exif_orientation(&tiff(true, o)), o as u8);
        }
    }

    #[test]
    fn bad_exif_reads_as_one() {
        assert_eq!(exif_orientation(&tiff(false, 9)), 1);
        assert_eq!(exif_orientation(&tiff(false, 0)), 1);
        assert_eq!(exif_orientation(b"II*\0\xff\xff\xff\xff"), 1);
        assert_eq!(exif_orientation(b""), 1);
        let t = tiff(true, 6);
        for cut in 0..t.len() {
            assert!(exif_orientation(&t[..cut]) <= 8);
        }
    }

    #[test]
    fn planes_turn_as_their_pixels_do() {
        // A 4:2:0 rendition turned plane by plane is the same image as its RGB turned, and its chroma
        // stays half of its luma (rounded up) whichever way it turns, odd sizes included.
        let plane = |w: u32, h: u32, seed: u32| {
            Pixels::new(
                w,
                h,
                1,
                (0..w * h).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8).collect(),
            )
        };
        for (w, h) in [(6u32, 4u32), (5, 3), (1, 2)] {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let planes = YccPlanes {
                y: plane(w, h, 1),
                cb: plane(cw, ch, 2),
                cr: plane(cw, ch, 3),
                chroma_scale: (Ratio::HALF, Ratio::HALF),
            };
            for o in 1..=8 {
                let Raster::Ycc(turned) = apply_raster(Raster::Ycc(planes.clone()), o) else {
                    panic!("planes stay planes")
                };
                assert!(turned.is_420(), "{w}x{h} orientation {o}");
                let want = if transposes(o) { (h, w) } else { (w, h) };
                assert_eq!((turned.y.width, turned.y.height), want);
                if w % 2 == 0 && h % 2 == 0 {
                    let rgb = Raster::Ycc(planes.clone()).into_pixels();
                    assert_eq!(Raster::Ycc(turned).into_pixels(), apply(rgb, o), "{w}x{h} orientation {o}");
                }
            }
        }
    }

    #[test]
    fn each_orientation_puts_the_top_left_marker_top_left() {
        // Display image 3x2: values 0..6, row-major; stored = inverse transform applied.
        let display = Pixels::new(3, 2, 1, (0..6).collect());
        let inverse = |o: u8| match o {
            6 => 8,
            8 => 6,
            o => o,
        };
        for o in 1..=8 {
            let stored = apply(display.clone(), inverse(o));
            assert_eq!(apply(stored, o), display, "orientation {o}");
        }
    }
}
