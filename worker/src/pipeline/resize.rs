//! Resize: a source image and a rendition box → the rendition's pixels, with fast_image_resize
//! (SIMD kernels chosen at run time; Lanczos3). Alpha is premultiplied while filtering, so
//! transparent edges get no dark fringe.

use super::decode::{Raster, YccPlanes};
use super::pixels::Pixels;
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use imgfleet_shared::Fit;

/// Where a rendition comes from in its source, and how big it ends up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub width: u32,
    pub height: u32,
    /// Crop in source pixels: left, top, width, height (fractional; centred).
    pub crop: (f64, f64, f64, f64),
}

/// Plans a rendition of a `src_w` x `src_h` image for a `box_w` x `box_h` box. Never upscales:
/// `Inside` stops at the source size, `Cover` keeps the box's aspect with the largest centred crop.
pub fn plan(src_w: u32, src_h: u32, box_w: u32, box_h: u32, fit: Fit) -> Plan {
    let (sw, sh, bw, bh) = (f64::from(src_w), f64::from(src_h), f64::from(box_w), f64::from(box_h));
    let px = |v: f64| (v.round() as u32).max(1);
    match fit {
        Fit::Inside => {
            let s = (bw / sw).min(bh / sh).min(1.0);
            Plan { width: px(sw * s).min(box_w), height: px(sh * s).min(box_h), crop: (0.0, 0.0, sw, sh) }
        }
        Fit::Cover => {
            let s = (bw / sw).max(bh / sh);
            let (cw, ch, width, height) = if s <= 1.0 {
                (bw / s, bh / s, box_w, box_h)
            } else if sw / sh > bw / bh {
                let cw = sh * bw / bh;
                (cw, sh, px(cw), src_h)
            } else {
                let ch = sw * bh / bw;
                (sw, ch, src_w, px(ch))
            };
            let (cw, ch) = (cw.min(sw), ch.min(sh));
            Plan { width, height, crop: ((sw - cw) / 2.0, (sh - ch) / 2.0, cw, ch) }
        }
    }
}

/// Why a resize failed. Only reachable through a bug (plans are always valid), but never a panic.
#[derive(Debug, thiserror::Error)]
#[error("resize failed: {0}")]
pub struct ResizeError(String);

/// Resizes the `plan.crop` region of `src` to `plan.width` x `plan.height` with Lanczos3.
pub fn resize(src: &Pixels, plan: &Plan) -> Result<Pixels, ResizeError> {
    let err = |e: &dyn std::fmt::Display| ResizeError(e.to_string());
    let pixel_type = match src.channels {
        1 => PixelType::U8,
        3 => PixelType::U8x3,
        4 => PixelType::U8x4,
        n => return Err(ResizeError(format!("{n} channels"))),
    };
    let full = plan.crop == (0.0, 0.0, f64::from(src.width), f64::from(src.height));
    if full && plan.width == src.width && plan.height == src.height {
        return Ok(src.clone());
    }
    let view = ImageRef::new(src.width, src.height, &src.data, pixel_type).map_err(|e| err(&e))?;
    let mut dst = Image::new(plan.width, plan.height, pixel_type);
    let (left, top, w, h) = plan.crop;
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)).crop(left, top, w, h);
    Resizer::new().resize(&view, &mut dst, &options).map_err(|e| err(&e))?;
    Ok(Pixels::new(plan.width, plan.height, src.channels, dst.into_vec()))
}

/// Resizes any decoded raster to an RGB(A) rendition.
pub fn resize_raster(src: &Raster, plan: &Plan) -> Result<Pixels, ResizeError> {
    match src {
        Raster::Pixels(p) => resize(p, plan),
        Raster::Ycc(planes) => resize_ycc(planes, plan),
    }
}

/// Resizes luma and both chroma planes to the rendition size (chroma crops scaled to the chroma
/// grid; JPEG chroma is centred, so the mapping is a plain scale), then converts to RGB.
fn resize_ycc(src: &YccPlanes, plan: &Plan) -> Result<Pixels, ResizeError> {
    let y = resize(&src.y, plan)?;
    let (sx, sy) = src.chroma_scale;
    let (l, t, w, h) = plan.crop;
    let chroma_plan = Plan {
        crop: (
            l * sx,
            t * sy,
            (w * sx).min(f64::from(src.cb.width) - l * sx),
            (h * sy).min(f64::from(src.cb.height) - t * sy),
        ),
        ..*plan
    };
    let cb = resize(&src.cb, &chroma_plan)?;
    let cr = resize(&src.cr, &chroma_plan)?;
    Ok(ycc_to_rgb(&y, &cb, &cr))
}

/// JFIF YCbCr (full range) → RGB, in 16.16 fixed point.
pub fn ycc_to_rgb(y: &Pixels, cb: &Pixels, cr: &Pixels) -> Pixels {
    const ONE: i32 = 1 << 16;
    let f = |v: f64| (v * f64::from(ONE)).round() as i32;
    let (cr_r, cb_g, cr_g, cb_b) = (f(1.402), f(0.344_136), f(0.714_136), f(1.772));
    let clamp = |v: i32| ((v + ONE / 2) >> 16).clamp(0, 255) as u8;
    let mut out = Vec::with_capacity(y.data.len() * 3);
    for ((&l, &b), &r) in y.data.iter().zip(&cb.data).zip(&cr.data) {
        let (l, b, r) = (i32::from(l) * ONE, i32::from(b) - 128, i32::from(r) - 128);
        out.extend([clamp(l + cr_r * r), clamp(l - cb_g * b - cr_g * r), clamp(l + cb_b * b)]);
    }
    Pixels::new(y.width, y.height, 3, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_keeps_aspect_and_never_upscales() {
        assert_eq!(
            (plan(4000, 3000, 800, 800, Fit::Inside).width, plan(4000, 3000, 800, 800, Fit::Inside).height),
            (800, 600)
        );
        let p = plan(3000, 4000, 800, 800, Fit::Inside);
        assert_eq!((p.width, p.height), (600, 800));
        let p = plan(100, 50, 800, 800, Fit::Inside);
        assert_eq!((p.width, p.height), (100, 50));
        let p = plan(10000, 10, 800, 800, Fit::Inside);
        assert_eq!((p.width, p.height), (800, 1));
    }

    #[test]
    fn cover_crops_exactly_and_centred() {
        let p = plan(4000, 3000, 400, 400, Fit::Cover);
        assert_eq!((p.width, p.height), (400, 400));
        assert_eq!(p.crop, (500.0, 0.0, 3000.0, 3000.0));
        let p = plan(3000, 4000, 150, 150, Fit::Cover);
        assert_eq!(p.crop, (0.0, 500.0, 3000.0, 3000.0));
    }

    #[test]
    fn cover_of_a_small_source_crops_without_upscaling() {
        let p = plan(100, 50, 150, 150, Fit::Cover);
        assert_eq!((p.width, p.height), (50, 50));
        assert_eq!(p.crop, (25.0, 0.0, 50.0, 50.0));
        let p = plan(1, 1, 150, 150, Fit::Cover);
        assert_eq!((p.width, p.height), (1, 1));
        let p = plan(1000, 100, 150, 150, Fit::Cover);
        assert_eq!((p.width, p.height), (100, 100));
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
