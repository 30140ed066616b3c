//! Every image size renders: real images of random sizes (a fixed seed) in every input layout go
//! through the whole pipeline, and each comes out with all six renditions at the sizes the
//! rendition specs say. The exhaustive geometry sweep is in `pipeline::geometry`; this checks the
//! same promise on real decoders, shrinks, cascades and encoders.

mod common;

use common::*;
use imgfleet_shared::{ImageFormat, Preset};
use imgfleet_worker::pipeline::{RenderOptions, geometry, render};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// How a test image is stored.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Jpeg { sampling: SamplingFactor, progressive: bool, orientation: u16 },
    PngRgb,
    PngRgba,
    WebpLossy,
}

/// Cheap photo-like content: gradients, a diagonal pattern and a little noise (the sizes are
/// what is tested; the content only has to be more than a flat colour for the encoders).
fn pixels(w: u32, h: u32, channels: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(w as usize * h as usize * channels);
    for y in 0..h {
        for x in 0..w {
            let noise = (rng.next() & 15) as u32;
            let v = [x * 255 / w.max(1), y * 255 / h.max(1), ((x + y) % 64) * 4 + noise, 128 + (x ^ y) % 128];
            out.extend(v[..channels].iter().map(|&c| c.min(255) as u8));
        }
    }
    out
}

fn encode(kind: Kind, w: u32, h: u32, rng: &mut Rng) -> Vec<u8> {
    match kind {
        Kind::Jpeg { sampling, progressive, orientation } => {
            let mut out = Vec::new();
            let mut e = Encoder::new(&mut out, 85);
            e.set_sampling_factor(sampling);
            e.set_progressive(progressive);
            e.encode(&pixels(w, h, 3, rng), w as u16, h as u16, ColorType::Rgb).unwrap();
            if orientation > 1 { with_exif(&out, orientation, false) } else { out }
        }
        Kind::PngRgb => png(&pixels(w, h, 3, rng), w, h, png::ColorType::Rgb),
        Kind::PngRgba => png(&pixels(w, h, 4, rng), w, h, png::ColorType::Rgba),
        Kind::WebpLossy => webp::Encoder::from_rgb(&pixels(w, h, 3, rng), w, h).encode(75.0).to_vec(),
    }
}

/// A PNG written with the fastest compression (making the inputs is most of this test's time).
fn png(data: &[u8], w: u32, h: u32, color: png::ColorType) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(png::BitDepth::Eight);
        e.set_compression(png::Compression::Fastest);
        e.write_header().unwrap().write_image_data(data).unwrap();
    }
    out
}

fn kind_for(i: usize, rng: &mut Rng) -> Kind {
    const SAMPLINGS: [SamplingFactor; 5] = [
        SamplingFactor::R_4_2_0,
        SamplingFactor::R_4_4_4,
        SamplingFactor::R_4_2_2,
        SamplingFactor::R_4_4_0,
        SamplingFactor::R_4_1_1,
    ];
    match i % 8 {
        0..=3 => Kind::Jpeg {
            sampling: SAMPLINGS[(rng.next() % 5) as usize],
            progressive: rng.next().is_multiple_of(4),
            orientation: (rng.next() % 8 + 1) as u16,
        },
        4 | 5 => Kind::PngRgb,
        6 => Kind::PngRgba,
        _ => Kind::WebpLossy,
    }
}

/// Renders one image and checks every output: decodable, at the size the geometry plans for the
/// upright image, in both formats.
fn check(kind: Kind, w: u32, h: u32, seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let bytes = encode(kind, w, h, &mut rng);
    let preset = Preset::default_profile();
    let at = format!("{w}x{h} {kind:?}");
    let rendered = render(&bytes, &preset, &RenderOptions::default()).map_err(|e| format!("{at}: {e}"))?;
    let transposed = matches!(kind, Kind::Jpeg { orientation: 5..=8, .. });
    let (uw, uh) = if transposed { (h, w) } else { (w, h) };
    if rendered.outputs.len() != 6 {
        return Err(format!("{at}: {} outputs", rendered.outputs.len()));
    }
    for out in &rendered.outputs {
        let spec = preset.renditions.iter().find(|r| r.name == out.name).expect("a rendition of the preset");
        let want = geometry::plan(uw, uh, spec.width, spec.height, spec.fit);
        let decoded = match out.format {
            ImageFormat::Jpeg => {
                let (dw, dh, _) = decode_jpeg(&out.data);
                (dw, dh)
            }
            _ => {
                let (dw, dh, _, _) = decode_webp(&out.data);
                (dw, dh)
            }
        };
        if (out.width, out.height) != (want.width, want.height) || decoded != (out.width, out.height) {
            return Err(format!(
                "{at}: {} {:?} is {}x{} (decodes as {decoded:?}), want {}x{}",
                out.name, out.format, out.width, out.height, want.width, want.height
            ));
        }
    }
    Ok(())
}

#[test]
fn random_sizes_in_every_layout_all_render() {
    // The sizes reported refused, then 250 random sizes up to 3000 a side (a fixed seed).
    let mut sizes: Vec<(u32, u32)> = vec![
        (1227, 1305),
        (1238, 1264),
        (1378, 1397),
        (1127, 599),
        (630, 2173),
        (2726, 1400),
        (2847, 2813),
        (626, 1200),
        (973, 547),
        (1095, 616),
    ];
    let mut rng = Rng::new(0x5EED_0021);
    while sizes.len() < 260 {
        // Mostly photo-sized, some tiny and some strips.
        let side = |rng: &mut Rng| match rng.next() % 10 {
            0 => (rng.next() % 40 + 1) as u32,
            1..=6 => (rng.next() % 1600 + 1) as u32,
            _ => (rng.next() % 3000 + 1) as u32,
        };
        sizes.push((side(&mut rng), side(&mut rng)));
    }
    let cases: Vec<(Kind, u32, u32, u64)> =
        sizes.iter().enumerate().map(|(i, &(w, h))| (kind_for(i, &mut rng), w, h, i as u64 + 1)).collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(2))
            .map(|part| {
                s.spawn(move || {
                    part.iter().filter_map(|&(k, w, h, seed)| check(k, w, h, seed).err()).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("sweep thread")).collect()
    });
    assert!(failures.is_empty(), "{} of {} sizes failed: {failures:#?}", failures.len(), cases.len());
}
