//! The first frame of a GIF or of an animated WebP, composited on the file's canvas. What avatar
//! tools do with an animation (imgproxy, thumbor, Cloudinary): render its first frame. The canvas
//! size is checked from the header before anything is allocated; the first frame is checked
//! before it is decoded; later frames are counted from their headers and never decoded, so a
//! 10,000-frame file costs what a one-frame file does, plus a walk over its bytes.
//!
//! The canvas starts transparent, as browsers show it (GIF's background colour index and WebP's
//! `ANIM` background colour are hints both formats let viewers ignore, and browsers do). The
//! first frame lands at its offset and is clipped to the canvas; a frame's disposal only matters
//! to the frames after it.

use super::{DecodeError, check_limits, message, webp_chunks};
use crate::pipeline::exif::exif_orientation;
use crate::pipeline::pixels::{ColourModel, Decoded, Pixels};
use imgfleet_shared::{ImageFormat, Limits};

/// A GIF's first frame on its logical screen, and how many frames it has.
pub(super) fn decode_gif(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let format = ImageFormat::Gif;
    let corrupt = |message: String| DecodeError::Corrupt { format, message };
    let screen = bytes.get(6..10).ok_or_else(|| corrupt("no logical screen descriptor".into()))?;
    let (width, height) = (u16::from_le_bytes([screen[0], screen[1]]), u16::from_le_bytes([screen[2], screen[3]]));
    check_limits(format, width.into(), height.into(), limits)?;
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let cap = limits.max_source_pixels.saturating_mul(4).max(1);
    options.set_memory_limit(gif::MemoryLimit::Bytes(cap.try_into().unwrap_or(std::num::NonZeroU64::MIN)));
    let gif_error = |e: gif::DecodingError| match e {
        gif::DecodingError::MemoryLimit | gif::DecodingError::OutOfMemory => DecodeError::TooLarge {
            format,
            width: width.into(),
            height: height.into(),
            limit: "decoder memory limit".into(),
        },
        other => corrupt(message(&other)),
    };
    let mut decoder = options.read_info(bytes).map_err(gif_error)?;
    let frame = decoder.next_frame_info().map_err(gif_error)?.ok_or_else(|| corrupt("no image in the file".into()))?;
    let rect =
        Rect { left: frame.left.into(), top: frame.top.into(), width: frame.width.into(), height: frame.height.into() };
    check_limits(format, rect.width.into(), rect.height.into(), limits)?;
    let mut first = vec![0; decoder.buffer_size()];
    decoder.read_into_buffer(&mut first).map_err(gif_error)?;
    let icc = decoder.icc_profile().map(<[u8]>::to_vec);
    let (frames, warnings) = count_gif_frames(&mut decoder);
    let canvas = composite((width.into(), height.into()), &first, 4, rect);
    Ok(still(canvas, icc, 1, warnings, frames))
}

/// Counts the frames after the first from their headers (their image data is skipped, not
/// decoded). A damaged later frame ends the count with a warning: the first frame is whole.
fn count_gif_frames<R: std::io::Read>(decoder: &mut gif::Decoder<R>) -> (u32, Vec<String>) {
    let mut frames = 1u32;
    loop {
        match decoder.next_frame_info() {
            Ok(Some(_)) => frames = frames.saturating_add(1),
            Ok(None) => return (frames, Vec::new()),
            Err(e) => return (frames, vec![format!("frames after frame {frames} could not be read: {e}")]),
        }
    }
}

/// An animated WebP's first frame on its canvas, and how many frames it has.
pub(super) fn decode_animated_webp(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let format = ImageFormat::Webp;
    let corrupt = |message: &str| DecodeError::Corrupt { format, message: message.into() };
    let le24 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]);
    let vp8x = riff_chunks(bytes).find(|(tag, _)| tag == b"VP8X").map(|(_, body)| body);
    let vp8x = vp8x.filter(|b| b.len() >= 10).ok_or_else(|| corrupt("animated WebP without a VP8X chunk"))?;
    let canvas = (le24(&vp8x[4..7]) + 1, le24(&vp8x[7..10]) + 1);
    check_limits(format, canvas.0.into(), canvas.1.into(), limits)?;
    let mut frames = riff_chunks(bytes).filter(|(tag, _)| tag == b"ANMF").map(|(_, body)| body);
    let first = frames.next().filter(|b| b.len() > 16).ok_or_else(|| corrupt("animated WebP without a frame"))?;
    let rect = Rect {
        left: 2 * le24(&first[0..3]),
        top: 2 * le24(&first[3..6]),
        width: le24(&first[6..9]) + 1,
        height: le24(&first[9..12]) + 1,
    };
    check_limits(format, rect.width.into(), rect.height.into(), limits)?;
    let image =
        webp::Decoder::new(&first[16..]).decode().ok_or_else(|| corrupt("the first frame could not be decoded"))?;
    if (image.width(), image.height()) != (rect.width, rect.height) {
        return Err(corrupt("the first frame's size disagrees with its frame header"));
    }
    let channels = if image.is_alpha() { 4 } else { 3 };
    let frames = 1 + u32::try_from(frames.count()).unwrap_or(u32::MAX - 1);
    let chunks = webp_chunks(bytes);
    let orientation = chunks.exif.map_or(1, exif_orientation);
    let icc = chunks.icc.map(<[u8]>::to_vec);
    Ok(still(composite(canvas, &image, channels, rect), icc, orientation, Vec::new(), frames))
}

/// The top-level chunks of a RIFF file after its 12-byte header: (tag, body).
fn riff_chunks(bytes: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    let mut pos = 12;
    std::iter::from_fn(move || {
        let header = bytes.get(pos..pos + 8)?;
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body = bytes.get(pos + 8..pos + 8 + len)?;
        pos += 8 + len + (len & 1);
        Some((&header[0..4], body))
    })
}

/// Where a frame lies on its canvas, in canvas pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    left: u32,
    top: u32,
    width: u32,
    height: u32,
}

/// A transparent `canvas` with `frame` (`channels` 3 or 4, `rect`-sized) laid at `rect`, clipped.
fn composite(canvas: (u32, u32), frame: &[u8], channels: usize, rect: Rect) -> Pixels {
    let (cw, ch) = (canvas.0 as usize, canvas.1 as usize);
    let mut out = vec![0u8; cw * ch * 4];
    let (left, top, fw) = (rect.left as usize, rect.top as usize, rect.width as usize);
    let rows = (rect.height as usize).min(ch.saturating_sub(top));
    let cols = fw.min(cw.saturating_sub(left));
    // A frame wholly past the canvas's right edge leaves it transparent (no row slice to take).
    let rows = if cols == 0 { 0 } else { rows };
    for y in 0..rows {
        let src = &frame[y * fw * channels..][..cols * channels];
        let dst = &mut out[((top + y) * cw + left) * 4..][..cols * 4];
        for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(channels)) {
            // A transparent pixel is transparent black, like the canvas around the frame, whatever colour
            // the palette gives its index: a lossy encoder would bleed that colour into the visible edge.
            if channels == 3 || s[3] != 0 {
                d[..3].copy_from_slice(&s[..3]);
                d[3] = if channels == 4 { s[3] } else { 255 };
            }
        }
    }
    Pixels::new(canvas.0, canvas.1, 4, out)
}

/// The canvas as a decoded still: RGB when every pixel is opaque, RGBA otherwise.
fn still(canvas: Pixels, icc: Option<Vec<u8>>, orientation: u8, warnings: Vec<String>, frames: u32) -> Decoded {
    let opaque = canvas.data.chunks_exact(4).all(|p| p[3] == 255);
    let (pixels, model) = if opaque {
        let rgb = canvas.data.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        (Pixels::new(canvas.width, canvas.height, 3, rgb), ColourModel::Rgb)
    } else {
        (canvas, ColourModel::Rgba)
    };
    Decoded { warnings, frames, ..Decoded::whole(pixels, model, icc, orientation) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::pixels::Raster;
    use std::borrow::Cow;

    const PALETTE: [u8; 12] = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]; // red, green, blue, grey

    /// A GIF with a `canvas`-sized screen and the given frames: (rect, palette indices, transparent index, interlaced).
    fn gif(canvas: (u16, u16), frames: &[(Rect, Vec<u8>, Option<u8>, bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut e = gif::Encoder::new(&mut out, canvas.0, canvas.1, &PALETTE).unwrap();
            for (rect, indices, transparent, interlaced) in frames {
                let frame = gif::Frame {
                    left: rect.left as u16,
                    top: rect.top as u16,
                    width: rect.width as u16,
                    height: rect.height as u16,
                    buffer: Cow::Borrowed(indices),
                    transparent: *transparent,
                    interlaced: *interlaced,
                    dispose: gif::DisposalMethod::Background,
                    ..gif::Frame::default()
                };
                e.write_frame(&frame).unwrap();
            }
        }
        out
    }

    fn rect(left: u32, top: u32, width: u32, height: u32) -> Rect {
        Rect { left, top, width, height }
    }

    fn pixels(d: &Decoded) -> &Pixels {
        match &d.raster {
            Raster::Pixels(p) => p,
            Raster::Ycc(_) => panic!("planes"),
        }
    }

    #[test]
    fn the_first_gif_frame_lands_at_its_offset_on_a_transparent_canvas() {
        // 10x8 screen; frame 1 is 4x3 at (2, 1): rows of red, green and index 3 (transparent).
        let rows = [0u8, 1, 3];
        let later = vec![2u8; 80];
        for interlaced in [false, true] {
            // An interlaced frame stores its rows in pass order: 0, then 2, then 1 for three rows.
            let order: &[usize] = if interlaced { &[0, 2, 1] } else { &[0, 1, 2] };
            let first: Vec<u8> = order.iter().flat_map(|&r| [rows[r]; 4]).collect();
            let bytes = gif(
                (10, 8),
                &[
                    (rect(2, 1, 4, 3), first.clone(), Some(3), interlaced),
                    (rect(0, 0, 10, 8), later.clone(), None, false),
                    (rect(0, 0, 10, 8), later.clone(), None, false),
                ],
            );
            let d = decode_gif(&bytes, &Limits::default()).unwrap();
            assert_eq!(
                (d.width, d.height, d.frames, d.model),
                (10, 8, 3, ColourModel::Rgba),
                "interlaced {interlaced}"
            );
            let p = pixels(&d);
            for y in 0..8 {
                for x in 0..10 {
                    let want: [u8; 4] = match (x, y) {
                        (2..=5, 1) => [255, 0, 0, 255],
                        (2..=5, 2) => [0, 255, 0, 255],
                        // Outside the frame, or its transparent row (whose palette colour is grey): transparent black.
                        _ => [0, 0, 0, 0],
                    };
                    assert_eq!(p.pixel(x, y), want, "({x}, {y}), interlaced {interlaced}");
                }
            }
        }
    }

    /// Every canvas up to 5x5 and every frame of 1..=6 x 1..=6 at every offset up to 6, inside,
    /// across and past the canvas edges, RGB and RGBA: each canvas pixel is the frame's pixel
    /// under it, or transparent.
    #[test]
    fn composite_places_every_frame_at_every_offset() {
        for (cw, ch) in (1..=5u32).flat_map(|w| (1..=5u32).map(move |h| (w, h))) {
            for (fw, fh, left, top) in (1..=6u32).flat_map(|w| {
                (1..=6u32).flat_map(move |h| (0..=6u32).flat_map(move |l| (0..=6u32).map(move |t| (w, h, l, t))))
            }) {
                for channels in [3usize, 4] {
                    let frame: Vec<u8> = (0..(fw * fh) as usize * channels).map(|i| (i * 7 % 251) as u8 + 1).collect();
                    let out = composite((cw, ch), &frame, channels, rect(left, top, fw, fh));
                    for (y, x) in (0..ch).flat_map(|y| (0..cw).map(move |x| (y, x))) {
                        let inside = (left..left + fw).contains(&x) && (top..top + fh).contains(&y);
                        let want = if inside {
                            let i = (((y - top) * fw + (x - left)) as usize) * channels;
                            [frame[i], frame[i + 1], frame[i + 2], if channels == 4 { frame[i + 3] } else { 255 }]
                        } else {
                            [0; 4]
                        };
                        assert_eq!(
                            out.pixel(x, y),
                            want,
                            "canvas {cw}x{ch}, frame {fw}x{fh} at ({left}, {top}), {channels} channels, ({x}, {y})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_opaque_still_gif_is_rgb_with_one_frame() {
        let bytes = gif((3, 2), &[(rect(0, 0, 3, 2), vec![0, 1, 2, 3, 0, 1], None, false)]);
        let d = decode_gif(&bytes, &Limits::default()).unwrap();
        assert_eq!((d.frames, d.model, d.warnings.len()), (1, ColourModel::Rgb, 0));
        assert_eq!(pixels(&d).pixel(2, 0), [0, 0, 255]);
        assert_eq!(pixels(&d).pixel(0, 1), [9, 9, 9]);
    }

    #[test]
    fn a_frame_past_the_screen_is_clipped() {
        let bytes = gif((4, 4), &[(rect(2, 2, 4, 4), vec![1; 16], None, false)]);
        let d = decode_gif(&bytes, &Limits::default()).unwrap();
        let p = pixels(&d);
        assert_eq!((p.width, p.height), (4, 4));
        assert_eq!(p.pixel(3, 3), [0, 255, 0, 255]);
        assert_eq!(p.pixel(1, 1)[3], 0);
    }

    #[test]
    fn bombs_are_refused_from_their_headers() {
        let limits = Limits::default();
        // A 65535x65535 screen: refused before anything is allocated.
        let mut bytes = gif((1, 1), &[(rect(0, 0, 1, 1), vec![0], None, false)]);
        bytes[6..10].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(
            matches!(decode_gif(&bytes, &limits), Err(DecodeError::TooLarge { .. })),
            "{:?}",
            decode_gif(&bytes, &limits).err()
        );
        // A small screen whose first frame claims 65535x65535.
        let mut bytes = gif((8, 8), &[(rect(0, 0, 1, 1), vec![0], None, false)]);
        let at = bytes.windows(1).position(|w| w[0] == 0x2C).unwrap(); // image descriptor
        bytes[at + 5..at + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(decode_gif(&bytes, &limits), Err(DecodeError::TooLarge { .. })));
        // No screen at all.
        assert!(matches!(decode_gif(b"GIF89a", &limits), Err(DecodeError::Corrupt { .. })));
    }

    #[test]
    fn later_frames_are_counted_not_decoded() {
        let frames: Vec<_> = (0..10_000).map(|i| (rect(0, 0, 2, 2), vec![(i % 4) as u8; 4], None, false)).collect();
        let bytes = gif((2, 2), &frames);
        let d = decode_gif(&bytes, &Limits::default()).unwrap();
        assert_eq!((d.frames, pixels(&d).pixel(0, 0)), (10_000, &[255, 0, 0][..]));
        // Cut inside the third frame: the first still renders, the count stops with a warning.
        let one = gif((2, 2), &frames[..1]).len();
        let cut = &bytes[..one + 30];
        let d = decode_gif(cut, &Limits::default()).unwrap();
        assert!(d.frames >= 2 && d.warnings.len() == 1, "{} frames, {:?}", d.frames, d.warnings);
    }

    /// An animated WebP of `canvas` with lossless frames of solid colours at their rects.
    fn animated_webp(canvas: (u32, u32), frames: &[(Rect, [u8; 3])]) -> Vec<u8> {
        let chunk = |tag: &[u8], body: &[u8]| {
            let mut c = [tag, &(body.len() as u32).to_le_bytes()[..], body].concat();
            if body.len() % 2 == 1 {
                c.push(0);
            }
            c
        };
        let le24 = |v: u32| v.to_le_bytes()[..3].to_vec();
        let mut body = b"WEBP".to_vec();
        body.extend(chunk(b"VP8X", &[&[0x02, 0, 0, 0][..], &le24(canvas.0 - 1), &le24(canvas.1 - 1)].concat()));
        body.extend(chunk(b"ANIM", &[255, 255, 255, 255, 0, 0]));
        for (r, rgb) in frames {
            let px: Vec<u8> = (0..r.width * r.height).flat_map(|_| *rgb).collect();
            let still = webp::Encoder::from_rgb(&px, r.width, r.height).encode_lossless().to_vec();
            let frame_chunks = &still[12..]; // the VP8L chunk
            let header =
                [le24(r.left / 2), le24(r.top / 2), le24(r.width - 1), le24(r.height - 1), le24(100), vec![0]].concat();
            body.extend(chunk(b"ANMF", &[&header[..], frame_chunks].concat()));
        }
        chunk(b"RIFF", &body)
    }

    #[test]
    fn the_first_webp_frame_lands_at_its_offset_and_the_rest_are_counted() {
        let bytes = animated_webp((12, 10), &[(rect(4, 2, 6, 4), [10, 200, 30]), (rect(0, 0, 12, 10), [0, 0, 255])]);
        let d = decode_animated_webp(&bytes, &Limits::default()).unwrap();
        assert_eq!((d.width, d.height, d.frames, d.model), (12, 10, 2, ColourModel::Rgba));
        let p = pixels(&d);
        assert_eq!(p.pixel(4, 2), [10, 200, 30, 255]);
        assert_eq!(p.pixel(9, 5), [10, 200, 30, 255]);
        assert_eq!(p.pixel(3, 2)[3], 0);
        assert_eq!(p.pixel(10, 6)[3], 0);
        // Through the decoder's entry point, as the pipeline calls it.
        let d = super::super::decode(&bytes, ImageFormat::Webp, &Limits::default()).unwrap();
        assert_eq!(d.frames, 2);
    }

    #[test]
    fn webp_canvas_and_frame_bombs_are_refused_before_decoding() {
        let limits = Limits::default();
        let mut bytes = animated_webp((4, 4), &[(rect(0, 0, 4, 4), [1, 2, 3])]);
        let vp8x = 12 + 8;
        bytes[vp8x + 4..vp8x + 10].copy_from_slice(&[0xFF; 6]); // 2^24 x 2^24 canvas
        assert!(matches!(decode_animated_webp(&bytes, &limits), Err(DecodeError::TooLarge { .. })));
        let mut bytes = animated_webp((4, 4), &[(rect(0, 0, 4, 4), [1, 2, 3])]);
        let anmf = bytes.windows(4).position(|w| w == b"ANMF").unwrap() + 8;
        bytes[anmf + 6..anmf + 12].copy_from_slice(&[0xFF; 6]); // a 2^24 x 2^24 frame
        assert!(matches!(decode_animated_webp(&bytes, &limits), Err(DecodeError::TooLarge { .. })));
        let no_frame = animated_webp((4, 4), &[]);
        assert!(matches!(decode_animated_webp(&no_frame, &limits), Err(DecodeError::Corrupt { .. })));
    }
}
