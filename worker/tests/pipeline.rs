//! The rendition pipeline on generated inputs: sizes, orientation, colour, alpha, metadata and bad input.

mod common;

use base64::Engine as _;
use common::*;
use imgfleet_shared::{CropMode, ErrorKind, Fit, ImageFormat, OutputSpec, Preset, RenditionSpec};
use imgfleet_worker::pipeline::pixels::Pixels;
use imgfleet_worker::pipeline::{self, RenderOptions, Rendered, geometry, render, resize, shrink};
use jpeg_encoder::ColorType;

/// The built-in preset with centred crops: what these tests compare geometry and pixels against.
fn centred() -> Preset {
    Preset::default_profile().with_crop(CropMode::Centre)
}

fn run(bytes: &[u8]) -> Rendered {
    render(bytes, &centred(), &RenderOptions::default()).expect("renders")
}

/// Every output decodes to its declared size and format, and the result lists each one.
fn check_outputs(r: &Rendered) {
    assert_eq!(r.outputs.len(), 6);
    assert_eq!(r.result.renditions.len(), 6);
    for (o, info) in r.outputs.iter().zip(&r.result.renditions) {
        assert_eq!(
            (o.name.as_str(), o.format, o.width, o.height),
            (info.name.as_str(), info.format, info.width, info.height)
        );
        assert_eq!(info.bytes, o.data.len() as u64);
        assert_eq!(info.content_type, o.format.content_type());
        let (w, h) = match o.format {
            ImageFormat::Jpeg => {
                assert_eq!(&o.data[..3], &[0xFF, 0xD8, 0xFF]);
                let (w, h, _) = decode_jpeg(&o.data);
                (w, h)
            }
            ImageFormat::Webp => {
                assert_eq!(&o.data[8..12], b"WEBP");
                let (w, h, _, _) = decode_webp(&o.data);
                (w, h)
            }
            ImageFormat::Png | ImageFormat::Gif | ImageFormat::Heic | ImageFormat::Avif => {
                unreachable!("no PNG or GIF outputs")
            }
        };
        assert_eq!((w, h), (o.width, o.height), "{} {:?}", o.name, o.format);
    }
    assert!(!r.result.placeholder.is_empty());
}

fn sizes(r: &Rendered) -> Vec<(String, u32, u32)> {
    r.outputs.iter().filter(|o| o.format == ImageFormat::Jpeg).map(|o| (o.name.clone(), o.width, o.height)).collect()
}

fn s(name: &str, w: u32, h: u32) -> (String, u32, u32) {
    (name.to_owned(), w, h)
}

#[test]
fn rendition_sizes_for_every_shape() {
    let cases = [
        ((1600, 1200), [s("thumb", 150, 150), s("medium", 400, 400), s("large", 800, 600)]),
        ((1200, 1600), [s("thumb", 150, 150), s("medium", 400, 400), s("large", 600, 800)]),
        ((1000, 1000), [s("thumb", 150, 150), s("medium", 400, 400), s("large", 800, 800)]),
        ((500, 300), [s("thumb", 150, 150), s("medium", 300, 300), s("large", 500, 300)]),
        ((10, 10), [s("thumb", 10, 10), s("medium", 10, 10), s("large", 10, 10)]),
        ((1, 1), [s("thumb", 1, 1), s("medium", 1, 1), s("large", 1, 1)]),
        ((3000, 40), [s("thumb", 40, 40), s("medium", 40, 40), s("large", 800, 11)]),
        ((40, 3000), [s("thumb", 40, 40), s("medium", 40, 40), s("large", 11, 800)]),
        ((4000, 1), [s("thumb", 1, 1), s("medium", 1, 1), s("large", 800, 1)]),
    ];
    for ((w, h), expected) in cases {
        let r = run(&jpeg(w, h));
        check_outputs(&r);
        assert_eq!(sizes(&r), expected, "{w}x{h}");
        assert_eq!((r.result.source.width, r.result.source.height), (w, h));
        assert_eq!(r.result.source.format, ImageFormat::Jpeg);
    }
}

/// Quadrant colours of the upright image: top-left, top-right, bottom-left, bottom-right.
const QUADRANTS: [[u8; 3]; 4] = [[220, 30, 30], [30, 200, 30], [30, 30, 220], [240, 240, 240]];

/// Builds the stored image for `orientation` straight from the EXIF table (where the stored
/// 0th row and 0th column belong), independent of the code under test.
fn stored_for(orientation: u8, w: u32, h: u32) -> (u32, u32, Vec<u8>) {
    // Which upright quadrant each stored corner shows: [stored TL, TR, BL, BR] as indexes into QUADRANTS.
    let corners: [usize; 4] = match orientation {
        1 => [0, 1, 2, 3],
        2 => [1, 0, 3, 2],
        3 => [3, 2, 1, 0],
        4 => [2, 3, 0, 1],
        5 => [0, 2, 1, 3],
        6 => [1, 3, 0, 2],
        7 => [3, 1, 2, 0],
        _ => [2, 0, 3, 1],
    };
    let (sw, sh) = if orientation >= 5 { (h, w) } else { (w, h) };
    let mut data = Vec::new();
    for y in 0..sh {
        for x in 0..sw {
            let q = usize::from(y >= sh / 2) * 2 + usize::from(x >= sw / 2);
            data.extend(QUADRANTS[corners[q]]);
        }
    }
    (sw, sh, data)
}

/// [`stored_for`] as a JPEG tagged with `orientation`.
fn stored_jpeg(orientation: u8, w: u32, h: u32) -> Vec<u8> {
    let (sw, sh, data) = stored_for(orientation, w, h);
    with_exif(&jpeg_of(&data, sw, sh, ColorType::Rgb), u16::from(orientation), false)
}

#[test]
fn all_eight_exif_orientations_come_out_upright() {
    let (w, h) = (96, 64);
    for orientation in 1..=8u8 {
        let r = run(&stored_jpeg(orientation, w, h));
        check_outputs(&r);
        assert_eq!(r.result.source.orientation, orientation);
        let large = r.outputs.iter().find(|o| o.name == "large" && o.format == ImageFormat::Jpeg).unwrap();
        let (lw, lh, px) = decode_jpeg(&large.data);
        assert_eq!((lw, lh), (w, h), "orientation {orientation}");
        for (q, want) in QUADRANTS.iter().enumerate() {
            let (x, y) = (if q % 2 == 0 { w / 4 } else { 3 * w / 4 }, if q < 2 { h / 4 } else { 3 * h / 4 });
            let i = ((y * w + x) * 3) as usize;
            let got = &px[i..i + 3];
            let close = got.iter().zip(want).all(|(&a, &b)| a.abs_diff(b) < 40);
            assert!(close, "orientation {orientation} quadrant {q}: got {got:?}, want {want:?}");
        }
        // The cropped renditions are upright too: thumb's top-left is the top-left colour.
        let thumb = r.outputs.iter().find(|o| o.name == "thumb" && o.format == ImageFormat::Webp).unwrap();
        let (tw, _, c, tpx) = decode_webp(&thumb.data);
        let i = ((10 * tw + 10) * u32::from(c)) as usize;
        assert!(
            tpx[i..i + 3].iter().zip(&QUADRANTS[0]).all(|(&a, &b)| a.abs_diff(b) < 40),
            "orientation {orientation} thumb"
        );
    }
}

/// The placeholder is a ThumbHash of the upright image: decoded, it has the image's aspect ratio and
/// each quadrant's colour where the upright image has it, for every EXIF orientation.
#[test]
fn placeholder_decodes_to_the_upright_image() {
    let (w, h) = (400, 300);
    for orientation in 1..=8u8 {
        let r = run(&stored_jpeg(orientation, w, h));
        let hash = base64::engine::general_purpose::STANDARD.decode(&r.result.placeholder).expect("base64");
        let aspect = thumbhash::thumb_hash_to_approximate_aspect_ratio(&hash).expect("a ThumbHash");
        assert!((aspect - 4.0 / 3.0).abs() < 0.2, "orientation {orientation}: aspect {aspect}");
        let (pw, ph, px) = thumbhash::thumb_hash_to_rgba(&hash).expect("a ThumbHash");
        for (q, want) in QUADRANTS.iter().enumerate() {
            let (x, y) = (if q % 2 == 0 { pw / 5 } else { 4 * pw / 5 }, if q < 2 { ph / 5 } else { 4 * ph / 5 });
            let got = &px[(y * pw + x) * 4..][..3];
            // Blurred, but each quadrant's strongest channel (all of them for white) stays its own.
            let close = got.iter().zip(want).all(|(&a, &b)| a.abs_diff(b) < 90);
            assert!(close, "orientation {orientation} quadrant {q}: got {got:?}, want {want:?}");
        }
    }
}

fn centre_rgb(r: &Rendered, name: &str) -> [u8; 3] {
    let o = r.outputs.iter().find(|o| o.name == name && o.format == ImageFormat::Jpeg).unwrap();
    let (w, h, px) = decode_jpeg(&o.data);
    let i = (((h / 2) * w + w / 2) * 3) as usize;
    [px[i], px[i + 1], px[i + 2]]
}

fn near(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(&b).all(|(&x, &y)| x.abs_diff(y) <= tol)
}

#[test]
fn cmyk_and_ycck_jpegs_have_correct_colours() {
    // Ink values (0 = no ink), as a press file holds them; the encoder writes Adobe-inverted data.
    let inks: [([u8; 4], [u8; 3]); 4] = [
        ([255, 0, 0, 0], [0, 255, 255]), // cyan
        ([0, 255, 255, 0], [255, 0, 0]), // red
        ([0, 0, 0, 255], [0, 0, 0]),     // black
        ([0, 0, 0, 0], [255, 255, 255]), // paper
    ];
    for color in [ColorType::Cmyk, ColorType::CmykAsYcck] {
        for (ink, rgb) in inks {
            let data: Vec<u8> = (0..64 * 48).flat_map(|_| ink).collect();
            let r = run(&jpeg_of(&data, 64, 48, color));
            check_outputs(&r);
            let got = centre_rgb(&r, "large");
            assert!(near(got, rgb, 12), "{color:?} ink {ink:?}: got {got:?}, want {rgb:?}");
        }
    }
}

/// A CMYK output profile (lut16 A2B0 to Lab, 2 grid points per ink) that renders each ink far from what
/// the naive inverted-CMYK formula gives: cyan ink alone comes out red, magenta green, yellow blue.
fn cmyk_press_profile() -> Vec<u8> {
    use moxcms::{ColorProfile, DataColorSpace, LutDataType, LutStore, LutType, LutWarehouse, Matrix3d, ProfileClass};
    // Legacy (v2) 16-bit Lab, as lut16 holds it: L* 0..100 -> 0..0xFF00, a*, b* -128..127 -> 0..0xFFFF.
    let lab = |l: f64, a: f64, b: f64| {
        [
            (l.clamp(0.0, 100.0) * 652.8).round() as u16,
            ((a + 128.0) * 256.0).round() as u16,
            ((b + 128.0) * 256.0).round() as u16,
        ]
    };
    let mut clut = Vec::new();
    for c in 0..2 {
        for m in 0..2 {
            for y in 0..2 {
                for k in 0..2 {
                    let (c, m, y, k) = (f64::from(c), f64::from(m), f64::from(y), f64::from(k));
                    let l = 90.0 - 25.0 * (c + m + y) - 60.0 * k;
                    // Red (a+, b+) for cyan, green (a-, b+) for magenta, blue (b-) for yellow.
                    clut.extend(lab(l, 70.0 * c - 70.0 * m, 50.0 * (c + m) - 80.0 * y));
                }
            }
        }
    }
    let identity = |channels: usize| LutStore::Store16((0..channels).flat_map(|_| [0, u16::MAX]).collect());
    let lut = LutDataType {
        num_input_channels: 4,
        num_output_channels: 3,
        num_clut_grid_points: 2,
        matrix: Matrix3d::IDENTITY,
        num_input_table_entries: 2,
        num_output_table_entries: 2,
        input_table: identity(4),
        clut_table: LutStore::Store16(clut),
        output_table: identity(3),
        lut_type: LutType::Lut16,
    };
    let mut p = ColorProfile::new_srgb();
    (p.red_trc, p.green_trc, p.blue_trc, p.cicp) = (None, None, None, None);
    p.profile_class = ProfileClass::OutputDevice;
    p.color_space = DataColorSpace::Cmyk;
    p.pcs = DataColorSpace::Lab;
    p.lut_a_to_b_perceptual = Some(LutWarehouse::Lut(lut.clone()));
    p.lut_a_to_b_colorimetric = Some(LutWarehouse::Lut(lut));
    p.encode().expect("the CMYK profile encodes")
}

/// Issue 19 item 1: an Adobe YCCK JPEG with an embedded CMYK profile, baseline or progressive, goes through
/// the profile, exactly as the same inks stored as plain CMYK do; without the profile it takes the naive formula.
#[test]
fn ycck_jpeg_goes_through_its_cmyk_profile_like_cmyk() {
    let profile = cmyk_press_profile();
    let icc = [b"ICC_PROFILE\0\x01\x01".as_slice(), &profile].concat();
    let inks: [[u8; 4]; 5] = [[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 0], [128, 64, 32, 16]];
    for (ink, encode) in inks
        .into_iter()
        .flat_map(|i| [(i, jpeg_of as fn(&[u8], u32, u32, ColorType) -> Vec<u8>), (i, progressive_jpeg_of)])
    {
        let data: Vec<u8> = (0..64 * 48).flat_map(|_| ink).collect();
        let with = |color| run(&insert_segment(&encode(&data, 64, 48, color), 0xE2, &icc));
        let (cmyk, ycck) = (with(ColorType::Cmyk), with(ColorType::CmykAsYcck));
        check_outputs(&ycck);
        let (a, b) = (centre_rgb(&cmyk, "large"), centre_rgb(&ycck, "large"));
        assert!(near(a, b, 4), "ink {ink:?}: CMYK {a:?}, YCCK {b:?}");
        let naive = centre_rgb(&run(&jpeg_of(&data, 64, 48, ColorType::CmykAsYcck)), "large");
        if ink != [0, 0, 0, 0] && ink[..3].contains(&255) {
            let far = b.iter().zip(&naive).map(|(&x, &y)| x.abs_diff(y)).max().unwrap();
            assert!(far > 60, "ink {ink:?}: the profile's {b:?} is too near the naive {naive:?}");
        }
    }
    // The profile's own colours: cyan ink red, magenta green, yellow blue.
    let centre = |ink: [u8; 4]| {
        let data: Vec<u8> = (0..64 * 48).flat_map(|_| ink).collect();
        centre_rgb(&run(&insert_segment(&jpeg_of(&data, 64, 48, ColorType::CmykAsYcck), 0xE2, &icc)), "large")
    };
    let (red, green, blue) = (centre([255, 0, 0, 0]), centre([0, 255, 0, 0]), centre([0, 0, 255, 0]));
    assert!(red[0] > red[1].max(red[2]) + 40, "cyan ink through the profile: {red:?}");
    assert!(green[1] > green[0].max(green[2]) + 40, "magenta ink through the profile: {green:?}");
    assert!(blue[2] > blue[0].max(blue[1]) + 40, "yellow ink through the profile: {blue:?}");
}

#[test]
fn grayscale_jpeg_becomes_gray_rgb() {
    let data: Vec<u8> = (0..200 * 100).map(|i| (i % 200) as u8).collect();
    let r = run(&jpeg_of(&data, 200, 100, ColorType::Luma));
    check_outputs(&r);
    let c = centre_rgb(&r, "large");
    assert!(c[0].abs_diff(c[1]) <= 2 && c[1].abs_diff(c[2]) <= 2 && c[0].abs_diff(100) < 12, "{c:?}");
}

#[test]
fn sixteen_bit_png_is_read() {
    let (w, h) = (300u32, 200u32);
    let data: Vec<u8> = (0..w * h).flat_map(|_| [0xC8, 0x00, 0x32, 0x00, 0x64, 0x00]).collect(); // 200, 50, 100 in the high bytes
    let r = run(&png_of(&data, w, h, png::ColorType::Rgb, png::BitDepth::Sixteen, None));
    check_outputs(&r);
    assert_eq!(r.result.source.format, ImageFormat::Png);
    assert!(near(centre_rgb(&r, "medium"), [200, 50, 100], 6));
}

#[test]
fn palette_png_with_transparency_keeps_alpha_in_webp_and_flattens_jpeg() {
    let (w, h) = (120u32, 80u32);
    let plte = [255, 0, 0, 0, 0, 255];
    let trns = [0]; // index 0 fully transparent, index 1 opaque
    let data: Vec<u8> = (0..w * h).map(|i| u8::from(i % w >= w / 2)).collect();
    let r = run(&png_of(&data, w, h, png::ColorType::Indexed, png::BitDepth::Eight, Some((&plte, &trns))));
    check_outputs(&r);
    let webp = r.outputs.iter().find(|o| o.name == "large" && o.format == ImageFormat::Webp).unwrap();
    let (ww, wh, c, px) = decode_webp(&webp.data);
    assert_eq!((ww, wh, c), (w, h, 4));
    let left = &px[((h / 2 * w + 5) * 4) as usize..][..4];
    let right = &px[((h / 2 * w + w - 5) * 4) as usize..][..4];
    assert_eq!(left[3], 0, "transparent half stays transparent");
    assert!(right[3] == 255 && right[2] > 200 && right[0] < 40, "opaque half is blue: {right:?}");
    // JPEG flattens the transparent half onto white.
    let jpg = r.outputs.iter().find(|o| o.name == "large" && o.format == ImageFormat::Jpeg).unwrap();
    let (_, _, rgb) = decode_jpeg(&jpg.data);
    let i = ((h / 2 * w + 5) * 3) as usize;
    assert!(near([rgb[i], rgb[i + 1], rgb[i + 2]], [255, 255, 255], 8));
}

#[test]
fn rgba_edges_have_no_dark_fringe_after_resize() {
    // White disc on fully transparent black: after downscaling, every visible pixel stays white.
    let (w, h) = (1200u32, 1200u32);
    let data: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = ((i % w) as f32 - 600.0, (i / w) as f32 - 600.0);
            if x * x + y * y < 400.0 * 400.0 { [255, 255, 255, 255] } else { [0, 0, 0, 0] }
        })
        .collect();
    let r = run(&png_of(&data, w, h, png::ColorType::Rgba, png::BitDepth::Eight, None));
    check_outputs(&r);
    for o in r.outputs.iter().filter(|o| o.format == ImageFormat::Webp) {
        let (_, _, c, px) = decode_webp(&o.data);
        assert_eq!(c, 4);
        let visible: Vec<_> = px.chunks_exact(4).filter(|p| p[3] >= 16).collect();
        assert!(visible.len() > 100);
        for p in visible {
            assert!(p[0] >= 225 && p[1] >= 225 && p[2] >= 225, "{}: fringe {p:?}", o.name);
        }
    }
}

#[test]
fn outputs_carry_no_metadata_from_the_input() {
    let mut bytes = with_exif(&jpeg(640, 480), 1, true);
    bytes = insert_segment(&bytes, 0xFE, b"COMMENT-SECRET from the camera");
    bytes = insert_segment(&bytes, 0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>XMP-SECRET</x:xmpmeta>");
    assert!(jpeg_markers(&bytes).contains(&0xFE));
    let r = run(&bytes);
    check_outputs(&r);
    for o in &r.outputs {
        for needle in [&b"SECRET"[..], b"GPS", b"Exif", b"xmpmeta", b"http://ns.adobe.com"] {
            assert!(
                !o.data.windows(needle.len()).any(|w| w == needle),
                "{} {:?} carries {:?}",
                o.name,
                o.format,
                String::from_utf8_lossy(needle)
            );
        }
        match o.format {
            ImageFormat::Jpeg => {
                let markers = jpeg_markers(&o.data);
                assert!(markers.iter().all(|m| !matches!(m, 0xE1..=0xEF | 0xFE)), "{markers:x?}");
            }
            _ => {
                let chunks = webp_chunks(&o.data);
                assert!(chunks.iter().all(|c| !matches!(c.as_str(), "EXIF" | "XMP " | "ICCP")), "{chunks:?}");
            }
        }
    }
}

#[test]
fn limits_are_checked_from_the_header() {
    let bytes = jpeg(800, 600);
    let tight = RenderOptions {
        limits: imgfleet_shared::Limits { max_source_pixels: 100_000, ..Default::default() },
        ..Default::default()
    };
    let err = render(&bytes, &centred(), &tight).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(err.to_string().contains("800x600"), "{err}");
    let small = RenderOptions {
        limits: imgfleet_shared::Limits { max_source_bytes: 100, ..Default::default() },
        ..Default::default()
    };
    assert_eq!(render(&bytes, &centred(), &small).unwrap_err().kind(), ErrorKind::TooLarge);
}

#[test]
fn name_never_decides_the_format() {
    use imgfleet_worker::commands::process::{ProcessRequest, Status, process_one};
    let dir = tempfile::tempdir().unwrap();
    let png_as_jpg = dir.path().join("photo.jpg");
    std::fs::write(&png_as_jpg, png_of(&photo_rgb(64, 64), 64, 64, png::ColorType::Rgb, png::BitDepth::Eight, None))
        .unwrap();
    let svg_as_jpg = dir.path().join("evil.jpg");
    std::fs::write(&svg_as_jpg, b"<?xml version=\"1.0\"?><svg onload=\"alert(1)\"/>").unwrap();
    let request =
        ProcessRequest { inputs: vec![], out_dir: None, preset: centred(), options: RenderOptions::default(), jobs: 1 };
    let ok = process_one(&png_as_jpg, Some(&dir.path().join("out")), &request);
    assert_eq!(ok.status, Status::Ok);
    assert_eq!(ok.result.as_ref().unwrap().source.format, ImageFormat::Png);
    assert!(dir.path().join("out/thumb.webp").exists() && dir.path().join("out/large.jpg").exists());
    let bad = process_one(&svg_as_jpg, None, &request);
    assert_eq!(bad.status, Status::Rejected);
    assert_eq!(bad.error.unwrap().kind, ErrorKind::Unsupported);
}

#[test]
fn cascade_matches_a_direct_resize() {
    // medium and thumb are cut from large when large is big enough; compare against resizing each
    // straight from the full image.
    let (w, h) = (2400u32, 1800u32);
    let source = Pixels::new(w, h, 3, photo_rgb(w, h));
    let preset = centred();
    let made = pipeline::resize_all(&source.clone().into(), &preset, 1).unwrap();
    for (spec, cascaded) in preset.renditions.iter().zip(made.renditions) {
        let cascaded = cascaded.into_pixels();
        let plan = geometry::plan(w, h, spec.width, spec.height, spec.fit);
        let direct = resize::resize(&source, &plan).unwrap();
        assert_eq!((cascaded.width, cascaded.height), (direct.width, direct.height));
        let db = psnr(&cascaded.data, &direct.data);
        assert!(db >= 38.0, "{}: cascade vs direct PSNR {db:.1} dB", spec.name);
    }
}

#[test]
fn shrink_before_lanczos_matches_a_direct_resize() {
    // A large source is box-shrunk by a whole factor before Lanczos3; every rendition must stay
    // close to Lanczos3 straight from the full-size RGB image: RGB pixels (PNG, WebP) and the raw
    // planes of a 4:2:0 JPEG, whose chroma renditions also come out at half size.
    use imgfleet_worker::pipeline::{decode::decode, pixels::Raster};
    let (w, h) = (3000u32, 2000u32);
    let rgb = photo_rgb(w, h);
    let full = Pixels::new(w, h, 3, rgb.clone());
    let preset = centred();
    let mut jpeg = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut jpeg, 95);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    e.encode(&rgb, w as u16, h as u16, ColorType::Rgb).unwrap();
    let planes = decode(&jpeg, ImageFormat::Jpeg, &Default::default()).unwrap().raster;
    assert!(matches!(planes, Raster::Ycc(_)));
    let (_, _, decoded) = decode_jpeg(&jpeg);
    let decoded = Pixels::new(w, h, 3, decoded);
    // The large rendition needs 800/3000 of the source: shrunk by 3 before Lanczos3.
    let (shrunk, k) = shrink::shrink(&full.clone().into(), 800.0 / 3000.0).unwrap();
    assert_eq!((k, shrunk.width(), shrunk.height()), (3, 1000, 667));
    assert!(shrink::shrink(&full.clone().into(), 0.51).is_none(), "less than 2x: left alone");
    // A JPEG's renditions stay 4:2:0 planes, as they are encoded: they are compared with the direct
    // resize's 4:2:0 planes (its chroma averaged over 2 x 2 blocks, as a 4:2:0 encoder keeps it).
    for (source, reference, min_db) in [(Raster::from(full.clone()), &full, 38.0), (planes, &decoded, 45.0)] {
        let made = pipeline::resize_all(&source, &preset, 1).unwrap();
        for (spec, got) in preset.renditions.iter().zip(made.renditions) {
            let want = resize::resize(reference, &geometry::plan(w, h, spec.width, spec.height, spec.fit)).unwrap();
            assert_eq!((got.width(), got.height()), (want.width, want.height));
            let (got, want) = match got {
                Raster::Ycc(p) => ([p.y.data, p.cb.data, p.cr.data].concat(), planes_420(&want)),
                Raster::Pixels(p) => (p.data, want.data),
            };
            let db = psnr(&got, &want);
            assert!(db >= min_db, "{}: shrunk then resized vs direct: {db:.1} dB", spec.name);
        }
    }
}

/// JFIF YCbCr planes of RGB pixels, chroma as the means of 2 x 2 blocks (luma, then Cb, then Cr).
fn planes_420(p: &Pixels) -> Vec<u8> {
    let (w, h) = (p.width as usize, p.height as usize);
    let ycc: Vec<[f64; 3]> = p
        .data
        .chunks_exact(3)
        .map(|c| {
            let [r, g, b] = [c[0], c[1], c[2]].map(f64::from);
            [
                0.299 * r + 0.587 * g + 0.114 * b,
                128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b,
                128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b,
            ]
        })
        .collect();
    let mut out: Vec<u8> = ycc.iter().map(|v| v[0].round().clamp(0.0, 255.0) as u8).collect();
    for ch in [1, 2] {
        for cy in 0..h.div_ceil(2) {
            for cx in 0..w.div_ceil(2) {
                let block: Vec<f64> = (2 * cy..(2 * cy + 2).min(h))
                    .flat_map(|y| (2 * cx..(2 * cx + 2).min(w)).map(move |x| (x, y)))
                    .map(|(x, y)| ycc[y * w + x][ch])
                    .collect();
                out.push((block.iter().sum::<f64>() / block.len() as f64).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

#[test]
fn custom_presets_are_honoured() {
    let text = r#"
        [[presets]]
        name = "banner"
        [[presets.renditions]]
        name = "wide"
        width = 600
        height = 200
        fit = "cover"
        formats = [{ format = "webp", quality = 70 }]
        [[presets.renditions]]
        name = "mini"
        width = 50
        height = 50
        fit = "inside"
        formats = [{ format = "jpeg", quality = 60 }, { format = "webp", quality = 60 }]
    "#;
    let catalog = imgfleet_shared::PresetCatalog::from_toml(text).unwrap();
    let r = render(&jpeg(1000, 800), catalog.default_preset(), &RenderOptions::default()).unwrap();
    let got: Vec<_> = r.outputs.iter().map(|o| (o.name.as_str(), o.format, o.width, o.height)).collect();
    assert_eq!(
        got,
        [
            ("wide", ImageFormat::Webp, 600, 200),
            ("mini", ImageFormat::Jpeg, 50, 40),
            ("mini", ImageFormat::Webp, 50, 40)
        ]
    );
    assert_eq!(Fit::Cover, catalog.default_preset().renditions[0].fit);
}

#[test]
fn wide_gamut_profiles_are_converted_to_srgb() {
    // A flat Display P3 colour, tagged with a P3 profile: the renditions carry the sRGB equivalent.
    let p3 = moxcms::ColorProfile::new_display_p3();
    let icc = p3.encode().unwrap();
    let colour = [40u8, 180, 60];
    let data: Vec<u8> = (0..320 * 240).flat_map(|_| colour).collect();
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, 95);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    e.add_icc_profile(&icc).unwrap();
    e.encode(&data, 320, 240, ColorType::Rgb).unwrap();
    let r = run(&out);
    check_outputs(&r);

    let srgb = moxcms::ColorProfile::new_srgb();
    let t = p3.create_transform_8bit(moxcms::Layout::Rgb, &srgb, moxcms::Layout::Rgb, Default::default()).unwrap();
    let mut want = [0u8; 3];
    t.transform(&colour, &mut want).unwrap();
    assert!(want.iter().zip(&colour).any(|(a, b)| a.abs_diff(*b) > 15), "P3 and sRGB differ for this colour: {want:?}");
    for name in ["thumb", "medium", "large"] {
        let got = centre_rgb(&r, name);
        assert!(near(got, want, 6), "{name}: got {got:?}, want sRGB {want:?} (P3 {colour:?})");
    }
}

#[test]
fn srgb_profiles_named_in_utf16_are_left_alone() {
    // GIMP tags its exports "GIMP built-in sRGB" (a v4 `mluc` description, UTF-16BE, ending in
    // "sRGB"): such a JPEG keeps its planes and gets no colour transform.
    use imgfleet_worker::pipeline::{colour, decode::decode, pixels::Raster};
    let mut profile = moxcms::ColorProfile::new_srgb();
    profile.description = Some(moxcms::ProfileText::Localizable(vec![moxcms::LocalizableString::new(
        "en".into(),
        "US".into(),
        "GIMP built-in sRGB".into(),
    )]));
    let (w, h) = (320u32, 240u32);
    let mut bytes = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut bytes, 90);
    e.add_icc_profile(&profile.encode().unwrap()).unwrap();
    e.encode(&photo_rgb(w, h), w as u16, h as u16, ColorType::Rgb).unwrap();
    let decoded = decode(&bytes, ImageFormat::Jpeg, &Default::default()).unwrap();
    assert!(decoded.icc.is_some(), "the profile is read");
    let (raster, converter) = colour::prepare(decoded);
    assert!(matches!(raster, Raster::Ycc(_)), "planes kept");
    assert!(!converter.is_active(), "no transform for an sRGB profile");
    check_outputs(&run(&bytes));
}

#[test]
fn a_linear_srgb_profile_is_converted_despite_its_name() {
    // GIMP's "Linear sRGB" has sRGB's primaries and a linear tone curve: mid-grey 128 in linear light
    // is sRGB 188, so the renditions must come out that much lighter, not passed through as sRGB.
    let mut profile = moxcms::ColorProfile::new_srgb();
    let linear = moxcms::curve_from_gamma(1.0);
    (profile.red_trc, profile.green_trc, profile.blue_trc) = (Some(linear.clone()), Some(linear.clone()), Some(linear));
    profile.cicp = None;
    profile.description = Some(moxcms::ProfileText::Localizable(vec![moxcms::LocalizableString::new(
        "en".into(),
        "US".into(),
        "GIMP built-in Linear sRGB".into(),
    )]));
    let data: Vec<u8> = (0..320 * 240).flat_map(|_| [128u8; 3]).collect();
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, 95);
    e.add_icc_profile(&profile.encode().unwrap()).unwrap();
    e.encode(&data, 320, 240, ColorType::Rgb).unwrap();
    let r = run(&out);
    check_outputs(&r);
    for name in ["thumb", "medium", "large"] {
        let got = centre_rgb(&r, name);
        assert!(near(got, [188, 188, 188], 4), "{name}: got {got:?}, want sRGB 188 (linear 128)");
    }
}

#[test]
fn a_gray_alpha_png_goes_through_its_gray_profile() {
    // Gray 128 with alpha 255 (the JPEG flattening leaves it alone): tagged with a linear gray
    // profile it is sRGB 188; untagged it stays 128.
    let (w, h) = (200u32, 150u32);
    let data: Vec<u8> = (0..w * h).flat_map(|_| [128u8, 255]).collect();
    let encode = |icc: Option<Vec<u8>>| {
        let mut info = png::Info::with_size(w, h);
        info.color_type = png::ColorType::GrayscaleAlpha;
        info.bit_depth = png::BitDepth::Eight;
        info.icc_profile = icc.map(Into::into);
        let mut out = Vec::new();
        let mut writer = png::Encoder::with_info(&mut out, info).unwrap().write_header().unwrap();
        writer.write_image_data(&data).unwrap();
        writer.finish().unwrap();
        out
    };
    let linear = moxcms::ColorProfile::new_gray_with_gamma(1.0).encode().unwrap();
    for (icc, want) in [(Some(linear), 188u8), (None, 128)] {
        let tagged = icc.is_some();
        let r = run(&encode(icc));
        check_outputs(&r);
        for name in ["thumb", "medium", "large"] {
            let got = centre_rgb(&r, name);
            assert!(near(got, [want; 3], 4), "{name}, profile {tagged}: got {got:?}, want {want}");
        }
    }
}

#[test]
fn ycbcr_planes_path_matches_a_full_rgb_decode() {
    use imgfleet_worker::pipeline::{decode::decode, pixels::Raster};
    use jpeg_encoder::SamplingFactor;
    let (w, h) = (333u32, 217u32);
    let rgb = photo_rgb(w, h);
    for sampling in [SamplingFactor::R_4_4_4, SamplingFactor::R_4_2_2, SamplingFactor::R_4_2_0, SamplingFactor::R_4_4_0]
    {
        let mut bytes = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut bytes, 95);
        e.set_sampling_factor(sampling);
        e.encode(&rgb, w as u16, h as u16, ColorType::Rgb).unwrap();
        let decoded = decode(&bytes, ImageFormat::Jpeg, &Default::default()).unwrap();
        assert!(matches!(decoded.raster, Raster::Ycc(_)), "{sampling:?} takes the planes path");
        let (_, _, full) = decode_jpeg(&bytes);
        let full = Pixels::new(w, h, 3, full);
        for (bw, bh, fit) in [(200, 200, Fit::Inside), (120, 120, Fit::Cover), (333, 217, Fit::Inside)] {
            let plan = geometry::plan(w, h, bw, bh, fit);
            let planes = resize::resize_raster(&decoded.raster, &plan, (false, false)).unwrap().into_pixels();
            let reference = resize::resize(&full, &plan).unwrap();
            assert_eq!((planes.width, planes.height), (reference.width, reference.height));
            let db = psnr(&planes.data, &reference.data);
            assert!(db >= 36.0, "{sampling:?} {bw}x{bh} {fit:?}: {db:.1} dB");
        }
    }
}

#[test]
fn shrinking_while_decoding_gives_the_planes_decode_then_shrink_gives() {
    // A baseline YCbCr JPEG is box-shrunk band by band as it is decoded; the planes must be exactly
    // those of a full decode shrunk afterwards: every sampling, restart intervals, sizes that are not
    // a multiple of the factor or of the 16-row bands, factors 2, 3 and 12 (4 x 3). A progressive one
    // holds all its coefficients until the last scan anyway: it is decoded to full-size RGB.
    use imgfleet_worker::pipeline::{
        decode::{decode, decode_shrinking},
        pixels::Raster,
    };
    use jpeg_encoder::SamplingFactor;
    let planes = |r: &Raster| match r {
        Raster::Ycc(p) => (p.y.clone(), p.cb.clone(), p.cr.clone(), p.chroma_scale),
        Raster::Pixels(_) => panic!("expected planes"),
    };
    let (w, h) = (1203u32, 797u32);
    let rgb = photo_rgb(w, h);
    for (sampling, progressive, restart) in [
        (SamplingFactor::R_4_2_0, false, 0),
        (SamplingFactor::R_4_2_0, true, 0),
        (SamplingFactor::R_4_4_4, false, 7),
        (SamplingFactor::R_4_2_2, false, 0),
        (SamplingFactor::R_4_2_2, true, 0),
        (SamplingFactor::R_4_4_0, false, 0),
    ] {
        let mut bytes = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut bytes, 90);
        e.set_sampling_factor(sampling);
        e.set_progressive(progressive);
        e.set_restart_interval(restart);
        e.encode(&rgb, w as u16, h as u16, ColorType::Rgb).unwrap();
        let full = decode(&bytes, ImageFormat::Jpeg, &Default::default()).unwrap();
        assert_eq!(full.shrunk_by, 1);
        if progressive {
            let got = decode_shrinking(&bytes, ImageFormat::Jpeg, &Default::default(), &|_, _, _| 0.26).unwrap();
            for d in [&full, &got] {
                let Raster::Pixels(p) = &d.raster else { panic!("{sampling:?} progressive: expected RGB") };
                assert_eq!((p.width, p.height, p.channels, d.shrunk_by), (w, h, 3, 1), "{sampling:?} progressive");
                let db = psnr(&p.data, &rgb);
                assert!(db >= 30.0, "{sampling:?} progressive: {db:.1} dB against the source");
            }
            continue;
        }
        for keep in [0.5, 0.34, 0.26, 0.07] {
            let label = format!("{sampling:?} progressive={progressive} restart={restart} keep={keep}");
            let (want, k) = shrink::shrink(&full.raster, keep).expect("shrinks");
            let got = decode_shrinking(&bytes, ImageFormat::Jpeg, &Default::default(), &|sw, sh, o| {
                assert_eq!((sw, sh, o), (w, h, 1));
                keep
            })
            .unwrap();
            assert_eq!((got.shrunk_by, got.width, got.height), (k, w, h), "{label}");
            assert_eq!(planes(&got.raster), planes(&want), "{label}");
        }
    }
    // Cut short, the band-by-band decode fails with a typed error rather than returning a partial image.
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 90).encode(&rgb, w as u16, h as u16, ColorType::Rgb).unwrap();
    let cut = &bytes[..bytes.len() / 2];
    let err = decode_shrinking(cut, ImageFormat::Jpeg, &Default::default(), &|_, _, _| 0.26).unwrap_err();
    assert!(matches!(err, pipeline::decode::DecodeError::Corrupt { .. }), "{err:?}");
}

/// A JPEG whose ICC chunks do not fit together is decoded as libjpeg, Pillow and browsers do:
/// the profile is ignored, the pixels taken as sRGB, and the render says so in `warnings`.
#[test]
fn malformed_icc_chunks_are_ignored_with_a_warning_not_refused() {
    let colour = [40u8, 180, 60];
    let data: Vec<u8> = (0..96 * 64).flat_map(|_| colour).collect();
    let plain = jpeg_of(&data, 96, 64, ColorType::Rgb);
    // Display P3 in two chunks: used, it changes the colour; ignored, the colour stays as stored.
    let icc = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let (a, b) = icc.split_at(icc.len() / 2);
    let chunk = |seq: u8, count: u8, part: &[u8]| [b"ICC_PROFILE\0".as_slice(), &[seq, count], part].concat();
    // Chunks are inserted right after SOI, so the last inserted comes first in the file.
    let with = |chunks: &[Vec<u8>]| chunks.iter().rev().fold(plain.clone(), |j, c| insert_segment(&j, 0xE2, c));

    let valid = run(&with(&[chunk(1, 2, a), chunk(2, 2, b)]));
    assert!(valid.result.warnings.is_empty(), "{:?}", valid.result.warnings);
    assert!(!near(centre_rgb(&valid, "medium"), colour, 10), "a whole profile is applied");

    let reference = run(&plain);
    for (defect, chunks, says) in [
        ("sequence number 0", vec![chunk(0, 2, a), chunk(2, 2, b)], "chunk 0 of 2"),
        ("sequence number past the count", vec![chunk(1, 2, a), chunk(3, 2, b)], "chunk 3 of 2"),
        ("counts that disagree", vec![chunk(1, 2, a), chunk(2, 3, b)], "disagree"),
        ("a missing chunk", vec![chunk(1, 2, a)], "1 of 2 chunks"),
        ("a chunk twice", vec![chunk(1, 2, a), chunk(1, 2, a), chunk(2, 2, b)], "twice"),
    ] {
        let r = run(&with(&chunks));
        assert_eq!(r.result.warnings.len(), 1, "{defect}: {:?}", r.result.warnings);
        assert!(
            r.result.warnings[0].contains(says) && r.result.warnings[0].contains("sRGB"),
            "{defect}: {:?}",
            r.result.warnings
        );
        for (got, want) in r.outputs.iter().zip(&reference.outputs) {
            assert_eq!(got.data, want.data, "{defect}: {} {} is not the untagged image's", got.name, got.format);
        }
    }
}

/// Odd-sized 4:2:0 sources, every size from 1x1 to 65x65: the planes path (chroma resized as
/// planes, never made RGB) renders as well as a reference pipeline renders from the same file at
/// the same size and quality: decode to RGB, then let libjpeg subsample (what Pillow does). Both
/// are judged against the source's own decode, on luma plus 2x2-averaged chroma, since both
/// outputs are 4:2:0. The source is written from planes by libjpeg, which fills the blocks past
/// an odd edge by repeating it, so no decoder can read more chroma from that padding than the
/// planes hold.
#[test]
fn odd_sized_420_sources_render_as_well_as_a_reference_rgb_pipeline() {
    let mut gaps = Vec::new();
    for w in 1..=65u32 {
        for h in 1..=65u32 {
            let source = photo_jpeg_420(w, h);
            let (_, _, decoded) = decode_jpeg(&source);
            let (ours_db, ref_db) = against_reference(&source, &Pixels::new(w, h, 3, decoded));
            // Both lossless (the tiniest sizes): no gap.
            let gap = if ours_db == ref_db { 0.0 } else { ours_db - ref_db };
            assert!(gap >= -1.5, "{w}x{h}: {ours_db:.2} dB against the reference's {ref_db:.2} dB");
            gaps.push(gap);
        }
    }
    let (worst, median) = worst_and_median(gaps);
    assert!(median >= -0.1, "median gap {median:.2} dB (worst {worst:.2} dB)");
    eprintln!("planes path against the reference: worst {worst:.2} dB, median {median:.2} dB");
}

/// The same comparison for every EXIF orientation and every size up to 17x17: renditions are
/// made in the stored orientation and turned upright afterwards, so an odd side that is mirrored
/// must come out with its chroma sited as if it had been made upright.
#[test]
fn odd_sized_420_sources_in_every_orientation_render_as_well_as_a_reference_rgb_pipeline() {
    let mut gaps = Vec::new();
    for orientation in 1..=8u16 {
        for w in 1..=17u32 {
            for h in 1..=17u32 {
                let stored = photo_jpeg_420(w, h);
                let (_, _, decoded) = decode_jpeg(&stored);
                let upright = pipeline::orient::apply(Pixels::new(w, h, 3, decoded), orientation as u8);
                let (ours_db, ref_db) = against_reference(&with_exif(&stored, orientation, false), &upright);
                let gap = if ours_db == ref_db { 0.0 } else { ours_db - ref_db };
                // Within 1.5 dB, or beyond 50 dB (1-pixel strips, where the two pipelines' chroma
                // filters differ most and both are far past what anyone sees).
                let ok = gap >= -1.5 || ours_db >= 50.0;
                assert!(
                    ok,
                    "{w}x{h} orientation {orientation}: {ours_db:.2} dB against the reference's {ref_db:.2} dB"
                );
                gaps.push(gap);
            }
        }
    }
    let (worst, median) = worst_and_median(gaps);
    assert!(median >= -0.1, "median gap {median:.2} dB (worst {worst:.2} dB)");
    eprintln!("planes path against the reference, every orientation: worst {worst:.2} dB, median {median:.2} dB");
}

/// A `w` x `h` 4:2:0 JPEG (q95) of [`photo_planes_420`], written from the planes by libjpeg.
fn photo_jpeg_420(w: u32, h: u32) -> Vec<u8> {
    let planes = pipeline::pixels::Raster::Ycc(photo_planes_420(w, h));
    pipeline::encode::encode(&planes, &OutputSpec::new(ImageFormat::Jpeg, 95), [255; 3]).unwrap()
}

/// `source` rendered at its own size as a q90 JPEG by imgfleet, and `upright` (the source's own
/// decode, turned upright) encoded at q90 from RGB by libjpeg; both decoded and scored against
/// `upright`: (imgfleet's PSNR, the reference's PSNR).
fn against_reference(source: &[u8], upright: &Pixels) -> (f64, f64) {
    let jpeg = OutputSpec::new(ImageFormat::Jpeg, 90);
    let spec = RenditionSpec {
        name: "large".into(),
        width: 800,
        height: 800,
        fit: Fit::Inside,
        crop: Default::default(),
        formats: vec![jpeg],
    };
    let preset = Preset { name: "identity".into(), renditions: vec![spec] };
    let (w, h) = (upright.width, upright.height);
    let ours = render(source, &preset, &RenderOptions::default()).expect("renders");
    assert_eq!((ours.outputs[0].width, ours.outputs[0].height), (w, h));
    let (_, _, ours) = decode_jpeg(&ours.outputs[0].data);
    let rgb = pipeline::pixels::Raster::Pixels(upright.clone());
    let (_, _, reference) = decode_jpeg(&pipeline::encode::encode(&rgb, &jpeg, [255; 3]).unwrap());
    (psnr_420(&ours, &upright.data, w, h), psnr_420(&reference, &upright.data, w, h))
}

/// The lowest and the median of `gaps`.
fn worst_and_median(mut gaps: Vec<f64>) -> (f64, f64) {
    gaps.sort_by(f64::total_cmp);
    (gaps[0], gaps[gaps.len() / 2])
}

/// `photo_rgb` as JFIF YCbCr planes at 4:2:0, each chroma sample the mean of the (up to four)
/// pixels it covers.
fn photo_planes_420(w: u32, h: u32) -> pipeline::pixels::YccPlanes {
    let rgb = photo_rgb(w, h);
    let (y, cb, cr) = ycc_of(&rgb);
    let to_u8 = |v: &[f64]| v.iter().map(|x| x.round().clamp(0.0, 255.0) as u8).collect::<Vec<u8>>();
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    pipeline::pixels::YccPlanes {
        y: Pixels::new(w, h, 1, to_u8(&y)),
        cb: Pixels::new(cw, ch, 1, to_u8(&half(&cb, w, h))),
        cr: Pixels::new(cw, ch, 1, to_u8(&half(&cr, w, h))),
        chroma_scale: (geometry::Ratio::HALF, geometry::Ratio::HALF),
        chroma_early: (false, false),
    }
}

/// An animated GIF: a 64x48 screen, a first frame of 40x30 at (8, 6) whose left half is opaque
/// blue and right half transparent, then two full frames of red.
fn animated_gif() -> Vec<u8> {
    use std::borrow::Cow;
    let palette = [0u8, 0, 255, 255, 0, 0];
    let mut out = Vec::new();
    {
        let mut e = gif::Encoder::new(&mut out, 64, 48, &palette).unwrap();
        let first: Vec<u8> = (0..40 * 30).map(|i| if i % 40 < 20 { 0 } else { 1 }).collect();
        let frame = |left, top, width, height, buffer, transparent| gif::Frame {
            left,
            top,
            width,
            height,
            buffer,
            transparent,
            ..gif::Frame::default()
        };
        e.write_frame(&frame(8, 6, 40, 30, Cow::Owned(first), Some(1))).unwrap();
        for _ in 0..2 {
            e.write_frame(&frame(0, 0, 64, 48, Cow::Owned(vec![1; 64 * 48]), None)).unwrap();
        }
    }
    out
}

#[test]
fn an_animated_gif_renders_its_first_frame_on_its_canvas() {
    let r = run(&animated_gif());
    check_outputs(&r);
    let s = &r.result.source;
    assert_eq!((s.format, s.width, s.height, s.frames, s.animated), (ImageFormat::Gif, 64, 48, 3, true));
    let json = serde_json::to_value(s).unwrap();
    assert_eq!((json["frames"].as_u64(), json["animated"].as_bool()), (Some(3), Some(true)));
    // The large rendition is the whole 64x48 canvas: blue where the first frame is opaque, the
    // canvas (transparent) elsewhere: kept as alpha in WebP, the white background in JPEG.
    let large = |format| r.outputs.iter().find(|o| o.name == "large" && o.format == format).unwrap();
    let (w, h, channels, px) = decode_webp(&large(ImageFormat::Webp).data);
    assert_eq!((w, h, channels), (64, 48, 4));
    let at = |x: u32, y: u32| &px[((y * w + x) * 4) as usize..][..4];
    assert!(at(15, 20)[2] > 200 && at(15, 20)[3] > 250, "first frame, opaque half: {:?}", at(15, 20));
    assert!(at(40, 20)[3] < 5, "first frame, transparent half: {:?}", at(40, 20));
    assert!(at(60, 45)[3] < 5, "canvas outside the first frame: {:?}", at(60, 45));
    let (_, _, rgb) = decode_jpeg(&large(ImageFormat::Jpeg).data);
    let at = |x: u32, y: u32| &rgb[((y * 64 + x) * 3) as usize..][..3];
    assert!(at(15, 20)[2] > 200 && at(15, 20)[0] < 60, "{:?}", at(15, 20));
    assert!(at(60, 45).iter().all(|&c| c > 245), "background, not a later frame's red: {:?}", at(60, 45));
    // A still GIF says one frame and is not animated.
    let still = run(&gif_still());
    assert_eq!((still.result.source.frames, still.result.source.animated), (1, false));
    assert!(serde_json::to_value(&still.result.source).unwrap().get("animated").is_none());
}

fn gif_still() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = gif::Encoder::new(&mut out, 20, 10, &[10, 20, 30]).unwrap();
        let frame = gif::Frame {
            width: 20,
            height: 10,
            buffer: std::borrow::Cow::Owned(vec![0; 200]),
            ..gif::Frame::default()
        };
        e.write_frame(&frame).unwrap();
    }
    out
}

#[test]
fn a_preset_can_ask_for_progressive_jpeg() {
    let mut preset = centred();
    for r in &mut preset.renditions {
        r.formats[0].progressive = true;
    }
    let r = render(&jpeg(1000, 700), &preset, &RenderOptions::default()).unwrap();
    let baseline = run(&jpeg(1000, 700));
    for (o, b) in r.outputs.iter().zip(&baseline.outputs) {
        let sof = |data: &[u8]| data.windows(2).find(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC2)).map(|w| w[1]);
        match o.format {
            ImageFormat::Jpeg => {
                assert_eq!((sof(&o.data), sof(&b.data)), (Some(0xC2), Some(0xC0)), "{}", o.name);
                assert_eq!(decode_jpeg(&o.data), decode_jpeg(&b.data), "{}: the same pixels", o.name);
            }
            _ => assert_eq!(o.data, b.data, "{} WebP untouched", o.name),
        }
    }
}

/// Issue 19 item 5: bytes between the entropy-coded data and the next marker (some scanners and cameras write
/// them; libjpeg warns "extraneous bytes before marker" and decodes) are skipped. Before every marker after
/// the first scan (DHT, SOS, DRI, RSTn, EOI) of baseline and progressive files, with and without restart
/// intervals, 4:2:0 and 4:4:4, three junk bytes or a zero byte change nothing: the decode is the clean file's,
/// pixel for pixel.
#[test]
fn junk_before_a_marker_is_skipped_as_libjpeg_does() {
    use imgfleet_shared::Limits;
    use imgfleet_worker::pipeline::decode::decode;
    let (w, h) = (96u32, 64u32);
    let rgb = photo_rgb(w, h);
    let mut checked = 0;
    for (progressive, restart, sampling) in [
        (false, 0, jpeg_encoder::SamplingFactor::R_4_2_0),
        (false, 2, jpeg_encoder::SamplingFactor::R_4_2_0),
        (false, 3, jpeg_encoder::SamplingFactor::R_4_4_4),
        (true, 0, jpeg_encoder::SamplingFactor::R_4_2_0),
        (true, 4, jpeg_encoder::SamplingFactor::R_4_4_4),
    ] {
        let mut clean = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut clean, 85);
        e.set_sampling_factor(sampling);
        e.set_progressive(progressive);
        e.set_restart_interval(restart);
        e.encode(&rgb, w as u16, h as u16, ColorType::Rgb).unwrap();
        let want = decode(&clean, ImageFormat::Jpeg, &Limits::default()).unwrap().raster.into_pixels();
        let first_scan = clean.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
        let markers: Vec<usize> = (first_scan + 2..clean.len() - 1)
            .filter(|&i| clean[i] == 0xFF && !matches!(clean[i + 1], 0x00 | 0xFF))
            .collect();
        assert!(markers.len() > usize::from(progressive) * 4, "{progressive} {restart}: {} markers", markers.len());
        for &at in &markers {
            for junk in [&[0x12, 0x34, 0x56][..], &[0x00]] {
                let bytes = [&clean[..at], junk, &clean[at..]].concat();
                let marker = clean[at + 1];
                let got = decode(&bytes, ImageFormat::Jpeg, &Limits::default()).unwrap_or_else(|e| {
                    panic!("progressive {progressive}, restart {restart}, junk before {marker:#x}: {e}")
                });
                let got = got.raster.into_pixels();
                assert!(
                    got == want,
                    "progressive {progressive}, restart {restart}: junk before {marker:#x} changed the pixels"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "{checked} cases");
}

/// The profile preset with `thumb` and `medium` cropped by attention.
fn attention_profile() -> Preset {
    cropping_profile(CropMode::Attention)
}

/// A JPEG of `upright` stored turned the other way, with EXIF `orientation` saying how to turn it back.
fn stored_turned(upright: &Pixels, orientation: u8) -> Vec<u8> {
    let stored = pipeline::orient::apply(upright.clone(), pipeline::orient::inverse(orientation));
    let jpeg = jpeg_of(&stored.data, stored.width, stored.height, jpeg_encoder::ColorType::Rgb);
    with_exif(&jpeg, u16::from(orientation), false)
}

/// The built-in profile preset with `thumb` and `medium` cropped by `mode`.
fn cropping_profile(mode: CropMode) -> Preset {
    Preset::default_profile().with_crop(mode)
}

/// Pixels of a decoded RGB rendition close to `colour` (each channel within 40).
fn pixels_near(rgb: &[u8], colour: [u8; 3]) -> usize {
    rgb.chunks_exact(3).filter(|p| p.iter().zip(colour).all(|(&a, b)| a.abs_diff(b) <= 40)).count()
}

#[test]
fn an_attention_crop_keeps_the_subject_a_centred_crop_cuts_off_and_reports_it_upright() {
    // Upright 480x270: flat grey with a 60x60 skin-toned square centred on (60, 135), near the left edge,
    // where a centred square crop (x 105..375) cuts it off. Stored turned every way, with its EXIF
    // orientation: the attention crops hold the square and the event's focus finds it upright.
    let (uw, uh, skin) = (480u32, 270u32, [224u8, 172, 140]);
    let mut upright = vec![128u8; (uw * uh * 3) as usize];
    for y in 105..165 {
        for x in 30..90 {
            upright[((y * uw + x) * 3) as usize..][..3].copy_from_slice(&skin);
        }
    }
    let upright = Pixels::new(uw, uh, 3, upright);
    for orientation in 1..=8u8 {
        let jpeg = stored_turned(&upright, orientation);
        let centred = render(&jpeg, &centred(), &RenderOptions::default()).unwrap();
        let focused = render(&jpeg, &attention_profile(), &RenderOptions::default()).unwrap();
        check_outputs(&focused);
        assert_eq!(centred.result.focus, None, "orientation {orientation}: no focus without an attention crop");
        let f = focused.result.focus.unwrap_or_else(|| panic!("orientation {orientation}: no focus"));
        assert!(f.x + f.width <= uw && f.y + f.height <= uh, "orientation {orientation}: {f:?} outside");
        assert!((f.x..f.x + f.width).contains(&60) && (f.y..f.y + f.height).contains(&135), "{orientation}: {f:?}");
        assert!(f.width < uw / 2, "orientation {orientation}: {f:?} is not a region");
        for name in ["thumb", "medium"] {
            let jpeg_of_rendition = |r: &Rendered| {
                let o = r.outputs.iter().find(|o| o.name == name && o.format == ImageFormat::Jpeg).unwrap();
                decode_jpeg(&o.data)
            };
            let (w, h, ours) = jpeg_of_rendition(&focused);
            let (cw, ch, theirs) = jpeg_of_rendition(&centred);
            assert_eq!((w, h), (cw, ch), "{name}: the crop's size does not move");
            // The whole square (60x60 of 270 high, scaled) against at most a sliver of it.
            let side = 60.0 * f64::from(h) / 270.0;
            let (kept, cut) = (pixels_near(&ours, skin), pixels_near(&theirs, skin));
            assert!(kept as f64 >= 0.8 * side * side, "orientation {orientation} {name}: {kept} skin pixels");
            assert!(cut as f64 <= 0.2 * side * side, "orientation {orientation} {name}: centred kept {cut}");
        }
        // The large rendition is not cropped: the same bytes either way.
        let large =
            |r: &Rendered| r.outputs.iter().filter(|o| o.name == "large").map(|o| o.data.clone()).collect::<Vec<_>>();
        assert_eq!(large(&focused), large(&centred), "orientation {orientation}");
    }
}

/// A headshot from the crop evaluation set (483x640, the face labelled at 98,78 266x342) on a wide grey
/// canvas with its face touching the canvas's left edge, stored turned each of the eight ways. The built-in
/// preset's crops are these face crops.
#[test]
fn a_face_crop_finds_a_face_at_the_edge_in_every_orientation() {
    let photo =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/faces/02-headshot-suit.jpg")).unwrap();
    let (pw, ph, rgb) = decode_jpeg(&photo);
    let (uw, uh, cut) = (1200u32, ph, 98u32);
    let mut upright = vec![128u8; (uw * uh * 3) as usize];
    for y in 0..ph {
        let row = &rgb[((y * pw + cut) * 3) as usize..((y + 1) * pw * 3) as usize];
        upright[(y * uw * 3) as usize..][..row.len()].copy_from_slice(row);
    }
    let face = (0u32, 78u32, 266u32, 342u32);
    let upright = Pixels::new(uw, uh, 3, upright);
    let preset = Preset::default_profile();
    assert_eq!(preset, cropping_profile(CropMode::Face));
    for orientation in 1..=8u8 {
        let jpeg = stored_turned(&upright, orientation);
        let r = render(&jpeg, &preset, &RenderOptions::default()).unwrap();
        check_outputs(&r);
        assert_eq!(r.result.faces, Some(1), "orientation {orientation}");
        let f = r.result.focus.unwrap_or_else(|| panic!("orientation {orientation}: no focus"));
        assert!(f.x + f.width <= uw && f.y + f.height <= uh, "orientation {orientation}: {f:?} outside");
        assert!(f.x <= 10, "orientation {orientation}: {f:?} does not reach the edge the face touches");
        let (cx, cy) = (face.0 + face.2 / 2, face.1 + face.3 / 2);
        assert!((f.x..f.x + f.width).contains(&cx) && (f.y..f.y + f.height).contains(&cy), "{orientation}: {f:?}");
        // The square crops (the canvas's height, in the upright image) keep the face: left-aligned.
        let focus = geometry::Focus::at(
            f64::from(f.x) + f64::from(f.width) / 2.0,
            f64::from(f.y) + f64::from(f.height) / 2.0,
            uw,
            uh,
        );
        let plan = geometry::plan_around(uw, uh, 400, 400, Fit::Cover, Some(focus));
        assert_eq!(plan.region().0, 0.0, "orientation {orientation}: the crop is pushed to the edge");
    }
}

/// A frame cut so tightly that the face is larger than the crop, and the degenerate images: the face
/// crop renders at the right size with its focus inside the image, never an error.
#[test]
fn a_face_crop_of_a_face_larger_than_the_frame_or_of_nothing_is_sane() {
    let photo =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/faces/02-headshot-suit.jpg")).unwrap();
    let (pw, _, rgb) = decode_jpeg(&photo);
    // Rows 150..330 of the photo: 483x180, the face (rows 78..420) overflows it above and below.
    let (top, h) = (150u32, 180u32);
    let band = rgb[(top * pw * 3) as usize..((top + h) * pw * 3) as usize].to_vec();
    let jpeg = jpeg_of(&band, pw, h, jpeg_encoder::ColorType::Rgb);
    let preset = cropping_profile(CropMode::Face);
    let r = render(&jpeg, &preset, &RenderOptions::default()).unwrap();
    check_outputs(&r);
    let f = r.result.focus.expect("a focus: the face, or the salient region");
    assert!(f.x + f.width <= pw && f.y + f.height <= h && f.width > 0 && f.height > 0, "{f:?}");
    let thumb = r.outputs.iter().find(|o| o.name == "thumb").unwrap();
    assert_eq!((thumb.width, thumb.height), (150, 150));
    // 1x1, strips, all black, all white: no face, no salient region, so the crops stay centred.
    let centred_preset = centred();
    for (w, h, value) in [(1, 1, 0u8), (1, 1, 255), (7, 1, 90), (1, 9, 90), (640, 480, 0), (300, 900, 255)] {
        let jpeg = jpeg_of(&vec![value; (w * h * 3) as usize], w, h, jpeg_encoder::ColorType::Rgb);
        let centred = render(&jpeg, &centred_preset, &RenderOptions::default()).unwrap();
        let focused = render(&jpeg, &preset, &RenderOptions::default()).unwrap();
        check_outputs(&focused);
        assert_eq!((focused.result.focus, focused.result.faces), (None, Some(0)), "{w}x{h} of {value}");
        let bytes = |r: &Rendered| r.outputs.iter().map(|o| o.data.clone()).collect::<Vec<_>>();
        assert_eq!(bytes(&focused), bytes(&centred), "{w}x{h} of {value}");
    }
}

#[test]
fn an_attention_crop_of_a_degenerate_image_is_centred_and_never_an_error() {
    // 1x1, a strip, all black, all white: no salient region, so no focus, and exactly the centred renditions.
    for (w, h, value) in [(1, 1, 0u8), (1, 1, 255), (7, 1, 90), (1, 9, 90), (640, 480, 0), (300, 900, 255)] {
        let jpeg = jpeg_of(&vec![value; (w * h * 3) as usize], w, h, jpeg_encoder::ColorType::Rgb);
        let centred = render(&jpeg, &centred(), &RenderOptions::default()).unwrap();
        let focused = render(&jpeg, &attention_profile(), &RenderOptions::default()).unwrap();
        check_outputs(&focused);
        assert_eq!(focused.result.focus, None, "{w}x{h} of {value}");
        let bytes = |r: &Rendered| r.outputs.iter().map(|o| o.data.clone()).collect::<Vec<_>>();
        assert_eq!(bytes(&focused), bytes(&centred), "{w}x{h} of {value}");
    }
}
