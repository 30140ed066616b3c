//! The adversarial set: hostile and broken inputs, each with the outcome it must have. Every case
//! runs under a watchdog (no hang), must not panic (a caught panic would still be a bug), and no
//! output or error message may carry the payloads planted in the input.

mod common;

use common::*;
use imgfleet_shared::{ErrorKind, ImageFormat, Preset};
use imgfleet_worker::pipeline::decode::HEIF_SUPPORTED;
use imgfleet_worker::pipeline::{RenderError, RenderOptions, Rendered, render};
use jpeg_encoder::{ColorType, Encoder};
use std::sync::mpsc;
use std::time::Duration;

/// Planted in inputs; must never appear in what the worker writes or says.
const PAYLOAD: &[u8] = b"IMGFLEET-PAYLOAD<script>alert(document.cookie)</script>";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Ok(ImageFormat),
    Rejected(ErrorKind),
}
use Expect::*;

fn progressive_jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out, 85);
    e.set_progressive(true);
    e.encode(&photo_rgb(w, h), w as u16, h as u16, ColorType::Rgb).unwrap();
    out
}

fn jpeg_with_restarts(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out, 85);
    e.set_restart_interval(4);
    e.encode(&photo_rgb(w, h), w as u16, h as u16, ColorType::Rgb).unwrap();
    out
}

/// Replaces the SOF0 marker with another frame type (arithmetic, lossless, …).
fn with_frame_marker(jpeg: &[u8], marker: u8) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out.windows(2).position(|m| m == [0xFF, 0xC0]).expect("SOF0");
    out[sof + 1] = marker;
    out
}

/// [`with_frame_marker`] with the frame's sample precision set to `bits`.
fn with_precision(jpeg: &[u8], marker: u8, bits: u8) -> Vec<u8> {
    let mut out = with_frame_marker(jpeg, marker);
    let sof = out.windows(2).position(|m| m == [0xFF, marker]).expect("SOF");
    out[sof + 4] = bits;
    out
}

/// Inserts a PNG chunk right after IHDR.
fn png_with_chunk(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let ihdr_end = 8 + 8 + 13 + 4;
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend(kind);
    chunk.extend(data);
    let crc = crc32(&chunk[4..]);
    chunk.extend(crc.to_be_bytes());
    [&png[..ihdr_end], &chunk[..], &png[ihdr_end..]].concat()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Flips a byte inside the first IDAT's data, leaving its CRC stale.
fn png_bad_crc(png: &[u8]) -> Vec<u8> {
    let mut out = png.to_vec();
    let idat = out.windows(4).position(|w| w == b"IDAT").expect("IDAT");
    out[idat + 10] ^= 0xFF;
    out
}

/// Splits the image data into 1-byte IDAT chunks.
fn png_many_idats(png: &[u8]) -> Vec<u8> {
    let idat = png.windows(4).position(|w| w == b"IDAT").expect("IDAT") - 4;
    let len = u32::from_be_bytes(png[idat..idat + 4].try_into().unwrap()) as usize;
    let data = &png[idat + 8..idat + 8 + len];
    let mut out = png[..idat].to_vec();
    for b in data {
        let mut chunk = 1u32.to_be_bytes().to_vec();
        chunk.extend(b"IDAT");
        chunk.push(*b);
        let crc = crc32(&chunk[4..]);
        chunk.extend(crc.to_be_bytes());
        out.extend(chunk);
    }
    out.extend(&png[idat + 12 + len..]);
    out
}

/// A zlib stream that inflates to about `n` zero bytes: the IDAT of a PNG of zeros.
fn deflated_zeros(n: usize) -> Vec<u8> {
    let w = 4096u32;
    let h = (n / (w as usize * 3)).max(1) as u32;
    let png = png_of(&vec![0u8; (w * h * 3) as usize], w, h, png::ColorType::Rgb, png::BitDepth::Eight, None);
    let idat = png.windows(4).position(|x| x == b"IDAT").unwrap() - 4;
    let len = u32::from_be_bytes(png[idat..idat + 4].try_into().unwrap()) as usize;
    png[idat + 8..idat + 8 + len].to_vec()
}

fn webp_lossy(w: u32, h: u32) -> Vec<u8> {
    webp::Encoder::from_rgb(&photo_rgb(w, h), w, h).encode(80.0).to_vec()
}

fn webp_lossless_alpha(w: u32, h: u32) -> Vec<u8> {
    let rgba: Vec<u8> =
        photo_rgb(w, h).chunks(3).enumerate().flat_map(|(i, p)| [p[0], p[1], p[2], (i % 256) as u8]).collect();
    webp::Encoder::from_rgba(&rgba, w, h).encode_lossless().to_vec()
}

/// A RIFF chunk.
fn chunk(name: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = name.to_vec();
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
    out
}

fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32 + 4).to_le_bytes());
    out.extend(b"WEBP");
    out.extend(body);
    out
}

fn vp8x(flags: u8, w: u32, h: u32) -> Vec<u8> {
    let mut d = vec![flags, 0, 0, 0];
    d.extend(&(w - 1).to_le_bytes()[..3]);
    d.extend(&(h - 1).to_le_bytes()[..3]);
    chunk(b"VP8X", &d)
}

/// A 1x1 GIF89a: global colour table of two, a graphic control extension, one LZW-coded pixel.
const GIF_1X1: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// `gif` with its logical screen set to `w` x `h`.
fn gif_screen(gif: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = gif.to_vec();
    out[6..8].copy_from_slice(&w.to_le_bytes());
    out[8..10].copy_from_slice(&h.to_le_bytes());
    out
}

/// `gif` with its first image descriptor claiming `w` x `h`.
fn gif_frame_size(gif: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = gif.to_vec();
    let at = out.iter().position(|&b| b == b',').expect("image descriptor");
    out[at + 5..at + 7].copy_from_slice(&w.to_le_bytes());
    out[at + 7..at + 9].copy_from_slice(&h.to_le_bytes());
    out
}

/// `gif` with its first image descriptor placed at (`left`, `top`).
fn gif_frame_at(gif: &[u8], left: u16, top: u16) -> Vec<u8> {
    let mut out = gif.to_vec();
    let at = out.iter().position(|&b| b == b',').expect("image descriptor");
    out[at + 1..at + 3].copy_from_slice(&left.to_le_bytes());
    out[at + 3..at + 5].copy_from_slice(&top.to_le_bytes());
    out
}

/// A GIF whose screen has no global colour table and whose image has no local one.
fn gif_without_palette() -> Vec<u8> {
    let mut out = b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec();
    out.extend(b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;");
    out
}

/// [`animated_webp`] with its canvas claiming `side` x `side`.
fn animated_webp_canvas(side: u32) -> Vec<u8> {
    let mut out = animated_webp();
    let at = out.windows(4).position(|w| w == b"VP8X").expect("VP8X") + 8;
    out[at + 4..at + 7].copy_from_slice(&(side - 1).to_le_bytes()[..3]);
    out[at + 7..at + 10].copy_from_slice(&(side - 1).to_le_bytes()[..3]);
    out
}

/// An animated WebP: VP8X with the animation flag, ANIM, and one ANMF frame holding a real VP8 image.
fn animated_webp() -> Vec<u8> {
    let still = webp_lossy(64, 48);
    let vp8 = &still[12..]; // the VP8 chunk of a simple lossy file
    let mut frame = vec![0u8; 6]; // x, y offsets
    frame.extend(&63u32.to_le_bytes()[..3]);
    frame.extend(&47u32.to_le_bytes()[..3]);
    frame.extend([0, 0, 0, 0]); // duration, flags
    frame.extend(vp8);
    riff(&[vp8x(0x02, 64, 48), chunk(b"ANIM", &[0, 0, 0, 0, 0, 0]), chunk(b"ANMF", &frame)])
}

/// SOI and an APP1 EXIF segment that claims 4096 bytes where the file ends after 1024: no frame.
fn exif_cut_short() -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x10, 0x00];
    bytes.extend(b"Exif\0\0");
    bytes.resize(1024, 0);
    bytes
}

fn exif_with_payload() -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend(exif_tiff(6, true));
    payload.extend(PAYLOAD);
    payload
}

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let good = jpeg(400, 300);
    let rgb_png = png_of(&photo_rgb(200, 100), 200, 100, png::ColorType::Rgb, png::BitDepth::Eight, None);
    let lossy = webp_lossy(300, 200);
    let mut rng = Rng::new(0x1d_f1ee7);
    let heif_kind = if HEIF_SUPPORTED { ErrorKind::Corrupt } else { ErrorKind::Unsupported };
    let cmyk: Vec<u8> = photo_rgb(120, 80).chunks(3).flat_map(|p| [255 - p[0], 255 - p[1], 255 - p[2], 20]).collect();
    let gray: Vec<u8> = photo_rgb(120, 80).chunks(3).map(|p| p[1]).collect();
    let rgba16: Vec<u8> = photo_rgb(64, 64)
        .iter()
        .flat_map(|&v| [v, v])
        .collect::<Vec<u8>>()
        .chunks(6)
        .flat_map(|p| [p, &[0x80, 0x00]].concat())
        .collect();
    let gray_alpha: Vec<u8> = photo_rgb(64, 64).chunks(3).flat_map(|p| [p[0], 200]).collect();
    let palette: Vec<u8> = (0..64 * 64).map(|i| (i % 4) as u8).collect();
    let huge_app: Vec<u8> =
        (0..80).fold(good.clone(), |j, i| insert_segment(&j, 0xE0 + (i % 14) as u8 + 1, &[0x41; 65_000]));
    vec![
        // JPEG
        ("jpeg baseline", good.clone(), Ok(ImageFormat::Jpeg)),
        ("jpeg progressive", progressive_jpeg(320, 240), Ok(ImageFormat::Jpeg)),
        ("jpeg with restart markers", jpeg_with_restarts(320, 240), Ok(ImageFormat::Jpeg)),
        ("jpeg truncated in the header", good[..200].to_vec(), Rejected(ErrorKind::Corrupt)),
        ("jpeg truncated at half", good[..good.len() / 2].to_vec(), Rejected(ErrorKind::Corrupt)),
        ("jpeg truncated near the end", good[..good.len() - 300].to_vec(), Rejected(ErrorKind::Corrupt)),
        ("jpeg EXIF segment longer than the file", exif_cut_short(), Rejected(ErrorKind::Corrupt)),
        ("jpeg magic then noise", [&[0xFF, 0xD8, 0xFF][..], &rng.bytes(8192)].concat(), Rejected(ErrorKind::Corrupt)),
        ("jpeg with garbage after EOI", [&good[..], &rng.bytes(65_536)].concat(), Ok(ImageFormat::Jpeg)),
        ("jpeg with html after EOI", [&good[..], PAYLOAD].concat(), Ok(ImageFormat::Jpeg)),
        ("jpeg SOF bomb 60000x60000", patch_sof(&good, 60_000, 60_000), Rejected(ErrorKind::TooLarge)),
        ("jpeg SOF claiming 9000x9000 (over max_side)", patch_sof(&good, 9_000, 9_000), Rejected(ErrorKind::TooLarge)),
        ("jpeg SOF zero width", patch_sof(&good, 0, 300), Rejected(ErrorKind::Corrupt)),
        ("jpeg script in COM", insert_segment(&good, 0xFE, PAYLOAD), Ok(ImageFormat::Jpeg)),
        ("jpeg payload in EXIF", insert_segment(&good, 0xE1, &exif_with_payload()), Ok(ImageFormat::Jpeg)),
        (
            "jpeg junk EXIF",
            insert_segment(&good, 0xE1, &[b"Exif\0\0".as_slice(), &rng.bytes(500)].concat()),
            Ok(ImageFormat::Jpeg),
        ),
        (
            "jpeg payload in XMP",
            insert_segment(&good, 0xE1, &[b"http://ns.adobe.com/xap/1.0/\0".as_slice(), PAYLOAD].concat()),
            Ok(ImageFormat::Jpeg),
        ),
        (
            "jpeg junk ICC profile",
            insert_segment(&good, 0xE2, &[b"ICC_PROFILE\0\x01\x01".as_slice(), &rng.bytes(700)].concat()),
            Ok(ImageFormat::Jpeg),
        ),
        ("jpeg 80 APP segments of 64 KB", huge_app, Ok(ImageFormat::Jpeg)),
        ("jpeg CMYK", jpeg_of(&cmyk, 120, 80, ColorType::Cmyk), Ok(ImageFormat::Jpeg)),
        ("jpeg YCCK", jpeg_of(&cmyk, 120, 80, ColorType::Ycck), Ok(ImageFormat::Jpeg)),
        ("jpeg grayscale", jpeg_of(&gray, 120, 80, ColorType::Luma), Ok(ImageFormat::Jpeg)),
        ("jpeg 1x4000 strip", jpeg(1, 4000), Ok(ImageFormat::Jpeg)),
        ("jpeg 4000x1 strip", jpeg(4000, 1), Ok(ImageFormat::Jpeg)),
        ("jpeg arithmetic coded (SOF9)", with_frame_marker(&good, 0xC9), Rejected(ErrorKind::Unsupported)),
        ("jpeg lossless (SOF3)", with_frame_marker(&good, 0xC3), Rejected(ErrorKind::Unsupported)),
        ("jpeg 12-bit extended (SOF1)", with_precision(&good, 0xC1, 12), Rejected(ErrorKind::Unsupported)),
        ("jpeg 12-bit progressive (SOF2)", with_precision(&good, 0xC2, 12), Rejected(ErrorKind::Unsupported)),
        ("jpeg SOF0 claiming 12-bit (not baseline)", with_precision(&good, 0xC0, 12), Rejected(ErrorKind::Corrupt)),
        // PNG
        ("png rgb", rgb_png.clone(), Ok(ImageFormat::Png)),
        (
            "png 16-bit rgba",
            png_of(&rgba16, 64, 64, png::ColorType::Rgba, png::BitDepth::Sixteen, None),
            Ok(ImageFormat::Png),
        ),
        (
            "png gray + alpha",
            png_of(&gray_alpha, 64, 64, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight, None),
            Ok(ImageFormat::Png),
        ),
        (
            "png palette + tRNS",
            png_of(
                &palette,
                64,
                64,
                png::ColorType::Indexed,
                png::BitDepth::Eight,
                Some((&[255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9], &[255, 128, 0])),
            ),
            Ok(ImageFormat::Png),
        ),
        (
            "png 1x3000 strip",
            png_of(&photo_rgb(1, 3000), 1, 3000, png::ColorType::Rgb, png::BitDepth::Eight, None),
            Ok(ImageFormat::Png),
        ),
        ("png truncated at half", rgb_png[..rgb_png.len() / 2].to_vec(), Rejected(ErrorKind::Corrupt)),
        ("png signature only", rgb_png[..8].to_vec(), Rejected(ErrorKind::Corrupt)),
        ("png IHDR bomb 60000x60000", png_header_only(60_000, 60_000), Rejected(ErrorKind::TooLarge)),
        ("png bad IDAT CRC", png_bad_crc(&rgb_png), Rejected(ErrorKind::Corrupt)),
        ("png 1-byte IDAT chunks", png_many_idats(&rgb_png), Ok(ImageFormat::Png)),
        (
            "png script in tEXt",
            png_with_chunk(&rgb_png, b"tEXt", &[b"Comment\0".as_slice(), PAYLOAD].concat()),
            Ok(ImageFormat::Png),
        ),
        (
            "png zTXt bomb (100 MB of zeros)",
            png_with_chunk(&rgb_png, b"zTXt", &[b"Comment\0\0".as_slice(), &deflated_zeros(100 << 20)].concat()),
            Ok(ImageFormat::Png),
        ),
        (
            "png junk iCCP",
            png_with_chunk(&rgb_png, b"iCCP", &[b"icc\0\0".as_slice(), &rng.bytes(300)].concat()),
            Ok(ImageFormat::Png),
        ),
        // WebP
        ("webp lossy", lossy.clone(), Ok(ImageFormat::Webp)),
        ("webp lossless with alpha", webp_lossless_alpha(200, 150), Ok(ImageFormat::Webp)),
        ("webp truncated at half", lossy[..lossy.len() / 2].to_vec(), Rejected(ErrorKind::Corrupt)),
        ("webp animated (first frame)", animated_webp(), Ok(ImageFormat::Webp)),
        ("webp animated, canvas bomb 60000x60000", animated_webp_canvas(60_000), Rejected(ErrorKind::TooLarge)),
        // GIF
        ("gif 1x1", GIF_1X1.to_vec(), Ok(ImageFormat::Gif)),
        ("gif screen bomb 65535x65535", gif_screen(GIF_1X1, 0xFFFF, 0xFFFF), Rejected(ErrorKind::TooLarge)),
        (
            "gif frame bomb 65535x65535 on a 1x1 screen",
            gif_frame_size(GIF_1X1, 0xFFFF, 0xFFFF),
            Rejected(ErrorKind::TooLarge),
        ),
        ("gif first frame past the screen's edge", gif_frame_at(GIF_1X1, 5, 0), Ok(ImageFormat::Gif)),
        ("gif header only", GIF_1X1[..13].to_vec(), Rejected(ErrorKind::Corrupt)),
        ("gif truncated in its image data", GIF_1X1[..GIF_1X1.len() - 5].to_vec(), Rejected(ErrorKind::Corrupt)),
        ("gif without a colour table", gif_without_palette(), Rejected(ErrorKind::Corrupt)),
        ("webp VP8 frame bomb 16383x16383", webp_frame_bomb(&lossy), Rejected(ErrorKind::TooLarge)),
        (
            "webp VP8X canvas unlike its frame",
            riff(&[vp8x(0, 60_000, 60_000), chunk(b"VP8 ", &lossy[20..])]),
            Rejected(ErrorKind::Corrupt),
        ),
        ("webp header only", b"RIFF\x10\0\0\0WEBPVP8 \x04\0\0\0\0\0\0\0".to_vec(), Rejected(ErrorKind::Corrupt)),
        // Not images, or not ours
        ("empty", vec![], Rejected(ErrorKind::Unsupported)),
        ("random bytes", rng.bytes(4096), Rejected(ErrorKind::Unsupported)),
        (
            "svg with script",
            [b"<svg xmlns=\"http://www.w3.org/2000/svg\">".as_slice(), PAYLOAD, b"</svg>"].concat(),
            Rejected(ErrorKind::Unsupported),
        ),
        (
            "xml prolog svg",
            [b"<?xml version=\"1.0\"?><svg onload=\"".as_slice(), PAYLOAD, b"\"/>"].concat(),
            Rejected(ErrorKind::Unsupported),
        ),
        ("html", [b"<!DOCTYPE html><html><body>".as_slice(), PAYLOAD].concat(), Rejected(ErrorKind::Unsupported)),
        ("shell script", [b"#!/bin/sh\necho ".as_slice(), PAYLOAD].concat(), Rejected(ErrorKind::Unsupported)),
        ("pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj".to_vec(), Rejected(ErrorKind::Unsupported)),
        ("bmp", [b"BM".as_slice(), &rng.bytes(100)].concat(), Rejected(ErrorKind::Unsupported)),
        ("tiff", [b"II*\0".as_slice(), &rng.bytes(100)].concat(), Rejected(ErrorKind::Unsupported)),
        // HEIF by its brands: damaged where this build reads it (the heic feature), unsupported where it does not.
        ("heic", [b"\0\0\0\x18ftypheic".as_slice(), &rng.bytes(100)].concat(), Rejected(heif_kind)),
        ("avif", [b"\0\0\0\x1cftypavif".as_slice(), &rng.bytes(100)].concat(), Rejected(heif_kind)),
        (
            "mp4 video",
            [b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".as_slice(), &rng.bytes(100)].concat(),
            Rejected(ErrorKind::Unsupported),
        ),
    ]
}

/// Renders under a watchdog: a hang fails the test instead of stalling it.
fn render_with_watchdog(name: &str, bytes: Vec<u8>) -> Result<Rendered, RenderError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(render(&bytes, &Preset::default_profile(), &RenderOptions::default()));
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{name}: no answer within 60 s"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_adversarial_input_has_its_expected_outcome() {
    let cases = cases();
    assert!(cases.len() >= 30);
    // scripts/fuzz.sh seeds the pipeline fuzzer with these inputs.
    if let Result::Ok(dir) = std::env::var("IMGFLEET_FUZZ_SEEDS") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes, _) in &cases {
            std::fs::write(
                std::path::Path::new(&dir).join(name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")),
                bytes,
            )
            .unwrap();
        }
    }
    let mut wrong = Vec::new();
    for (name, bytes, expected) in cases {
        let got = match render_with_watchdog(name, bytes) {
            Result::Ok(r) => {
                for o in &r.outputs {
                    assert!(!contains(&o.data, b"IMGFLEET-PAYLOAD"), "{name}: payload in {} {:?}", o.name, o.format);
                    assert!(!contains(&o.data, b"<script"), "{name}: script in {} {:?}", o.name, o.format);
                }
                assert_eq!(r.outputs.len(), 6, "{name}");
                Ok(r.result.source.format)
            }
            Err(e) => {
                assert!(!matches!(e, RenderError::Panic(_)), "{name}: the decoder panicked: {e}");
                let message = e.to_string();
                assert!(!message.contains("IMGFLEET-PAYLOAD") && !message.contains("<script"), "{name}: {message}");
                assert_eq!(message.trim_end(), message, "{name}: the message ends in white space");
                Rejected(e.kind())
            }
        };
        if got != expected {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
