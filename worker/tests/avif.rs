//! AVIF renditions through the whole pipeline, decoded by a decoder independent of the libheif that wrote
//! them: libavif's `avifdec` (Debian's libavif-bin, which scripts/heic-deps.sh installs), at the right size,
//! upright, with the picture the JPEG rendition of the same pixels shows, and alpha kept.
#![cfg(feature = "heic")]

mod common;

use common::*;
use imgfleet_shared::{ImageFormat, OutputSpec, Preset};
use imgfleet_worker::pipeline::{RenderOptions, Rendered, decode, render};
use std::process::Command;

/// The built-in preset with every rendition also as AVIF (quality 60, effort 6: fast for a test).
fn with_avif() -> Preset {
    let mut p = Preset::default_profile();
    for r in &mut p.renditions {
        r.formats.push(OutputSpec { effort: Some(6), ..OutputSpec::new(ImageFormat::Avif, 60) });
    }
    p
}

/// Decodes an AVIF with `avifdec` to (width, height, channels, pixels).
fn avifdec(avif: &[u8]) -> (u32, u32, u8, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.avif"), dir.path().join("out.png"));
    std::fs::write(&input, avif).unwrap();
    let status = Command::new("avifdec").arg(&input).arg(&output).output().unwrap_or_else(|e| {
        panic!(
            "avifdec (Debian's libavif-bin) is needed to check AVIF renditions; scripts/heic-deps.sh installs it: {e}"
        )
    });
    assert!(status.status.success(), "avifdec: {}", String::from_utf8_lossy(&status.stderr));
    decode_rgb_png(&std::fs::read(output).unwrap())
}

fn output<'a>(r: &'a Rendered, name: &str, format: ImageFormat) -> &'a imgfleet_worker::pipeline::Output {
    r.outputs.iter().find(|o| o.name == name && o.format == format).unwrap()
}

#[test]
fn avif_renditions_decode_with_avifdec_upright_at_their_size_as_the_jpeg_ones_look() {
    let preset = with_avif();
    // A photo-like 900x600 JPEG, stored as it is and stored turned with EXIF orientation 6 (upright 600x900).
    let upright = photo_rgb(900, 600);
    let plain = jpeg_of(&upright, 900, 600, jpeg_encoder::ColorType::Rgb);
    let turned = {
        let (w, h) = (900usize, 600usize);
        // Stored = upright turned 90° anticlockwise; orientation 6 turns it back clockwise.
        let mut stored = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = (y, w - 1 - x);
                stored[(sy * h + sx) * 3..][..3].copy_from_slice(&upright[(y * w + x) * 3..][..3]);
            }
        }
        with_exif(&jpeg_of(&stored, 600, 900, jpeg_encoder::ColorType::Rgb), 6, true)
    };
    let plain = render(&plain, &preset, &RenderOptions::default()).unwrap();
    let turned = render(&turned, &preset, &RenderOptions::default()).unwrap();
    for r in [&plain, &turned] {
        assert_eq!(r.outputs.len(), 9);
        for name in ["thumb", "medium", "large"] {
            let (jpeg, avif) = (output(r, name, ImageFormat::Jpeg), output(r, name, ImageFormat::Avif));
            let info = r.result.renditions.iter().find(|i| i.name == name && i.format == ImageFormat::Avif).unwrap();
            assert_eq!((info.content_type.as_str(), info.bytes), ("image/avif", avif.data.len() as u64));
            assert_eq!((avif.width, avif.height), (jpeg.width, jpeg.height), "{name}");
            let (w, h, channels, pixels) = avifdec(&avif.data);
            assert_eq!((w, h, channels), (avif.width, avif.height, 3), "{name}: avifdec's size, no alpha");
            let (_, _, jpeg_pixels) = decode_jpeg(&jpeg.data);
            let db = psnr(&pixels, &jpeg_pixels);
            assert!(db > 30.0, "{name}: avifdec's picture against the JPEG rendition's: {db:.1} dB");
            // Our own decoder (libheif, dav1d) reads the same picture.
            let ours = decode::decode(&avif.data, ImageFormat::Avif, &Default::default()).unwrap().raster.into_pixels();
            let db = psnr(&pixels, &ours.data);
            assert!(db > 40.0, "{name}: avifdec against libheif: {db:.1} dB");
        }
    }
    // Turned upright by its EXIF orientation, the turned source gives the plain one's picture.
    let (a, b) = (output(&plain, "large", ImageFormat::Avif), output(&turned, "large", ImageFormat::Avif));
    assert_eq!([(a.width, a.height), (b.width, b.height)], [(800, 533); 2]);
    let (a, b) = (avifdec(&a.data).3, avifdec(&b.data).3);
    let db = psnr(&a, &b);
    assert!(db > 30.0, "the turned source's picture against the plain one's: {db:.1} dB");
    let mirrored: Vec<u8> =
        b.chunks_exact(800 * 3).flat_map(|row| row.chunks_exact(3).rev().flatten().copied()).collect();
    let db_mirrored = psnr(&a, &mirrored);
    assert!(db_mirrored < db - 10.0, "the check tells a mirror apart: {db_mirrored:.1} against {db:.1} dB");
}

#[test]
fn avif_keeps_alpha_as_the_webp_does() {
    // 300x200 RGBA: a gradient whose alpha falls from opaque at the left to clear at the right.
    let (w, h) = (300u32, 200u32);
    let rgb = photo_rgb(w, h);
    let rgba: Vec<u8> = rgb
        .chunks_exact(3)
        .enumerate()
        .flat_map(|(i, p)| [p[0], p[1], p[2], (255 - (i as u32 % w) * 255 / (w - 1)) as u8])
        .collect();
    let png = png_of(&rgba, w, h, png::ColorType::Rgba, png::BitDepth::Eight, None);
    let r = render(&png, &with_avif(), &RenderOptions::default()).unwrap();
    for name in ["thumb", "medium", "large"] {
        let (_, _, webp_channels, webp) = decode_webp(&output(&r, name, ImageFormat::Webp).data);
        let (_, _, channels, avif) = avifdec(&output(&r, name, ImageFormat::Avif).data);
        assert_eq!((channels, webp_channels), (4, 4), "{name}");
        let alpha = |px: &[u8]| px.chunks_exact(4).map(|p| p[3]).collect::<Vec<_>>();
        let db = psnr(&alpha(&avif), &alpha(&webp));
        assert!(db > 35.0, "{name}: alpha against the WebP's: {db:.1} dB");
    }
}
