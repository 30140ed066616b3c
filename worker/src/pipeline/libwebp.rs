//! libwebp's lossy encoder (the libwebp the `webp` crate bundles), driven through its C API so a
//! picture is filled the cheapest way: RGB(A) pixels are imported straight to YUV (the `webp`
//! crate's encoder first copies every pixel into an ARGB picture and converts that, for the same
//! output), and 4:2:0 planes are copied in, mapped to WebP's range.

#![allow(unsafe_code)]

use super::pixels::{Pixels, YccPlanes};
use libwebp_sys as sys;
use std::mem::MaybeUninit;

/// What libwebp is given: RGB(A) pixels, which it converts to YUV 4:2:0 itself, or 4:2:0 planes.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Pixels(&'a Pixels),
    Planes(&'a YccPlanes),
}

/// JFIF's full-range samples on the limited range of WebP's (BT.601) YUV: luma 16–235, chroma
/// 16–240 around 128, rounded. The matrices are otherwise the same.
pub(super) const LIMITED_LUMA: [u8; 256] = limited_range(219);
pub(super) const LIMITED_CHROMA: [u8; 256] = limited_range(224);

const fn limited_range(span: i32) -> [u8; 256] {
    let (offset, centre) = if span == 219 { (16, 0) } else { (128, 128) };
    let mut lut = [0u8; 256];
    let mut v = 0;
    while v < 256 {
        let n = span * (v as i32 - centre);
        let scaled = if n >= 0 { (n + 127) / 255 } else { -((-n + 127) / 255) };
        lut[v] = (offset + scaled) as u8;
        v += 1;
    }
    lut
}

/// Encodes `input` as a lossy WebP with `config`.
pub fn encode(input: Input<'_>, config: &webp::WebPConfig) -> Result<Vec<u8>, String> {
    let (width, height) = match input {
        Input::Pixels(p) => (p.width, p.height),
        Input::Planes(p) => (p.y.width, p.y.height),
    };
    let too_large = || format!("{width}x{height} is too large");
    let stride = checked_stride(input).ok_or_else(too_large)??;
    let mut picture = sys::WebPPicture::new().map_err(|()| "libwebp picture".to_owned())?;
    picture.use_argb = 0;
    picture.colorspace = sys::WebPEncCSP::WEBP_YUV420;
    picture.width = i32::try_from(width).map_err(|_| too_large())?;
    picture.height = i32::try_from(height).map_err(|_| too_large())?;
    // SAFETY: `picture` was initialised by libwebp with `width` x `height` and owns nothing yet;
    // `checked_stride` has checked `input` against that size (see `import`).
    let imported = unsafe { import(&mut picture, input, stride) };
    let out = if imported {
        // SAFETY: `picture` holds the imported YUV(A) planes.
        unsafe { write(&mut picture, config) }
    } else {
        Err(format!("libwebp: {:?}", picture.error_code))
    };
    // SAFETY: releases what libwebp allocated for the picture; it is not used afterwards.
    unsafe { sys::WebPPictureFree(&mut picture) };
    out
}

/// The row stride of `input`'s pixels, once its layout is one libwebp can take: `None` when the
/// stride does not fit libwebp's `int`, an error for a layout it cannot take.
fn checked_stride(input: Input<'_>) -> Option<Result<i32, String>> {
    match input {
        Input::Pixels(p) => {
            let (w, h, channels) = (p.width as usize, p.height as usize, usize::from(p.channels));
            let stride = i32::try_from(w * channels).ok()?;
            if !matches!(channels, 3 | 4) || p.data.len() < w * h * channels {
                return Some(Err(format!("{channels}-channel {}x{} pixels", p.width, p.height)));
            }
            Some(Ok(stride))
        }
        Input::Planes(p) => {
            let stride = i32::try_from(p.y.width).ok()?;
            if !p.is_420() {
                return Some(Err(format!("planes {:?} {:?} {:?}", p.y, p.cb, p.cr)));
            }
            Some(Ok(stride))
        }
    }
}

/// Fills `picture`'s YUV(A) planes from `input`; false when libwebp could not allocate them.
///
/// # Safety
/// `picture` must be initialised by libwebp with `input`'s width and height and own no planes,
/// and `input` must have passed [`checked_stride`] (which returned `stride`).
unsafe fn import(picture: &mut sys::WebPPicture, input: Input<'_>, stride: i32) -> bool {
    // SAFETY: the RGB(A) imports read `height` rows of `stride` bytes from `p.data`, whose length
    // was checked, and allocate the YUV(A) planes. For planes, `WebPPictureAlloc` allocates a
    // `width` x `height` luma plane (rows `y_stride` apart) and two `ceil(width / 2)` x
    // `ceil(height / 2)` chroma planes (rows `uv_stride` apart); the copies write at most
    // `plane.height` rows of `plane.width` bytes into each, and `is_420` (checked) makes those
    // the sizes libwebp allocated.
    unsafe {
        let imported = match input {
            Input::Pixels(p) if p.channels == 4 => sys::WebPPictureImportRGBA(picture, p.data.as_ptr(), stride),
            Input::Pixels(p) => sys::WebPPictureImportRGB(picture, p.data.as_ptr(), stride),
            Input::Planes(p) => {
                let allocated = sys::WebPPictureAlloc(picture);
                if allocated != 0 {
                    let (ys, uvs) = (picture.y_stride as usize, picture.uv_stride as usize);
                    copy_plane(&p.y, picture.y, ys, &LIMITED_LUMA);
                    copy_plane(&p.cb, picture.u, uvs, &LIMITED_CHROMA);
                    copy_plane(&p.cr, picture.v, uvs, &LIMITED_CHROMA);
                }
                allocated
            }
        };
        imported != 0
    }
}

/// Copies `plane` into libwebp's plane at `dst` (rows `dst_stride` apart), mapped through `lut`.
///
/// # Safety
/// `dst` must point at `plane.height` writable rows of at least `plane.width` bytes, `dst_stride`
/// bytes apart.
unsafe fn copy_plane(plane: &Pixels, dst: *mut u8, dst_stride: usize, lut: &[u8; 256]) {
    let pw = plane.width as usize;
    for (r, src) in plane.data.chunks_exact(pw).take(plane.height as usize).enumerate() {
        // SAFETY: row `r` < `plane.height` of `pw` bytes lies inside the plane, as the caller promises.
        let row = unsafe { std::slice::from_raw_parts_mut(dst.add(r * dst_stride), pw) };
        for (d, &s) in row.iter_mut().zip(src) {
            *d = lut[usize::from(s)];
        }
    }
}

/// Encodes the filled `picture` into memory.
///
/// # Safety
/// `picture` must hold planes filled by [`import`].
unsafe fn write(picture: &mut sys::WebPPicture, config: &webp::WebPConfig) -> Result<Vec<u8>, String> {
    let mut writer = MaybeUninit::<sys::WebPMemoryWriter>::uninit();
    // SAFETY: the writer is initialised before libwebp writes into it through `custom_ptr`, which
    // points at it for the whole `WebPEncode` call and is cleared after; its buffer is copied out
    // before `WebPMemoryWriterClear` frees it. Nothing escapes this block.
    unsafe {
        sys::WebPMemoryWriterInit(writer.as_mut_ptr());
        picture.writer = Some(sys::WebPMemoryWrite);
        picture.custom_ptr = writer.as_mut_ptr().cast();
        let encoded = sys::WebPEncode(config, picture) != 0;
        picture.custom_ptr = std::ptr::null_mut();
        let writer = writer.assume_init_mut();
        let out = if encoded {
            Ok(std::slice::from_raw_parts(writer.mem, writer.size).to_vec())
        } else {
            Err(format!("libwebp: {:?}", picture.error_code))
        };
        sys::WebPMemoryWriterClear(writer);
        out
    }
}
