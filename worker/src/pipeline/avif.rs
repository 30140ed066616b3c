//! AVIF renditions: libaom's AV1 encoder in libheif's AVIF container (the `heic` feature's libheif,
//! built with Debian's libaom). 8-bit, 4:2:0, full-range BT.601 YCbCr with an sRGB `nclx` colour box;
//! alpha as an auxiliary image. No EXIF, XMP or ICC is written.
//!
//! The 4:2:0 planes of a JPEG (full-range BT.601, as AVIF's `nclx` describes them) go in as they are;
//! RGB(A) pixels are converted by libheif. `quality` (1–100) is passed to libheif as it is, as sharp and
//! libvips pass theirs; `effort` (0–9, higher is smaller and slower) is libaom's `cpu-used` 9 − effort,
//! as in sharp. One thread per encode: the fleet runs jobs side by side, as for every other encoder.

use super::pixels::{Pixels, YccPlanes};
use libheif_rs::{
    Channel, Chroma, ColorProfileNCLX, ColorSpace, CompressionFormat, EncoderParameterValue, EncoderQuality,
    EncodingOptions, HeifContext, Image, RgbChroma,
};

/// What the encoder is given: RGB(A) pixels or 4:2:0 planes.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Pixels(&'a Pixels),
    Planes(&'a YccPlanes),
}

/// Encodes `input` as an AVIF at `quality` (1–100) and `effort` (0–9).
pub fn encode(input: Input<'_>, quality: u8, effort: u8) -> Result<Vec<u8>, String> {
    let mut image = match input {
        Input::Pixels(p) => from_pixels(p)?,
        Input::Planes(p) => from_planes(p)?,
    };
    // libheif's new nclx is sRGB's: BT.709 primaries, sRGB transfer, BT.601 matrix, full range; set, it is
    // written as the `colr` box (the planes above are full-range BT.601, and libheif converts RGB to it).
    let srgb = ColorProfileNCLX::new().ok_or("libheif nclx profile")?;
    image.set_color_profile_nclx(&srgb).map_err(|e| e.to_string())?;
    let lib = super::decode::libheif();
    let mut encoder = lib.encoder_for_format(CompressionFormat::Av1).map_err(|e| format!("no AV1 encoder: {e}"))?;
    encoder.set_quality(EncoderQuality::Lossy(quality.clamp(1, 100))).map_err(|e| e.to_string())?;
    let set = |name: &str, value| encoder.set_parameter_value(name, value).map_err(|e| format!("{name}: {e}"));
    set("speed", EncoderParameterValue::Int(9 - i32::from(effort.min(9))))?;
    set("threads", EncoderParameterValue::Int(1))?;
    set("chroma", EncoderParameterValue::String("420".into()))?;
    // libaom 3.12 and later tune for still images ("iq", as sharp does); libheif refuses the value with older ones.
    let _ = encoder.set_parameter_value("tune", EncoderParameterValue::String("iq".into()));
    let mut ctx = HeifContext::new().map_err(|e| e.to_string())?;
    // Given options (even the defaults), libheif writes the image's nclx as the `colr` box; given none, it
    // writes no `colr` at all.
    let options = EncodingOptions::new().map_err(|e| e.to_string())?;
    ctx.encode_image(&image, &mut encoder, Some(options)).map_err(|e| e.to_string())?;
    ctx.write_to_bytes().map_err(|e| e.to_string())
}

/// Whether this build can write AVIF: libheif was built with an AV1 encoder.
pub fn available() -> bool {
    super::decode::libheif().encoder_for_format(CompressionFormat::Av1).is_ok()
}

fn from_pixels(p: &Pixels) -> Result<Image, String> {
    let alpha = p.channels == 4 && !p.is_opaque();
    let rgb;
    let (chroma, channels, data) = match p.channels {
        4 if alpha => (RgbChroma::Rgba, 4, &p.data[..]),
        3 | 4 => {
            rgb = p.flatten([0, 0, 0]);
            (RgbChroma::Rgb, 3, &rgb[..])
        }
        n => return Err(format!("expected RGB or RGBA pixels, got {n} channel(s)")),
    };
    let mut image = Image::new(p.width, p.height, ColorSpace::Rgb(chroma)).map_err(|e| e.to_string())?;
    image.create_plane(Channel::Interleaved, p.width, p.height, 8).map_err(|e| e.to_string())?;
    {
        let mut planes = image.planes_mut();
        let plane = planes.interleaved.as_mut().ok_or("libheif made no interleaved plane")?;
        copy_rows(data, p.width as usize * channels, plane.data, plane.stride, p.height as usize);
    }
    Ok(image)
}

fn from_planes(p: &YccPlanes) -> Result<Image, String> {
    let (w, h) = (p.y.width, p.y.height);
    let mut image = Image::new(w, h, ColorSpace::YCbCr(Chroma::C420)).map_err(|e| e.to_string())?;
    for (channel, plane) in [(Channel::Y, &p.y), (Channel::Cb, &p.cb), (Channel::Cr, &p.cr)] {
        image.create_plane(channel, plane.width, plane.height, 8).map_err(|e| e.to_string())?;
    }
    {
        let mut planes = image.planes_mut();
        for (target, plane) in [(&mut planes.y, &p.y), (&mut planes.cb, &p.cb), (&mut planes.cr, &p.cr)] {
            let target = target.as_mut().ok_or("libheif made no YCbCr plane")?;
            copy_rows(&plane.data, plane.width as usize, target.data, target.stride, plane.height as usize);
        }
    }
    Ok(image)
}

/// Copies `rows` rows of `row` bytes from a packed buffer into one with `stride` bytes per row.
fn copy_rows(from: &[u8], row: usize, to: &mut [u8], stride: usize, rows: usize) {
    for (src, dst) in from.chunks_exact(row).zip(to.chunks_mut(stride)).take(rows) {
        dst[..row].copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::decode::decode;
    use crate::pipeline::encode::tests::psnr;
    use crate::pipeline::pixels::Raster;
    use imgfleet_shared::{ImageFormat, Limits};

    /// A smooth scene with some detail: what a rendition looks like to an encoder.
    fn scene(w: u32, h: u32, channels: usize) -> Pixels {
        let mut data = Vec::with_capacity(w as usize * h as usize * channels);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (f64::from(x) / f64::from(w.max(2) - 1), f64::from(y) / f64::from(h.max(2) - 1));
                let ripple = ((fx * 9.0).sin() * (fy * 7.0).cos() * 40.0) as i32;
                let px = [(60.0 + 150.0 * fx) as i32 + ripple, (200.0 - 120.0 * fy) as i32, (90 + ripple / 2)];
                data.extend(px.iter().map(|&v| v.clamp(0, 255) as u8));
                if channels == 4 {
                    data.push((255.0 * fx) as u8);
                }
            }
        }
        Pixels::new(w, h, channels as u8, data)
    }

    /// The boxes of an ISOBMFF byte range: (type, payload).
    fn boxes(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while data.len() >= 8 {
            let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
            assert!((8..=data.len()).contains(&size), "box size {size} of {}", data.len());
            out.push((data[4..8].try_into().unwrap(), &data[8..size]));
            data = &data[size..];
        }
        assert!(data.is_empty(), "trailing bytes");
        out
    }

    fn find<'a>(list: &[([u8; 4], &'a [u8])], name: &[u8; 4]) -> Vec<&'a [u8]> {
        list.iter().filter(|b| &b.0 == name).map(|b| b.1).collect()
    }

    /// The item types the file's `meta` lists, and its `colr` properties.
    fn items_and_colours(avif: &[u8]) -> (Vec<[u8; 4]>, Vec<Vec<u8>>) {
        let top = boxes(avif);
        assert_eq!(find(&top, b"ftyp")[0][..4], *b"avif", "major brand");
        let meta = boxes(&find(&top, b"meta")[0][4..]);
        let iinf = find(&meta, b"iinf")[0];
        let skip = if iinf[0] == 0 { 6 } else { 8 };
        let items = boxes(&iinf[skip..])
            .into_iter()
            .map(|(name, infe)| {
                assert_eq!(&name, b"infe");
                let at = if infe[0] >= 3 { 10 } else { 8 };
                infe[at..at + 4].try_into().unwrap()
            })
            .collect();
        let ipco = boxes(find(&boxes(find(&meta, b"iprp")[0]), b"ipco")[0]);
        let colours = find(&ipco, b"colr").into_iter().map(<[u8]>::to_vec).collect();
        (items, colours)
    }

    #[test]
    fn rgb_decodes_back_close_at_its_size_with_an_srgb_nclx_and_nothing_else() {
        let src = scene(96, 64, 3);
        let avif = encode(Input::Pixels(&src), 80, 6).unwrap();
        let (items, colours) = items_and_colours(&avif);
        assert_eq!(items, [*b"av01"], "one AV1 image item: no Exif, XMP (mime) or alpha item");
        // nclx: BT.709 primaries, sRGB transfer, BT.601 matrix, full range; no ICC (prof/rICC).
        assert_eq!(colours, [[b"nclx".as_slice(), &[0, 1, 0, 13, 0, 6, 0x80]].concat()]);
        let back = decode(&avif, ImageFormat::Avif, &Limits::default()).unwrap();
        assert_eq!((back.width, back.height, back.icc.is_some()), (96, 64, false));
        let back = back.raster.into_pixels();
        assert_eq!(back.channels, 3);
        let db = psnr(&back.data, &src.data);
        assert!(db > 32.0, "{db:.1} dB");
    }

    #[test]
    fn alpha_is_kept_as_an_auxiliary_image_and_opaque_alpha_is_dropped() {
        let src = scene(40, 30, 4);
        let avif = encode(Input::Pixels(&src), 90, 6).unwrap();
        assert_eq!(items_and_colours(&avif).0, [*b"av01", *b"av01"], "colour and alpha");
        let back = decode(&avif, ImageFormat::Avif, &Limits::default()).unwrap().raster.into_pixels();
        assert_eq!(back.channels, 4);
        let alpha = |p: &Pixels| p.data.chunks_exact(4).map(|p| p[3]).collect::<Vec<_>>();
        let db = psnr(&alpha(&back), &alpha(&src));
        assert!(db > 35.0, "alpha {db:.1} dB");

        let mut opaque = src.clone();
        opaque.data.chunks_exact_mut(4).for_each(|p| p[3] = 255);
        let avif = encode(Input::Pixels(&opaque), 90, 6).unwrap();
        assert_eq!(items_and_colours(&avif).0, [*b"av01"], "no alpha image for opaque pixels");
    }

    #[test]
    fn planes_go_in_as_they_are() {
        // A JPEG's 4:2:0 planes against the same picture as RGB: the same image comes back either way.
        let src = scene(80, 60, 3);
        let mut jpeg = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut jpeg, 95);
        e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
        e.encode(&src.data, 80, 60, jpeg_encoder::ColorType::Rgb).unwrap();
        let Raster::Ycc(planes) = decode(&jpeg, ImageFormat::Jpeg, &Limits::default()).unwrap().raster else {
            panic!("a baseline JPEG decodes to planes")
        };
        let rgb = planes.to_rgb();
        let avif_back =
            |avif: Vec<u8>| decode(&avif, ImageFormat::Avif, &Limits::default()).unwrap().raster.into_pixels();
        let from_planes = avif_back(encode(Input::Planes(&planes), 90, 6).unwrap());
        let from_rgb = avif_back(encode(Input::Pixels(&rgb), 90, 6).unwrap());
        let (a, b) = (psnr(&from_planes.data, &rgb.data), psnr(&from_rgb.data, &rgb.data));
        assert!(a > 34.0 && b > 34.0, "planes {a:.1} dB, rgb {b:.1} dB");
        assert!(a > b - 1.0, "no colour shift through the planes: {a:.1} against {b:.1} dB");
    }

    #[test]
    fn every_small_size_and_layout_encodes_at_its_size() {
        for (w, h) in (1..=9).flat_map(|w| (1..=9).map(move |h| (w, h))).chain([(1, 300), (300, 1), (257, 131)]) {
            for channels in [3, 4] {
                let src = scene(w, h, channels);
                let avif = encode(Input::Pixels(&src), 60, 9).unwrap_or_else(|e| panic!("{w}x{h}x{channels}: {e}"));
                let back = decode(&avif, ImageFormat::Avif, &Limits::default()).unwrap();
                assert_eq!((back.width, back.height), (w, h), "{w}x{h}x{channels}");
            }
        }
    }

    #[test]
    fn quality_and_effort_trade_bytes() {
        let src = scene(200, 150, 3);
        let size = |q, e| encode(Input::Pixels(&src), q, e).unwrap().len();
        assert!(size(30, 6) < size(60, 6) && size(60, 6) < size(90, 6), "quality");
        let small = scene(32, 24, 3);
        for effort in 0..=9 {
            let avif = encode(Input::Pixels(&small), 60, effort).unwrap();
            let back = decode(&avif, ImageFormat::Avif, &Limits::default()).unwrap();
            assert_eq!((back.width, back.height), (32, 24), "effort {effort}");
        }
    }
}
